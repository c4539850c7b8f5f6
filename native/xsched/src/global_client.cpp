// global_client.cpp: registration with xschedd, the session's segment and doorbell, the agent thread.
#include "global_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace xsched {
namespace {

// ProcessName() is this process's short name (its executable's file name), spaces replaced.
std::string ProcessName() {
    char buf[4096] = {0};
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    std::string s(n > 0 ? buf : "");
    s = s.substr(s.rfind('/') + 1);
    if (s.size() > 48) s.resize(48);
    for (char &c : s) {
        if (c == ' ' || c == '\t' || static_cast<unsigned char>(c) < 0x20) c = '_';
    }
    return s.empty() ? "process" : s;
}

// Printable() keeps the first line of an answer readable in a one-line message.
std::string Printable(const std::string &s) {
    std::string out;
    for (char c : s) {
        if (c == '\n' || out.size() >= 200) break;
        out += (static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f) ? c : '?';
    }
    return out;
}

// TrustedPeer() accepts a daemon run by this user or root, or by the owner of the socket when only that
// owner (or root) can create entries in the socket's directory.
bool TrustedPeer(const std::string &path, uid_t peer, std::string *why) {
    if (peer == geteuid() || peer == 0) return true;
    struct stat st, dst;
    std::string dir = path.substr(0, path.rfind('/'));
    if (dir.empty()) dir = "/";
    if (stat(path.c_str(), &st) == 0 && stat(dir.c_str(), &dst) == 0 && st.st_uid == peer &&
        (dst.st_uid == peer || dst.st_uid == 0) && (dst.st_mode & (S_IWGRP | S_IWOTH)) == 0) {
        return true;
    }
    *why = "the scheduler at " + path + " runs as uid " + std::to_string(peer) + ", not as this user (uid " +
           std::to_string(geteuid()) + "), and its directory is not reserved to it: refusing it";
    return false;
}

}  // namespace

GlobalClient::GlobalClient(std::string path, Hooks hooks) : path_(std::move(path)), hooks_(std::move(hooks)) {
    stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

GlobalClient::~GlobalClient() {
    Stop();
    if (stop_fd_ >= 0) close(stop_fd_);
}

bool GlobalClient::Connect(Session *s, std::string *why) {
    struct stat st;
    if (stat(path_.c_str(), &st) != 0) {
        *why = "no global scheduler at " + path_ + " (" + std::strerror(errno) + ")";
        return false;
    }
    if (!S_ISSOCK(st.st_mode)) {
        *why = path_ + " is not a socket, so not an xsched scheduler";
        return false;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *why = std::string("socket: ") + std::strerror(errno);
        return false;
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.c_str(), path_.size());
    if (connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0) {
        *why = "no global scheduler listening at " + path_ + " (" + std::strerror(errno) + ")";
        close(fd);
        return false;
    }
    ucred cred{};
    socklen_t clen = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 || !TrustedPeer(path_, cred.uid, why)) {
        if (why->empty()) *why = std::string("SO_PEERCRED: ") + std::strerror(errno);
        close(fd);
        return false;
    }
    // The segment: a sealed memfd (the daemon checks the seals, so it can never be shrunk under it).
    int mfd = memfd_create("xsched-global", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    void *mem = MAP_FAILED;
    if (mfd >= 0 && ftruncate(mfd, sizeof(global::Segment)) == 0 &&
        fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0) {
        mem = mmap(nullptr, sizeof(global::Segment), PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    }
    int evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (mem == MAP_FAILED || evfd < 0) {
        *why = std::string("cannot create the shared segment: ") + std::strerror(errno);
        if (mem != MAP_FAILED) munmap(mem, sizeof(global::Segment));
        if (mfd >= 0) close(mfd);
        if (evfd >= 0) close(evfd);
        close(fd);
        return false;
    }
    auto *seg = new (mem) global::Segment();  // a zeroed file: value-initialise the atomics in place
    seg->header.magic = global::kMagic;
    seg->header.version = global::kProtocolVersion;
    seg->header.slots = global::kSlots;
    seg->header.size = sizeof(global::Segment);
    const std::string hello = "HELLO " + std::to_string(global::kProtocolVersion) + " " + ProcessName() + "\n";
    const int fds[2] = {mfd, evfd};
    const bool sent = global::SendWithFds(fd, hello, fds, 2);
    close(mfd);  // the mapping and the daemon's copy keep the segment
    std::string reply;
    bool answered = false;
    if (sent) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(global::kReplyTimeoutMs);
        while (reply.find('\n') == std::string::npos && reply.size() < 512) {
            int left = static_cast<int>(
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now())
                    .count());
            pollfd p{fd, POLLIN, 0};
            if (left <= 0 || poll(&p, 1, left) <= 0) break;
            char buf[256];
            ssize_t n = recv(fd, buf, sizeof(buf), 0);
            if (n <= 0) break;
            reply.append(buf, static_cast<size_t>(n));
        }
        answered = !reply.empty();
    }
    bool ok = false;
    if (!sent) {
        *why = "cannot register with " + path_ + " (" + std::strerror(errno) + ")";
    } else if (!answered) {
        *why =
            path_ + " is not an xsched scheduler (no answer within " + std::to_string(global::kReplyTimeoutMs) + " ms)";
    } else if (reply.rfind("ERR ", 0) == 0) {
        *why = "the scheduler at " + path_ + " refused this process: " + Printable(reply.substr(4));
    } else if (reply.rfind("OK ", 0) == 0) {
        unsigned version = 0, policy = 0;
        unsigned long long id = 0;
        long long quantum = 0;
        if (std::sscanf(reply.c_str(), "OK %u %llu %u %lld", &version, &id, &policy, &quantum) != 4) {
            *why = path_ + " is not an xsched scheduler (it answered '" + Printable(reply) + "')";
        } else if (version != global::kProtocolVersion) {
            *why = "the scheduler at " + path_ + " speaks protocol " + std::to_string(version) + ", this process " +
                   std::to_string(global::kProtocolVersion) + ": refusing it";
        } else {
            ok = true;
        }
    } else {
        *why = path_ + " is not an xsched scheduler (it answered '" + Printable(reply) + "')";
    }
    if (!ok) {
        close(evfd);
        close(fd);
        munmap(mem, sizeof(global::Segment));  // never adopted: no queue ever pointed into it
        return false;
    }
    sessions_.fetch_add(1);
    s->fd = fd;
    s->evfd = evfd;
    s->seg = seg;
    s->used.assign(global::kSlots, false);
    return true;
}

