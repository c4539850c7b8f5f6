// daemon.cpp: xschedd's event loop, registration, decisions and status.
#include "daemon.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace xsched {
namespace daemon {
namespace {

// Log() prints one line on stderr: "xschedd: ...".
void Log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void Log(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    std::fprintf(stderr, "%02d:%02d:%02d.%03ld xschedd: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                 buf);
    std::fflush(stderr);
}

// JsonString() quotes s for JSON.
std::string JsonString(const std::string &s) {
    std::string o = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            o += '\\';
            o += static_cast<char>(c);
        } else if (c < 0x20 || c >= 0x7f) {
            char b[8];
            std::snprintf(b, sizeof(b), "\\u%04x", c);
            o += b;
        } else {
            o += static_cast<char>(c);
        }
    }
    return o + "\"";
}

// Qualify() makes a process's group id a machine-wide one: groups are per process (two servers that both
// name a group "inst0" have two groups).
uint64_t Qualify(uint64_t client, uint64_t group) {
    if (group == 0) return 0;
    uint64_t h = group ^ (client * 0x9E3779B97F4A7C15ull);
    h ^= h >> 30;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 27;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 31;
    return h != 0 ? h : 1;
}

// IsEventFd() says whether fd is an eventfd.
bool IsEventFd(int fd) {
    char path[64], target[64] = {0};
    std::snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    return n > 0 && std::strcmp(target, "anon_inode:[eventfd]") == 0;
}

// PolicyName() is the policy's XSCHED_POLICY spelling.
const char *PolicyName(XPolicyType p) {
    for (const PolicyFactory &f : PolicyFactories()) {
        if (f.type == p) return f.name;
    }
    return "UNKNOWN";
}

const char *StateName(int32_t s) { return s == kQueueStateReady ? "ready" : s == kQueueStateIdle ? "idle" : "unknown"; }

}  // namespace

Daemon::Daemon(Options opts) : opts_(std::move(opts)), policy_(CreatePolicy(opts_.policy)) {}

Daemon::~Daemon() {
    for (auto &kv : clients_) {
        Client &c = kv.second;
        if (c.fd >= 0) close(c.fd);
        if (c.evfd >= 0) close(c.evfd);
        if (c.pidfd >= 0) close(c.pidfd);
        if (c.seg != nullptr) munmap(c.seg, sizeof(global::Segment));
    }
    for (auto &kv : conns_) close(kv.first);
    if (listen_fd_ >= 0) close(listen_fd_);
    if (sig_fd_ >= 0) close(sig_fd_);
    if (ep_ >= 0) close(ep_);
}

bool Daemon::Listen() {
    const std::string &path = opts_.socket_path;
    struct stat st;
    if (lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            Log("%s exists and is not a socket: refusing to replace it", path.c_str());
            return false;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::memcpy(a.sun_path, path.c_str(), path.size());
        const bool alive = connect(probe, reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0;
        close(probe);
        if (alive) {
            Log("another scheduler is listening at %s: not starting a second one", path.c_str());
            return false;
        }
        unlink(path.c_str());  // a stale socket of a daemon that died
    }
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size());
    const mode_t old = umask(opts_.group.empty() ? 0177 : 0117);  // the socket is born owner-only (or + group)
    const int b = bind(listen_fd_, reinterpret_cast<sockaddr *>(&addr), sizeof(addr));
    const int bind_errno = errno;
    umask(old);
    if (b != 0) {
        Log("cannot listen at %s: %s", path.c_str(), std::strerror(bind_errno));
        return false;
    }
    listening_ = true;
    if (!opts_.group.empty() && chown(path.c_str(), static_cast<uid_t>(-1), opts_.gid) != 0) {
        Log("cannot give %s to group %s: %s", path.c_str(), opts_.group.c_str(), std::strerror(errno));
        return false;
    }
    if (chmod(path.c_str(), opts_.group.empty() ? 0600 : 0660) != 0 || listen(listen_fd_, 64) != 0) {
        Log("cannot listen at %s: %s", path.c_str(), std::strerror(errno));
        return false;
    }
    return true;
}

