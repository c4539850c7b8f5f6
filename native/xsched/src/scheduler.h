// scheduler.h: the in-process (local) scheduler.
#ifndef XSCHED_SRC_SCHEDULER_H_
#define XSCHED_SRC_SCHEDULER_H_

#include <atomic>
#include <condition_variable>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "mutex.h"
#include "policy.h"
#include "xqueue.h"
#include "xsched/hint.h"

namespace xsched {

class GlobalClient;
namespace global {
struct Slot;
}  // namespace global

// Scheduler applies a Policy to the process's XQueues. Edges (Ready/Idle) and
// hints run the policy synchronously on the calling thread, so a decision is
// in force before the gate that raised the edge admits anything; a scheduler
// thread runs it again when a policy asks for a timer (WRR turns). The thread
// exists only while queues exist.
class Scheduler {
public:
    // Config is the scheduler's start configuration.
    struct Config {
        // type is Local (policy thread) or AppManaged (no suspensions).
        XSchedulerType type = kSchedulerLocal;
        // policy is the Local scheduler's policy.
        XPolicyType policy = kPolicyHighestPriorityFirst;
        // timeslice_us is the WRR quantum.
        int64_t timeslice_us = 5000;
        // global_path is the socket of the global scheduler to join ("" = none; XSCHED_SCHEDULER).
        std::string global_path;
    };

    // Get() returns the process's scheduler, created from `cfg` on first use.
    static Scheduler &Get(const Config &cfg);
    // Existing() returns the scheduler if it was created, else null.
    static Scheduler *Existing();

    // Scheduler() makes a scheduler with cfg (no thread until a queue is added).
    explicit Scheduler(const Config &cfg);
    // ~Scheduler() stops the thread.
    ~Scheduler();
    Scheduler(const Scheduler &) = delete;
    Scheduler &operator=(const Scheduler &) = delete;
    Scheduler(Scheduler &&) = delete;
    Scheduler &operator=(Scheduler &&) = delete;

    // Add() starts scheduling q (and the thread, for the first queue).
    void Add(std::shared_ptr<XQueue> q) XSCHED_EXCLUDES(mu_);
    // Remove() stops scheduling q, resumes it, and reschedules the rest; the
    // thread stops with the last queue.
    void Remove(const std::shared_ptr<XQueue> &q) XSCHED_EXCLUDES(mu_);
    // Reschedule() runs the policy now and applies its decision.
    void Reschedule() XSCHED_EXCLUDES(mu_);
    // SetScheduler() switches type/policy at run time; InvalidValue if unknown.
    XResult SetScheduler(XSchedulerType type, XPolicyType policy) XSCHED_EXCLUDES(mu_);
    // SetTimeslice() changes the WRR quantum.
    void SetTimeslice(int64_t us) XSCHED_EXCLUDES(mu_);
    // Generation() counts changes that can change who may preempt whom: queues added or removed, hints,
    // policy switches (XSchedGeneration), and, while joined, the daemon's view of the other processes.
    uint64_t Generation() const;
    // BumpGeneration() records such a change (after it was applied).
    void BumpGeneration() { generation_.fetch_add(1, std::memory_order_acq_rel); }
    // SetGlobal() makes the process join the global scheduler at `path` whenever it has queues ("" leaves
    // it); while not joined it schedules locally with its own policy.
    void SetGlobal(const std::string &path) XSCHED_EXCLUDES(mu_, life_mu_);
    // GlobalPath() is the path given to SetGlobal() ("" if none).
    std::string GlobalPath() XSCHED_EXCLUDES(life_mu_);
    // GlobalMaxPriority() is the highest priority of another joined process's queue; false if none.
    bool GlobalMaxPriority(int32_t *priority) const;
    // Snapshot() fills the snapshot API's structures.
    void Snapshot(XSchedSnapshotInfo *info, XQueueInfo *rows, size_t capacity, size_t *written) XSCHED_EXCLUDES(mu_);

private:
    // RescheduleLocked() is Reschedule() with mu_ held.
    void RescheduleLocked() XSCHED_REQUIRES(mu_);
    // Run() is the timer thread.
    void Run();
    // AdoptGlobal() moves every queue onto a new session of the global client (its adopt hook).
    bool AdoptGlobal(std::string *why) XSCHED_EXCLUDES(mu_);
    // DropGlobal() returns to local scheduling: the local decision first, then the daemon's is lifted.
    void DropGlobal() XSCHED_EXCLUDES(mu_);
    // DropGlobalLocked() is DropGlobal() with mu_ held.
    void DropGlobalLocked() XSCHED_REQUIRES(mu_);
    // RefreshGlobal() republishes the queues' counters (the global client's refresh hook).
    void RefreshGlobal() XSCHED_EXCLUDES(mu_);
    // MakeGlobal() builds a global client for path with this scheduler's hooks.
    std::unique_ptr<GlobalClient> MakeGlobal(const std::string &path);

    Mutex life_mu_;                                          // serialises thread start/stop (taken before mu_)
    Mutex mu_;                                               // guards the scheduler state below
    std::condition_variable cv_;                             // wakes the timer thread
    XSchedulerType type_ XSCHED_GUARDED_BY(mu_);             // Local or AppManaged
    XPolicyType policy_type_ XSCHED_GUARDED_BY(mu_);         // last Local policy
    int64_t timeslice_us_ XSCHED_GUARDED_BY(mu_);            // WRR quantum
    std::unique_ptr<Policy> policy_ XSCHED_GUARDED_BY(mu_);  // null when AppManaged
    std::vector<std::shared_ptr<XQueue>> queues_ XSCHED_GUARDED_BY(mu_);           // in creation order
    Clock::time_point wake_at_ XSCHED_GUARDED_BY(mu_) = Clock::time_point::max();  // next timer
    bool stop_ XSCHED_GUARDED_BY(mu_) = false;                                     // the thread exits
    std::thread thread_;                                                           // guarded by life_mu_
    std::atomic<uint64_t> generation_{1};                                          // see Generation()
    // Global scheduling (DESIGN.md, "Global scheduler"). global_ changes only under life_mu_, after the
    // old client was stopped and dropped; old clients are kept (retired_) so lock-free readers stay safe.
    std::unique_ptr<GlobalClient> global_;
    std::atomic<GlobalClient *> global_live_{nullptr};          // global_.get(), for lock-free readers
    std::vector<std::unique_ptr<GlobalClient>> retired_;        // clients replaced by SetGlobal (guarded by life_mu_)
    bool joined_ XSCHED_GUARDED_BY(mu_) = false;                // the daemon decides for every queue
    std::vector<global::Slot *> slots_ XSCHED_GUARDED_BY(mu_);  // while joined: queues_[i]'s slot (or null)
};

}  // namespace xsched

#endif  // XSCHED_SRC_SCHEDULER_H_