void GlobalClient::Start() {
    std::string why;
    Session s;
    bool joined = false;
    if (Connect(&s, &why)) {
        {
            Lock l(mu_);
            session_ = s;
            stop_ = false;
            header_.store(s.seg ? &s.seg->header : nullptr);
            evfd_.store(s.evfd);
            broken_.store(false);
        }
        joined = hooks_.adopt(&why);
        if (!joined) CloseSession();
    }
    {
        Lock l(mu_);
        stop_ = false;
    }
    if (joined) {
        Note("xsched: joined the global scheduler at " + path_);
    } else {
        Note("xsched: " + why + "; scheduling locally, retrying in the background");
    }
    agent_ = std::thread([this] { Run(); });
}

void GlobalClient::Stop() {
    {
        Lock l(mu_);
        stop_ = true;
        cv_.notify_all();
    }
    if (stop_fd_ >= 0) {
        uint64_t one = 1;
        (void)!write(stop_fd_, &one, sizeof(one));
    }
    if (agent_.joinable()) agent_.join();
    if (stop_fd_ >= 0) {
        uint64_t v;
        (void)!read(stop_fd_, &v, sizeof(v));
    }
    CloseSession();
}

global::Slot *GlobalClient::Alloc() {
    Lock l(mu_);
    if (session_.seg == nullptr) return nullptr;
    for (uint32_t i = 0; i < global::kSlots; ++i) {
        if (session_.used[i]) continue;
        session_.used[i] = true;
        global::Slot *s = &session_.seg->slots[i];
        s->gen.fetch_add(1, std::memory_order_relaxed);
        s->used.store(1, std::memory_order_release);
        return s;
    }
    return nullptr;
}

void GlobalClient::Free(global::Slot *slot) {
    Lock l(mu_);
    if (session_.seg == nullptr) return;
    const ptrdiff_t i = slot - session_.seg->slots;
    if (i < 0 || i >= static_cast<ptrdiff_t>(global::kSlots)) return;  // a slot of an older session
    slot->used.store(0, std::memory_order_release);
    slot->ready.store(0, std::memory_order_relaxed);
    session_.used[static_cast<size_t>(i)] = false;
}