void Daemon::Watch(int fd, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
}

int Daemon::Run() {
    if (!policy_) {
        Log("unknown policy");
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    signal(SIGPIPE, SIG_IGN);
    sig_fd_ = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (!Listen()) {
        if (listening_) unlink(opts_.socket_path.c_str());
        return 1;
    }
    Watch(listen_fd_, EPOLLIN);
    Watch(sig_fd_, EPOLLIN);
    started_ns_ = global::NowNs();
    Log("listening at %s (policy %s, timeslice %" PRId64 " us, mode %s, up to %d processes, %s, pid %d)",
        opts_.socket_path.c_str(), PolicyName(opts_.policy), opts_.timeslice_us,
        opts_.group.empty() ? "0600" : ("0660 group " + opts_.group).c_str(), opts_.max_clients,
        opts_.poll ? "polls for edges while a queue is Ready" : "sleeps until a doorbell rings",
        static_cast<int>(getpid()));
    uint64_t next_beat = global::NowNs();
    std::string stop_signal;
    while (stop_signal.empty()) {
        uint64_t now = global::NowNs();
        if (now >= next_beat) {
            Heartbeat();
            next_beat = now + static_cast<uint64_t>(global::kHeartbeatMs) * 1000000ull;
            for (auto it = conns_.begin(); it != conns_.end();) {  // connections that never said anything
                int fd = it->first;
                bool expired = now > it->second.deadline_ns;
                ++it;
                if (expired) CloseConn(fd);
            }
        }
        uint64_t until = next_beat;
        if (wake_at_ != Clock::time_point::max()) {
            const uint64_t w = static_cast<uint64_t>(
                std::chrono::duration_cast<std::chrono::nanoseconds>(wake_at_.time_since_epoch()).count());
            until = std::min(until, w);
        }
        now = global::NowNs();
        const bool polling = opts_.poll && AnyReady();
        const int timeout_ms = polling || until <= now ? 0 : static_cast<int>((until - now + 999999) / 1000000);
        epoll_event evs[64];
        const int n = epoll_wait(ep_, evs, 64, timeout_ms);
        bool decide = polling && n == 0 && EdgePending();
        for (int i = 0; i < n; ++i) {
            const int fd = evs[i].data.fd;
            if (fd == listen_fd_) {
                Accept();
            } else if (fd == sig_fd_) {
                signalfd_siginfo si;
                if (read(sig_fd_, &si, sizeof(si)) == sizeof(si))
                    stop_signal = si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM";
            } else if (conns_.count(fd)) {
                const size_t before = clients_.size();
                OnConn(conns_[fd], evs[i].events);
                decide = decide || clients_.size() != before;
            } else if (client_fds_.count(fd)) {
                const uint64_t id = client_fds_[fd];
                Client &c = clients_[id];
                if (fd == c.evfd) {
                    uint64_t v;
                    (void)!read(fd, &v, sizeof(v));
                    decide = true;
                } else if (fd == c.pidfd) {
                    RemoveClient(id, "exited");
                    decide = true;
                } else {  // the control socket: the process left (or died) when it closes
                    char buf[256];
                    const ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR) ||
                        (evs[i].events & (EPOLLHUP | EPOLLERR))) {
                        RemoveClient(id, "closed its connection");
                        decide = true;
                    }
                }
            }
        }
        if (wake_at_ != Clock::time_point::max() && Clock::now() >= wake_at_) decide = true;
        if (decide) Decide();
    }
    // Clean stop: nobody stays suspended; every process falls back to local scheduling when its socket closes.
    size_t queues = 0;
    for (auto &kv : clients_) {
        Client &c = kv.second;
        for (uint32_t i = 0; i < global::kSlots; ++i) {
            global::Slot &s = c.seg->slots[i];
            if (s.used.load() == 1) ++queues;
            if (s.suspend.load() != 0) {
                s.suspend.store(0);
                global::Bump(&s.wake_seq);
            }
        }
    }
    Log("stopping (%s): released %zu queues of %zu processes", stop_signal.c_str(), queues, clients_.size());
    unlink(opts_.socket_path.c_str());
    return 0;
}

