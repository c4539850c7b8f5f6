// global_client.h: a process's connection to the global scheduler daemon (xschedd).
#ifndef XSCHED_SRC_GLOBAL_CLIENT_H_
#define XSCHED_SRC_GLOBAL_CLIENT_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "global_shm.h"
#include "mutex.h"
#include "xsched/types.h"

namespace xsched {

// GlobalClient registers the process with the daemon at one socket path and keeps the session: a sealed
// memfd segment (the queues' views and the daemon's suspend flags) and an eventfd doorbell, both handed
// to the daemon at registration. An agent thread watches the session (socket closed, heartbeat stale)
// and retries joining every kRetryMs while the process has queues. The Scheduler owns it and is called
// back (`adopt`, `drop`, `refresh`) without any GlobalClient lock held; lock order: Scheduler::mu_ before
// GlobalClient::mu_.
class GlobalClient {
public:
    // Hooks are the Scheduler's callbacks, run on the agent thread (or in Start()).
    struct Hooks {
        // adopt() moves the queues onto the new session; false (with *why) gives the session up.
        std::function<bool(std::string *why)> adopt;
        // drop() returns to local scheduling after the session was lost (why: one line).
        std::function<void(const std::string &why)> drop;
        // refresh() republishes the queues' counters for status (every 100 ms while joined).
        std::function<void()> refresh;
    };

    // GlobalClient() remembers the path; nothing connects before Start().
    GlobalClient(std::string path, Hooks hooks);
    // ~GlobalClient() stops the agent (the process-lifetime scheduler never destroys it).
    ~GlobalClient();
    GlobalClient(const GlobalClient &) = delete;
    GlobalClient &operator=(const GlobalClient &) = delete;

    // path() is the daemon's socket path.
    const std::string &path() const { return path_; }
    // Start() tries to join at once and starts the agent thread (which keeps retrying).
    void Start() XSCHED_EXCLUDES(mu_);
    // Stop() leaves the daemon and joins the agent thread (the last queue is gone).
    void Stop() XSCHED_EXCLUDES(mu_);

    // Alloc() takes a free slot of the current session; null when the table is full or there is none.
    global::Slot *Alloc() XSCHED_EXCLUDES(mu_);
    // Free() gives a slot back (the queue is gone).
    void Free(global::Slot *slot) XSCHED_EXCLUDES(mu_);
    // Decide() asks the daemon to decide on the views just published and, with wait, waits for its decision (at
    // most kDecisionTimeoutMs); false when the session is broken or the daemon did not answer in time. Without
    // wait it only rings (rule G1: nothing of this process is Ready, so no decision can hold it back).
    bool Decide(bool wait);
    // CloseSession() ends the current session (the daemon sees the socket close); slots stay mapped.
    void CloseSession() XSCHED_EXCLUDES(mu_);
    // DaemonPolicy() is the daemon's policy and quantum as it announced them.
    void DaemonPolicy(XPolicyType *policy, int64_t *timeslice_us) const;
    // Generation() changes whenever the daemon's view of the other processes changes (0 when not joined).
    uint64_t Generation() const;
    // OthersMaxPriority() is the highest priority of another process's queue (false: none, or not joined).
    bool OthersMaxPriority(int32_t *priority) const;
    // Note() prints a one-line message on stderr unless it repeats the previous one.
    void Note(const std::string &msg) XSCHED_EXCLUDES(mu_);
    // LateDecisions() counts decisions that timed out.
    uint64_t LateDecisions() const { return late_.load(std::memory_order_relaxed); }

private:
    // Session is one registration with one daemon.
    struct Session {
        int fd = -1;                     // the control socket
        int evfd = -1;                   // the doorbell (eventfd, also held by the daemon)
        global::Segment *seg = nullptr;  // mapped for the process's lifetime (never unmapped)
        std::vector<bool> used;          // slots taken
    };
    // sessions_ counts adopted-or-attempted sessions (part of Generation()).
    std::atomic<uint64_t> sessions_{0};

    // Connect() opens and registers a new session; false with a one-line *why.
    bool Connect(Session *s, std::string *why);
    // Run() is the agent thread.
    void Run();
    // Lost() breaks the session: pending decisions return at once, then the scheduler drops it.
    void Lost(const std::string &why);

    const std::string path_;
    const Hooks hooks_;
    Mutex mu_;                    // guards the session and the agent's state
    std::condition_variable cv_;  // wakes the agent (stop)
    Session session_ XSCHED_GUARDED_BY(mu_);
    bool stop_ XSCHED_GUARDED_BY(mu_) = false;
    std::string last_note_ XSCHED_GUARDED_BY(mu_);   // the last message printed
    std::atomic<global::Header *> header_{nullptr};  // the live session's header (read lock-free)
    std::atomic<int> evfd_{-1};                      // its doorbell
    std::atomic<bool> broken_{false};                // the live session is lost
    std::atomic<uint64_t> late_{0};                  // timed-out decisions
    int stop_fd_ = -1;                               // eventfd that interrupts the agent's poll
    std::thread agent_;                              // the agent thread (Start/Stop, serialised by the caller)
};

// FetchGlobalStatus() asks the daemon at path for its status (JSON); false with a one-line *why.
bool FetchGlobalStatus(const std::string &path, std::string *json, std::string *why);

}  // namespace xsched

#endif  // XSCHED_SRC_GLOBAL_CLIENT_H_
