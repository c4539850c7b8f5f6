// global_shm.h: what a joined process and xschedd share: the segment layout, the wire protocol and the
// futex, fd-passing and clock helpers both sides use (DESIGN.md, "Global scheduler").
#ifndef XSCHED_SRC_GLOBAL_SHM_H_
#define XSCHED_SRC_GLOBAL_SHM_H_

#include <linux/futex.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>

namespace xsched {
namespace global {

// kProtocolVersion is the version of the socket protocol and of the segment layout; a client and a daemon
// of different versions refuse each other with one line.
constexpr uint32_t kProtocolVersion = 1;
// kMagic starts every segment header ("XSG1").
constexpr uint32_t kMagic = 0x31475358u;
// kSlots is the number of queue slots of one process's segment.
constexpr uint32_t kSlots = 256;
// kHeartbeatMs is how often the daemon bumps each segment's heartbeat.
constexpr int kHeartbeatMs = 100;
// kStaleMs: a joined process whose heartbeat has not moved for this long treats the daemon as gone.
constexpr int kStaleMs = 1000;
// kDecisionTimeoutMs bounds how long an edge waits for the daemon's decision.
constexpr int kDecisionTimeoutMs = 1000;
// kReplyTimeoutMs bounds the wait for the daemon's answer to a registration.
constexpr int kReplyTimeoutMs = 1000;
// kRetryMs is the interval between attempts to (re)join a daemon.
constexpr int kRetryMs = 250;
// kNameLen is the length of a queue label in a slot (NUL-padded, at most kNameLen - 1 bytes used).
constexpr size_t kNameLen = 64;

// Slot is one queue of a joined process. The client writes the first part (its view of the queue, as the
// policy sees it, plus counters for status); the daemon writes the second part, on its own cache line,
// which the gate reads on every call (`suspend`).
struct alignas(64) Slot {
    // ---- written by the client ----
    std::atomic<uint32_t> used;                // 1 while a live queue owns the slot
    std::atomic<uint32_t> gen;                 // bumped each time the slot is taken (a new queue)
    std::atomic<uint32_t> ready;               // Ready or an activity scope open
    std::atomic<int32_t> priority;             // XHintPriority
    std::atomic<int32_t> weight;               // XHintWeight
    std::atomic<int32_t> state;                // XQueueState
    std::atomic<uint64_t> group;               // XHintGroup (per process: the daemon qualifies it)
    std::atomic<uint64_t> units;               // units admitted
    std::atomic<int64_t> in_flight;            // units launched, not known complete
    std::atomic<uint64_t> name[kNameLen / 8];  // the queue's label, 8 bytes per word
    // ---- written by the daemon ----
    alignas(64) std::atomic<uint32_t> suspend;  // 1: the gate must not admit (read on every gate)
    std::atomic<uint32_t> wake_seq;             // futex word of blocked gates: bumped on every change they must see
    std::atomic<uint32_t> suspend_epoch;        // bumped at every suspension (0 -> 1)
    std::atomic<uint32_t> pad;
    std::atomic<uint64_t> suspended_at_ns;  // CLOCK_MONOTONIC of the current suspension's start
    std::atomic<uint64_t> suspended_ns;     // finished suspensions, total
};

// Header starts a segment.
struct alignas(64) Header {
    // ---- written by the client before it sends the segment ----
    uint32_t magic;    // kMagic
    uint32_t version;  // kProtocolVersion
    uint32_t slots;    // kSlots
    uint32_t size;     // sizeof(Segment)
    // ---- written by the client ----
    std::atomic<uint32_t> edge_seq;  // bumped (after publishing views) at every edge, hint, add, remove
    std::atomic<uint32_t> pad0;
    std::atomic<uint64_t> edge_at_ns;  // CLOCK_MONOTONIC of the last edge (decision latency)
    // ---- written by the daemon ----
    alignas(64) std::atomic<uint32_t> decided_seq;  // futex word: the last edge_seq a decision covered
    std::atomic<uint32_t> policy;                   // the daemon's XPolicyType
    std::atomic<int64_t> timeslice_us;              // the daemon's WRR quantum
    std::atomic<uint64_t> heartbeat;                // bumped every kHeartbeatMs
    std::atomic<uint32_t> others_gen;               // bumped whenever others_max or others_any changes
    std::atomic<uint32_t> others_any;               // 1 while another process has a queue
    std::atomic<int32_t> others_max;                // the highest priority among the other processes' queues
};

// Segment is the whole shared memory of one joined process (a sealed memfd the client creates).
struct Segment {
    Header header;
    Slot slots[kSlots];
};

static_assert(std::atomic<uint32_t>::is_always_lock_free && std::atomic<uint64_t>::is_always_lock_free,
              "shared-memory atomics must be lock-free (address-free)");
static_assert(sizeof(Segment) < (1u << 20), "segment size fits the header's field");

// NowNs() is CLOCK_MONOTONIC in nanoseconds (the same clock in every process, and std::steady_clock's).
inline uint64_t NowNs() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// FutexWait() sleeps while *w == expected, at most timeout_ms (a shared futex: other processes wake it).
inline void FutexWait(std::atomic<uint32_t> *w, uint32_t expected, int timeout_ms) {
    timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
    syscall(SYS_futex, reinterpret_cast<uint32_t *>(w), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

// FutexWake() wakes every waiter of w (in any process that maps it).
inline void FutexWake(std::atomic<uint32_t> *w) {
    syscall(SYS_futex, reinterpret_cast<uint32_t *>(w), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

// Bump() increments a futex word and wakes its waiters.
inline void Bump(std::atomic<uint32_t> *w) {
    w->fetch_add(1, std::memory_order_acq_rel);
    FutexWake(w);
}

// SetName() stores a label into a slot's name words.
inline void SetName(Slot *s, const char *name) {
    char buf[kNameLen] = {0};
    std::strncpy(buf, name, kNameLen - 1);
    for (size_t i = 0; i < kNameLen / 8; ++i) {
        uint64_t w;
        std::memcpy(&w, buf + 8 * i, 8);
        s->name[i].store(w, std::memory_order_relaxed);
    }
}

// GetName() reads a slot's label (always NUL-terminated, even if the client wrote garbage).
inline std::string GetName(const Slot *s) {
    char buf[kNameLen + 1] = {0};
    for (size_t i = 0; i < kNameLen / 8; ++i) {
        uint64_t w = s->name[i].load(std::memory_order_relaxed);
        std::memcpy(buf + 8 * i, &w, 8);
    }
    buf[kNameLen - 1] = '\0';
    return std::string(buf);
}

// SendWithFds() sends `msg` and up to 4 file descriptors in one sendmsg; false on error.
inline bool SendWithFds(int sock, const std::string &msg, const int *fds, int nfds) {
    iovec iov{const_cast<char *>(msg.data()), msg.size()};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char ctrl[CMSG_SPACE(4 * sizeof(int))];
    if (nfds > 0) {
        std::memset(ctrl, 0, sizeof(ctrl));
        mh.msg_control = ctrl;
        mh.msg_controllen = CMSG_SPACE(static_cast<size_t>(nfds) * sizeof(int));
        cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(static_cast<size_t>(nfds) * sizeof(int));
        std::memcpy(CMSG_DATA(c), fds, static_cast<size_t>(nfds) * sizeof(int));
    }
    ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    return n == static_cast<ssize_t>(msg.size());
}

}  // namespace global
}  // namespace xsched

#endif  // XSCHED_SRC_GLOBAL_SHM_H_