bool GlobalClient::Decide(bool wait) {
    global::Header *h = header_.load(std::memory_order_acquire);
    if (h == nullptr || broken_.load()) return false;
    h->edge_at_ns.store(global::NowNs(), std::memory_order_relaxed);
    const uint32_t seq = h->edge_seq.fetch_add(1, std::memory_order_acq_rel) + 1;
    uint64_t one = 1;
    (void)!write(evfd_.load(), &one, sizeof(one));
    if (!wait) return true;
    const uint64_t deadline = global::NowNs() + static_cast<uint64_t>(global::kDecisionTimeoutMs) * 1000000ull;
    for (;;) {
        const uint32_t d = h->decided_seq.load(std::memory_order_acquire);
        if (static_cast<int32_t>(d - seq) >= 0) return !broken_.load();
        if (broken_.load()) return false;
        const uint64_t now = global::NowNs();
        if (now >= deadline) {
            late_.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        int left_ms = static_cast<int>((deadline - now) / 1000000ull) + 1;
        global::FutexWait(&h->decided_seq, d, left_ms);
    }
}

void GlobalClient::CloseSession() {
    Lock l(mu_);
    header_.store(nullptr);
    evfd_.store(-1);
    if (session_.fd >= 0) close(session_.fd);
    if (session_.evfd >= 0) close(session_.evfd);
    session_ = Session{};
}

void GlobalClient::DaemonPolicy(XPolicyType *policy, int64_t *timeslice_us) const {
    global::Header *h = header_.load(std::memory_order_acquire);
    *policy = h ? static_cast<XPolicyType>(h->policy.load()) : kPolicyUnknown;
    *timeslice_us = h ? h->timeslice_us.load() : 0;
}

uint64_t GlobalClient::Generation() const {
    global::Header *h = header_.load(std::memory_order_acquire);
    return h ? (sessions_.load() << 32) + h->others_gen.load() : 0;
}

bool GlobalClient::OthersMaxPriority(int32_t *priority) const {
    global::Header *h = header_.load(std::memory_order_acquire);
    if (h == nullptr || h->others_any.load(std::memory_order_acquire) == 0) return false;
    *priority = h->others_max.load(std::memory_order_acquire);
    return true;
}

void GlobalClient::Lost(const std::string &why) {
    if (global::Header *h = header_.load()) {
        broken_.store(true);
        // release every edge waiting for a decision that will not come
        h->decided_seq.store(h->edge_seq.load());
        global::FutexWake(&h->decided_seq);
    }
    hooks_.drop(why);
    CloseSession();
    Note("xsched: " + why + "; scheduling locally until it is back");
}

void GlobalClient::Note(const std::string &msg) {
    {
        Lock l(mu_);
        if (msg == last_note_) return;
        last_note_ = msg;
    }
    std::fprintf(stderr, "%s\n", msg.c_str());
    std::fflush(stderr);
}

void GlobalClient::Run() {
    int retry_ms = global::kRetryMs;
    uint64_t last_beat = 0;
    uint64_t beat_at = global::NowNs();
    for (;;) {
        int fd;
        {
            Lock l(mu_);
            if (stop_) return;
            fd = session_.fd;
        }
        if (fd < 0) {
            pollfd p{stop_fd_, POLLIN, 0};
            poll(&p, 1, retry_ms);
            {
                Lock l(mu_);
                if (stop_) return;
            }
            std::string why;
            Session s;
            if (!Connect(&s, &why)) {
                // no daemon yet: try again soon; a daemon that refused or is not ours: less often
                retry_ms = why.rfind("no global scheduler", 0) == 0 ? global::kRetryMs : 4 * global::kRetryMs;
                Note("xsched: " + why + "; scheduling locally, retrying in the background");
                continue;
            }
            {
                Lock l(mu_);
                session_ = s;
                header_.store(&s.seg->header);
                evfd_.store(s.evfd);
                broken_.store(false);
            }
            retry_ms = global::kRetryMs;
            if (hooks_.adopt(&why)) {
                Note("xsched: joined the global scheduler at " + path_);
                last_beat = 0;
                beat_at = global::NowNs();
            } else {
                CloseSession();
                Note("xsched: " + why + "; scheduling locally");
            }
            continue;
        }
        pollfd p[2] = {{fd, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
        int n = poll(p, 2, global::kHeartbeatMs);
        if (n > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            char buf[64];
            ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                Lost("the global scheduler at " + path_ + " is gone (connection closed)");
                continue;
            }
        }
        if (global::Header *h = header_.load()) {
            const uint64_t beat = h->heartbeat.load(std::memory_order_acquire);
            const uint64_t now = global::NowNs();
            if (beat != last_beat) {
                last_beat = beat;
                beat_at = now;
            } else if (now - beat_at > static_cast<uint64_t>(global::kStaleMs) * 1000000ull) {
                Lost("the global scheduler at " + path_ + " stopped answering (no heartbeat for " +
                     std::to_string(global::kStaleMs) + " ms)");
                continue;
            }
        }
        hooks_.refresh();
    }
}

bool FetchGlobalStatus(const std::string &path, std::string *json, std::string *why) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0) {
        *why = "no global scheduler at " + path + " (" + std::strerror(errno) + ")";
        if (fd >= 0) close(fd);
        return false;
    }
    const char req[] = "STATUS\n";
    if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(req) - 1)) {
        *why = "cannot ask " + path + " for its status (" + std::strerror(errno) + ")";
        close(fd);
        return false;
    }
    std::string out;
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 2000) <= 0) break;
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    close(fd);
    if (out.empty() || out[0] != '{') {
        *why = path + " is not an xsched scheduler (it answered '" + Printable(out) + "')";
        return false;
    }
    *json = out;
    return true;
}

}  // namespace xsched