bool Daemon::AnyReady() const {
    for (const auto &kv : clients_) {
        const global::Slot *slots = kv.second.seg->slots;
        for (uint32_t i = 0; i < global::kSlots; ++i) {
            if (slots[i].used.load(std::memory_order_relaxed) == 1 &&
                slots[i].ready.load(std::memory_order_relaxed) != 0) {
                return true;
            }
        }
    }
    return false;
}

bool Daemon::EdgePending() {
    bool pending = false;
    for (auto &kv : clients_) {
        Client &c = kv.second;
        if (c.seg->header.edge_seq.load(std::memory_order_acquire) == c.seen_edge) continue;
        pending = true;
        uint64_t v;
        (void)!read(c.evfd, &v, sizeof(v));  // non-blocking: the ring of this edge, if it came already
    }
    return pending;
}

bool Daemon::Allowed(pid_t pid, uid_t uid, gid_t gid) const {
    if (uid == geteuid()) return true;
    if (opts_.group.empty()) return false;
    if (gid == opts_.gid) return true;
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/%d/status", static_cast<int>(pid));
    FILE *f = std::fopen(path, "r");
    if (f == nullptr) return false;
    char line[1024];
    bool in = false;
    while (std::fgets(line, sizeof(line), f)) {
        if (std::strncmp(line, "Groups:", 7) != 0) continue;
        char *p = line + 7;
        char *end;
        for (long g = std::strtol(p, &end, 10); end != p; g = std::strtol(p, &end, 10)) {
            if (static_cast<gid_t>(g) == opts_.gid) in = true;
            p = end;
        }
    }
    std::fclose(f);
    return in;
}

void Daemon::Accept() {
    for (;;) {
        int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) return;
        ucred cred{};
        socklen_t len = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
            close(fd);
            continue;
        }
        Conn c;
        c.fd = fd;
        c.pid = cred.pid;
        c.uid = cred.uid;
        c.deadline_ns = global::NowNs() + 2000000000ull;
        conns_[fd] = c;
        if (!Allowed(cred.pid, cred.uid, cred.gid)) {
            Refuse(conns_[fd], "uid " + std::to_string(cred.uid) + " may not use this scheduler (it belongs to uid " +
                                   std::to_string(geteuid()) +
                                   (opts_.group.empty() ? std::string(")") : ", group " + opts_.group + ")"));
            continue;
        }
        Watch(fd, EPOLLIN | EPOLLRDHUP);
    }
}

void Daemon::CloseConn(int fd) {
    epoll_ctl(ep_, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    conns_.erase(fd);
}

void Daemon::Refuse(Conn &c, const std::string &why) {
    Log("refused pid %d (uid %u): %s", static_cast<int>(c.pid), static_cast<unsigned>(c.uid), why.c_str());
    const std::string msg = "ERR " + why + "\n";
    (void)!send(c.fd, msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    CloseConn(c.fd);
}

void Daemon::OnConn(Conn &c, uint32_t events) {
    const int fd = c.fd;
    if (!c.out.empty()) {  // writing a status answer
        if (events & EPOLLOUT) {
            ssize_t n = send(fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) c.sent += static_cast<size_t>(n);
            if (n < 0 && errno != EAGAIN) c.sent = c.out.size();
        }
        if (c.sent >= c.out.size() || (events & (EPOLLHUP | EPOLLERR))) CloseConn(fd);
        return;
    }
    int fds[4];
    int nfds = 0;
    char buf[512];
    iovec iov{buf, sizeof(buf)};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char ctrl[CMSG_SPACE(4 * sizeof(int))];
    mh.msg_control = ctrl;
    mh.msg_controllen = sizeof(ctrl);
    ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    for (cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != nullptr; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            const int k = static_cast<int>((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < k && i < 4; ++i)
                std::memcpy(&fds[nfds++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
        }
    }
    auto close_fds = [&] {
        for (int i = 0; i < nfds; ++i) close(fds[i]);
        nfds = 0;
    };
    if (n <= 0) {
        close_fds();
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) CloseConn(fd);
        return;
    }
    c.in.append(buf, static_cast<size_t>(n));
    const size_t eol = c.in.find('\n');
    if (eol == std::string::npos) {
        close_fds();
        if (c.in.size() > 400) Refuse(c, "expected HELLO or STATUS");
        return;  // fds come with the first byte of HELLO, which carries them in one message
    }
    const std::string line = c.in.substr(0, eol);
    if (line == "STATUS") {
        close_fds();
        c.out = StatusJson();
        c.sent = 0;
        epoll_event ev{};
        ev.events = EPOLLOUT | EPOLLRDHUP;
        ev.data.fd = fd;
        epoll_ctl(ep_, EPOLL_CTL_MOD, fd, &ev);
        return;
    }
    if (line.rfind("HELLO ", 0) != 0) {
        close_fds();
        Refuse(c, "expected HELLO or STATUS");
        return;
    }
    Register(c, line, fds, nfds);
}

void Daemon::Register(Conn &c, const std::string &line, const int *fds, int nfds) {
    unsigned version = 0;
    char name[65] = {0};
    const int got = std::sscanf(line.c_str(), "HELLO %u %64s", &version, name);
    auto fail = [&](const std::string &why) {
        for (int i = 0; i < nfds; ++i) close(fds[i]);
        Refuse(c, why);
    };
    if (got < 1) return fail("expected HELLO <protocol> <name>");
    if (version != global::kProtocolVersion) {
        return fail("protocol " + std::to_string(version) + " is not supported (xschedd speaks " +
                    std::to_string(global::kProtocolVersion) + ")");
    }
    if (nfds != 2) return fail("expected a segment and a doorbell with HELLO");
    const int mfd = fds[0], evfd = fds[1];
    struct stat st;
    const int seals = fcntl(mfd, F_GET_SEALS);
    if (fstat(mfd, &st) != 0 || seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW) ||
        st.st_size != static_cast<off_t>(sizeof(global::Segment))) {
        return fail("the segment is not a sealed memfd of " + std::to_string(sizeof(global::Segment)) + " bytes");
    }
    if (!IsEventFd(evfd)) return fail("the doorbell is not an eventfd");
    for (auto &kv : clients_) {
        if (kv.second.pid != c.pid) continue;
        pollfd p{kv.second.fd, POLLIN, 0};  // the old registration may be closing (exec, restart)
        char b;
        if (poll(&p, 1, 0) == 1 && recv(kv.second.fd, &b, 1, MSG_DONTWAIT | MSG_PEEK) == 0) {
            RemoveClient(kv.first, "closed its connection");
            break;
        }
        return fail("pid " + std::to_string(c.pid) + " is already registered (one registration per process)");
    }
    if (static_cast<int>(clients_.size()) >= opts_.max_clients) {
        return fail("the scheduler's table is full (" + std::to_string(opts_.max_clients) + " processes)");
    }
    void *mem = mmap(nullptr, sizeof(global::Segment), PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    close(mfd);
    if (mem == MAP_FAILED) {
        close(evfd);
        Refuse(c, std::string("cannot map the segment: ") + std::strerror(errno));
        return;
    }
    auto *seg = static_cast<global::Segment *>(mem);
    if (seg->header.magic != global::kMagic || seg->header.version != global::kProtocolVersion ||
        seg->header.slots != global::kSlots || seg->header.size != sizeof(global::Segment)) {
        munmap(mem, sizeof(global::Segment));
        close(evfd);
        Refuse(c, "the segment's header does not match protocol " + std::to_string(global::kProtocolVersion));
        return;
    }
    const std::string ok = "OK " + std::to_string(global::kProtocolVersion) + " " + std::to_string(next_id_) + " " +
                           std::to_string(static_cast<unsigned>(opts_.policy)) + " " +
                           std::to_string(opts_.timeslice_us) + "\n";
    seg->header.policy.store(static_cast<uint32_t>(opts_.policy));
    seg->header.timeslice_us.store(opts_.timeslice_us);
    seg->header.heartbeat.fetch_add(1);
    if (send(c.fd, ok.data(), ok.size(), MSG_NOSIGNAL | MSG_DONTWAIT) != static_cast<ssize_t>(ok.size())) {
        munmap(mem, sizeof(global::Segment));
        close(evfd);
        CloseConn(c.fd);
        return;
    }
    Client cl;
    cl.id = next_id_++;
    cl.pid = c.pid;
    cl.uid = c.uid;
    cl.name = name[0] ? name : "process";
    cl.fd = c.fd;
    cl.evfd = evfd;
    cl.seg = seg;
    cl.joined_ns = global::NowNs();
    cl.st.assign(global::kSlots, SlotState{});
    cl.pidfd = static_cast<int>(syscall(SYS_pidfd_open, c.pid, 0));
    conns_.erase(c.fd);  // the connection becomes the client's control socket (already watched)
    client_fds_[cl.fd] = cl.id;
    client_fds_[cl.evfd] = cl.id;
    Watch(cl.evfd, EPOLLIN);
    if (cl.pidfd >= 0) {
        client_fds_[cl.pidfd] = cl.id;
        Watch(cl.pidfd, EPOLLIN);
    }
    Log("joined: pid %d %s (uid %u), %zu processes", static_cast<int>(cl.pid), cl.name.c_str(),
        static_cast<unsigned>(cl.uid), clients_.size() + 1);
    clients_[cl.id] = std::move(cl);
}

void Daemon::RemoveClient(uint64_t id, const std::string &why) {
    auto it = clients_.find(id);
    if (it == clients_.end()) return;
    Client &c = it->second;
    size_t queues = 0;
    for (uint32_t i = 0; i < global::kSlots; ++i) queues += c.seg->slots[i].used.load() == 1 ? 1 : 0;
    for (int fd : {c.fd, c.evfd, c.pidfd}) {
        if (fd < 0) continue;
        epoll_ctl(ep_, EPOLL_CTL_DEL, fd, nullptr);
        client_fds_.erase(fd);
        close(fd);
    }
    munmap(c.seg, sizeof(global::Segment));
    Log("left: pid %d %s %s, %zu queues dropped, %zu processes", static_cast<int>(c.pid), c.name.c_str(), why.c_str(),
        queues, clients_.size() - 1);
    clients_.erase(it);
}

void Daemon::Heartbeat() {
    for (auto &kv : clients_) kv.second.seg->header.heartbeat.fetch_add(1, std::memory_order_release);
}

void Daemon::Decide() {
    struct Ref {
        Client *c;
        uint32_t slot;
    };
    std::vector<Ref> refs;
    PolicyInput in;
    for (auto &kv : clients_) {
        Client &c = kv.second;
        c.seen_edge = c.seg->header.edge_seq.load(std::memory_order_acquire);  // views published before it
        for (uint32_t i = 0; i < global::kSlots; ++i) {
            global::Slot &s = c.seg->slots[i];
            SlotState &ss = c.st[i];
            if (s.used.load(std::memory_order_acquire) != 1) {
                if (ss.order != 0 && ss.suspended) {  // a queue that is gone: nothing may stay held back
                    s.suspend.store(0);
                    global::Bump(&s.wake_seq);
                }
                ss = SlotState{};
                continue;
            }
            const uint32_t gen = s.gen.load(std::memory_order_acquire);
            if (ss.order == 0 || ss.gen != gen) {  // a new queue in this slot
                ss = SlotState{};
                ss.gen = gen;
                ss.order = next_order_++;
                ss.suspended = s.suspend.load() != 0;
                ss.suspended_since_ns = ss.suspended ? global::NowNs() : 0;
            }
            XQueue::View v;
            v.handle = ss.order;
            v.priority = std::clamp<int32_t>(s.priority.load(std::memory_order_relaxed), PRIORITY_MIN, PRIORITY_MAX);
            v.weight = std::clamp<int32_t>(s.weight.load(std::memory_order_relaxed), WEIGHT_MIN, WEIGHT_MAX);
            v.group = Qualify(c.id, s.group.load(std::memory_order_relaxed));
            v.ready = s.ready.load(std::memory_order_acquire) != 0;
            v.suspended = ss.suspended;
            in.queues.push_back(v);
            refs.push_back(Ref{&c, i});
        }
    }
    // creation order across processes (the order the daemon first saw each queue)
    std::vector<size_t> idx(in.queues.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return in.queues[a].handle < in.queues[b].handle; });
    PolicyInput sorted;
    std::vector<Ref> sorted_refs;
    for (size_t i : idx) {
        sorted.queues.push_back(in.queues[i]);
        sorted_refs.push_back(refs[i]);
    }
    sorted.now = Clock::now();
    sorted.timeslice_us = opts_.timeslice_us;
    PolicyOutput out;
    out.suspend.assign(sorted.queues.size(), false);
    policy_->Decide(sorted, &out);
    ++decisions_;
    const uint64_t now = global::NowNs();
    // Suspend first, then resume (as the local scheduler): two queues never run together by accident.
    for (size_t i = 0; i < sorted_refs.size(); ++i) {
        if (!out.suspend[i]) continue;
        global::Slot &s = sorted_refs[i].c->seg->slots[sorted_refs[i].slot];
        SlotState &ss = sorted_refs[i].c->st[sorted_refs[i].slot];
        if (ss.suspended && s.suspend.load() != 0) continue;
        s.suspended_at_ns.store(now, std::memory_order_relaxed);
        s.suspend_epoch.fetch_add(1, std::memory_order_relaxed);
        s.suspend.store(1, std::memory_order_seq_cst);
        ss.suspended = true;
        ss.suspended_since_ns = now;
        if (opts_.verbose) Log("suspend pid %d slot %u", static_cast<int>(sorted_refs[i].c->pid), sorted_refs[i].slot);
    }
    for (size_t i = 0; i < sorted_refs.size(); ++i) {
        if (out.suspend[i]) continue;
        global::Slot &s = sorted_refs[i].c->seg->slots[sorted_refs[i].slot];
        SlotState &ss = sorted_refs[i].c->st[sorted_refs[i].slot];
        if (!ss.suspended && s.suspend.load() == 0) continue;
        if (ss.suspended) s.suspended_ns.fetch_add(now - ss.suspended_since_ns, std::memory_order_relaxed);
        s.suspend.store(0, std::memory_order_seq_cst);
        global::Bump(&s.wake_seq);
        ss.suspended = false;
        if (opts_.verbose) Log("resume pid %d slot %u", static_cast<int>(sorted_refs[i].c->pid), sorted_refs[i].slot);
    }
    // What each process may want to know about the others (whether a more important queue exists).
    for (auto &kv : clients_) {
        Client &c = kv.second;
        int32_t top = PRIORITY_MIN;
        uint32_t any = 0;
        for (size_t i = 0; i < sorted_refs.size(); ++i) {
            if (sorted_refs[i].c == &c) continue;
            any = 1;
            top = std::max(top, sorted.queues[i].priority);
        }
        if (any != c.others_any || (any && top != c.others_max)) {
            c.seg->header.others_max.store(top, std::memory_order_relaxed);
            c.seg->header.others_any.store(any, std::memory_order_release);
            c.seg->header.others_gen.fetch_add(1, std::memory_order_acq_rel);
            c.others_any = any;
            c.others_max = top;
        }
    }
    // The decision is in force: answer every edge it covered.
    for (auto &kv : clients_) {
        Client &c = kv.second;
        if (c.decided == c.seen_edge) continue;
        const uint64_t at = c.seg->header.edge_at_ns.load(std::memory_order_relaxed);
        if (at != 0 && now >= at && now - at < 10000000000ull) {
            const double us = static_cast<double>(now - at) / 1000.0;
            if (latency_us_.size() < 4096) {
                latency_us_.push_back(us);
            } else {
                latency_us_[latency_next_] = us;
            }
            latency_next_ = (latency_next_ + 1) % 4096;
            ++latency_count_;
        }
        c.decided = c.seen_edge;
        c.seg->header.decided_seq.store(c.seen_edge, std::memory_order_release);
        global::FutexWake(&c.seg->header.decided_seq);
    }
    wake_at_ = out.wake_at;
}

std::string Daemon::StatusJson() {
    std::vector<double> lat = latency_us_;
    std::sort(lat.begin(), lat.end());
    auto pct = [&](double p) {
        return lat.empty() ? 0.0 : lat[std::min(lat.size() - 1, static_cast<size_t>(p * lat.size()))];
    };
    const uint64_t now = global::NowNs();
    char head[768];
    std::snprintf(head, sizeof(head),
                  "{\"daemon\": {\"protocol\": %u, \"pid\": %d, \"uid\": %u, \"socket\": %s, \"policy\": \"%s\", "
                  "\"timeslice_us\": %" PRId64 ", \"max_processes\": %d, \"group\": %s, \"uptime_s\": %.1f, "
                  "\"decisions\": %" PRIu64 ", \"decision_latency_us\": {\"n\": %" PRIu64
                  ", \"window\": %zu, \"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"max\": %.1f}}, \"processes\": [",
                  global::kProtocolVersion, static_cast<int>(getpid()), static_cast<unsigned>(geteuid()),
                  JsonString(opts_.socket_path).c_str(), PolicyName(opts_.policy), opts_.timeslice_us,
                  opts_.max_clients, opts_.group.empty() ? "null" : JsonString(opts_.group).c_str(),
                  (now - started_ns_) / 1e9, decisions_, latency_count_, lat.size(), pct(0.5), pct(0.9), pct(0.99),
                  lat.empty() ? 0.0 : lat.back());
    std::string o = head;
    bool first_c = true;
    for (auto &kv : clients_) {
        Client &c = kv.second;
        char ch[256];
        std::snprintf(ch, sizeof(ch),
                      "%s{\"id\": %" PRIu64
                      ", \"pid\": %d, \"uid\": %u, \"name\": %s, \"joined_s\": %.1f, \"queues\": [",
                      first_c ? "" : ", ", c.id, static_cast<int>(c.pid), static_cast<unsigned>(c.uid),
                      JsonString(c.name).c_str(), (now - c.joined_ns) / 1e9);
        o += ch;
        first_c = false;
        bool first_q = true;
        for (uint32_t i = 0; i < global::kSlots; ++i) {
            global::Slot &s = c.seg->slots[i];
            if (s.used.load() != 1) continue;
            const SlotState &ss = c.st[i];
            const bool susp = s.suspend.load() != 0;
            const uint64_t sus_ns =
                s.suspended_ns.load() +
                (susp && ss.suspended && now > ss.suspended_since_ns ? now - ss.suspended_since_ns : 0);
            char q[512];
            std::snprintf(q, sizeof(q),
                          "%s{\"slot\": %u, \"name\": %s, \"priority\": %d, \"weight\": %d, \"group\": %" PRIu64
                          ", \"state\": \"%s\", \"ready\": %s, \"suspended\": %s, \"suspended_us\": %" PRIu64
                          ", \"units\": %" PRIu64 ", \"in_flight\": %" PRId64 "}",
                          first_q ? "" : ", ", i, JsonString(global::GetName(&s)).c_str(), s.priority.load(),
                          s.weight.load(), s.group.load(), StateName(s.state.load()), s.ready.load() ? "true" : "false",
                          susp ? "true" : "false", sus_ns / 1000, s.units.load(), s.in_flight.load());
            o += q;
            first_q = false;
        }
        o += "]}";
    }
    return o + "]}\n";
}

}  // namespace daemon
}  // namespace xsched
