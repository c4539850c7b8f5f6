// xqueue.h: a preemptible queue over one HwQueue (gate + optional launch worker).
#ifndef XSCHED_SRC_XQUEUE_H_
#define XSCHED_SRC_XQUEUE_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "command.h"
#include "hw_queue.h"
#include "mutex.h"
#include "xsched/hint.h"

namespace xsched {

class Scheduler;
namespace global {
struct Slot;
}  // namespace global

// Clock is the monotonic clock used for every duration in the core.
using Clock = std::chrono::steady_clock;

// XQueue admits units of work onto its HwQueue: at most `threshold` in flight,
// none while suspended (Level-1 preemption). It raises Ready/Idle edges to the
// scheduler. Lock order: Scheduler::mu_ before XQueue::mu_; an XQueue never
// calls the scheduler with its own mutex held.
class XQueue {
public:
    // XQueue() makes an Idle, unsuspended queue on hwq.
    XQueue(std::shared_ptr<HwQueue> hwq, Scheduler *sched, int64_t flags, int64_t threshold, int64_t batch_size);
    // ~XQueue() expects Shutdown() to have run.
    ~XQueue();
    XQueue(const XQueue &) = delete;
    XQueue &operator=(const XQueue &) = delete;

    // handle is the registry handle; set once before the queue is published.
    XQueueHandle handle = 0;
    // hwq() returns the platform queue.
    const std::shared_ptr<HwQueue> &hwq() const { return hwq_; }

    // Gate() admits one unit (see XQueueGate in xqueue.h of the C API).
    XResult Gate();
    // Synchronized() records that everything launched has completed.
    XResult Synchronized();
    // UnitLaunched() records a completion marker behind the unit admitted last, once the caller has
    // launched all of it (see XQueueUnitLaunched).
    XResult UnitLaunched();
    // BeginActive() opens an activity scope.
    XResult BeginActive();
    // EndActive() closes one activity scope; NotAllowed if none is open.
    XResult EndActive();
    // SetAbort() turns the abort state on or off, waking blocked gates.
    void SetAbort(bool abort);
    // SetLaunchConfig() changes threshold/batch (<= 0 keeps a value).
    XResult SetLaunchConfig(int64_t threshold, int64_t batch_size);
    // GetLaunchConfig() reads threshold/batch.
    void GetLaunchConfig(int64_t *threshold, int64_t *batch_size);
    // SetDeactivate() is XQueueSetLevel: Level 2 (on) or Level 1 (off); on the launching thread.
    XResult SetDeactivate(bool on, int64_t ahead);
    // SetUserSuspended() is XQueueSuspend/XQueueResume (independent of the scheduler).
    void SetUserSuspended(bool s);
    // SetSchedSuspended() is the scheduler's suspend/resume; returns true if it changed.
    bool SetSchedSuspended(bool s);
    // SetPriority() stores the priority (range checked by the caller).
    void SetPriority(int32_t p);
    // SetWeight() stores the weight (range checked by the caller).
    void SetWeight(int32_t w);
    // SetGroup() stores the scheduling group (0 = none).
    void SetGroup(uint64_t g);
    // SetName() stores the snapshot label.
    void SetName(const char *name);
    // State() returns Idle or Ready.
    XQueueState State();
    // UnitsLaunched() returns the total number of admitted units.
    uint64_t UnitsLaunched();

    // Submit() queues a command for the launch worker (started on first use).
    XResult Submit(const Command &cmd);
    // WaitAll() waits until every command submitted before the call has completed.
    XResult WaitAll();

    // OnWorkerThread() tells whether the caller is this queue's launch worker (running a command's callback).
    bool OnWorkerThread();
    // MarkDestroyed() is the first step of destroy: gates wake and return NotFound from now on, even if the
    // scheduler resumes the queue while it is being removed (idempotent).
    void MarkDestroyed();
    // Shutdown() implements destroy (MarkDestroyed() first): wakes gates (they return NotFound),
    // launches what the worker still holds, waits for launched work.
    void Shutdown();

    // View is what a policy needs to know about a queue.
    struct View {
        XQueueHandle handle;  // the queue
        int32_t priority;     // bigger = more important
        int32_t weight;       // WRR share
        uint64_t group;       // scheduling group, 0 = none (a client of its own)
        bool ready;           // Ready state or an open activity scope
        bool suspended;       // held back by the scheduler
    };
    // GetView() returns the policy's view of the queue.
    View GetView();
    // FillInfo() fills one snapshot row.
    void FillInfo(XQueueInfo *row);
    // AttachGlobal() makes the gate obey a global scheduler's slot too (null: local scheduling only) and
    // wakes blocked gates so that they look again.
    void AttachGlobal(global::Slot *slot);
    // PublishGlobal() writes the queue's view and counters into its slot (nothing when not attached).
    void PublishGlobal();

private:
    // GateLocked() is Gate() after the Ready edge; `force` ignores suspension and abort (worker drain).
    XResult GateLocked(Lock &l, bool force) XSCHED_REQUIRES(mu_);
    // RaiseReady() sets Ready; returns true when this was an Idle->Ready edge.
    bool RaiseReady() XSCHED_REQUIRES(mu_);
    // Blocked() says whether a gate must wait for a resume.
    bool Blocked() const XSCHED_REQUIRES(mu_) { return user_suspended_ || sched_suspended_; }
    // UpdateSuspendClock() accounts suspended time when the blocked state changes.
    void UpdateSuspendClock(bool was_blocked) XSCHED_REQUIRES(mu_);
    // WaitDrainLocked() waits, mu_ released, until everything launched is complete or the wait is cancelled
    // (resume, abort, destroy); a gate of a preempted queue calls it to observe the end of the drain.
    XResult WaitDrainLocked(Lock &l) XSCHED_REQUIRES(mu_);
    // BeginDrainLocked() starts a preemption record at `since` (the suspension) for the units in flight.
    void BeginDrainLocked(Clock::time_point since) XSCHED_REQUIRES(mu_);
    // CloseUnitLocked() notes that the unit a gate admitted last is launched completely (the host time a
    // pending drain spent waiting for that launch).
    void CloseUnitLocked() XSCHED_REQUIRES(mu_);
    // NoteCompletedLocked() ends a pending preemption once completed_ covers what was in flight at its start.
    void NoteCompletedLocked() XSCHED_REQUIRES(mu_);
    // FinishDrainLocked() ends the pending preemption now and records its latency.
    void FinishDrainLocked() XSCHED_REQUIRES(mu_);
    // LeaveDeactivateLocked() returns to Level 1 and releases every barrier launched.
    void LeaveDeactivateLocked() XSCHED_REQUIRES(mu_);
    // ApplyHoldLocked() holds the device's barriers (Level 2, suspended) or releases them (otherwise).
    void ApplyHoldLocked() XSCHED_REQUIRES(mu_);
    // DeviceStoppedLocked() tells whether a held Level-2 queue has nothing running on the device: every unit
    // the device started is done.
    bool DeviceStoppedLocked() XSCHED_REQUIRES(mu_);
    // ObserveDrainLocked() hands the newest marker to the drain observer when a drain is pending and that
    // marker covers everything it waits for: the drain is then seen when the device finishes, whatever the
    // launching thread is doing (host work between graphs delays its next gate by milliseconds).
    void ObserveDrainLocked() XSCHED_REQUIRES(mu_);
    // ObserverLoop() is the drain observer: it waits for handed markers and ends the drains they cover.
    void ObserverLoop();
    // UpdateDrainCancel() keeps drain_cancel_ true exactly when a drain wait must end (no drain pending,
    // aborted or destroyed), so a cancelled wait never repeats.
    void UpdateDrainCancel() XSCHED_REQUIRES(mu_) { drain_cancel_.store(!drain_pending_ || aborted_ || destroyed_); }
    // WorkerLoop() is the launch worker.
    void WorkerLoop();
    // GlobalSuspendedLocked() says whether the global scheduler holds the queue back.
    bool GlobalSuspendedLocked() const XSCHED_REQUIRES(mu_);
    // WaitGlobalLocked() waits, mu_ released, until the global slot changes or a waker bumps it (at most
    // 100 ms); a new suspension with units in flight starts a preemption record, and its drain is waited for.
    XResult WaitGlobalLocked(Lock &l) XSCHED_REQUIRES(mu_);

    struct PendingMarker {
        uint64_t pos;                    // units launched before the marker
        std::shared_ptr<Marker> marker;  // the platform marker
    };

    const std::shared_ptr<HwQueue> hwq_;  // the platform queue units are launched on
    Scheduler *const sched_;              // receives Ready/Idle edges (process lifetime)
    const int64_t flags_;                 // kQueueCreateFlag* given at creation

    Mutex mu_;                       // guards everything below
    std::condition_variable cv_;     // gates wait here for resume/abort/destroy
    std::atomic<bool> wake_{false};  // true while aborted or destroyed (cancels marker waits)
    int32_t priority_ XSCHED_GUARDED_BY(mu_) = PRIORITY_DEFAULT;  // HPF priority
    int32_t weight_ XSCHED_GUARDED_BY(mu_) = WEIGHT_DEFAULT;      // WRR weight
    uint64_t group_ XSCHED_GUARDED_BY(mu_) = 0;                   // XHintGroup, 0 = none
    std::string name_ XSCHED_GUARDED_BY(mu_);                     // snapshot label
    int64_t threshold_ XSCHED_GUARDED_BY(mu_);                    // in-flight limit
    int64_t batch_ XSCHED_GUARDED_BY(mu_);                        // marker distance
    XQueueState state_ XSCHED_GUARDED_BY(mu_) = kQueueStateIdle;  // Idle or Ready
    int32_t scopes_ XSCHED_GUARDED_BY(mu_) = 0;                   // open activity scopes
    bool user_suspended_ XSCHED_GUARDED_BY(mu_) = false;          // XQueueSuspend
    bool sched_suspended_ XSCHED_GUARDED_BY(mu_) = false;         // the policy's decision
    bool aborted_ XSCHED_GUARDED_BY(mu_) = false;                 // XQueueAbort(xq, 1) in force
    bool destroyed_ XSCHED_GUARDED_BY(mu_) = false;               // XQueueDestroy has begun
    uint64_t launched_ XSCHED_GUARDED_BY(mu_) = 0;                // units admitted
    uint64_t completed_ XSCHED_GUARDED_BY(mu_) = 0;               // units known complete
    uint64_t last_marker_ XSCHED_GUARDED_BY(mu_) = 0;             // launched_ when the last marker was recorded
    std::deque<PendingMarker> markers_ XSCHED_GUARDED_BY(mu_);    // recorded, not yet known complete
    Clock::time_point suspended_since_ XSCHED_GUARDED_BY(mu_);    // start of the current suspension
    uint64_t suspended_us_ XSCHED_GUARDED_BY(mu_) = 0;            // finished suspensions, total
    uint64_t gate_blocked_us_ XSCHED_GUARDED_BY(mu_) = 0;         // time gates spent blocked, total
    // Preemption latency (XPreemptStats in xsched/hint.h): a suspension by the scheduler while units were in
    // flight starts a drain; it ends when completed_ reaches drain_target_.
    bool drain_pending_ XSCHED_GUARDED_BY(mu_) = false;     // a preemption whose drain is not seen yet
    uint64_t drain_target_ XSCHED_GUARDED_BY(mu_) = 0;      // launched_ at the suspension
    Clock::time_point drain_since_ XSCHED_GUARDED_BY(mu_);  // the suspension
    bool unit_open_ XSCHED_GUARDED_BY(mu_) = false;   // a gate admitted a unit whose launch is not reported complete
    bool drain_open_ XSCHED_GUARDED_BY(mu_) = false;  // the pending drain began while a unit was being launched
    uint64_t drain_launch_us_ XSCHED_GUARDED_BY(mu_) = 0;  // from the suspension until that unit was launched
    std::atomic<bool> drain_cancel_{true};                 // ends a drain wait (see UpdateDrainCancel)
    // Level 2 (XQueueSetLevel): units launched behind device barriers; a suspension holds them.
    bool deactivate_ XSCHED_GUARDED_BY(mu_) = false;        // Level 2 in force
    bool held_ XSCHED_GUARDED_BY(mu_) = false;              // the barriers are held at the device's Done()
    int64_t ahead_ XSCHED_GUARDED_BY(mu_) = 0;              // Level 2's in-flight limit (units not known complete)
    bool observe_poll_ XSCHED_GUARDED_BY(mu_) = false;      // the observer polls a held drain's device words
    XPreemptStats preempt_ XSCHED_GUARDED_BY(mu_) = {};     // the record
    global::Slot *gslot_ XSCHED_GUARDED_BY(mu_) = nullptr;  // the global scheduler's slot (null: local)
    uint32_t gepoch_ XSCHED_GUARDED_BY(mu_) = 0;            // the slot's suspension seen last

    // Launch worker state (asynchronous submit).
    std::condition_variable worker_cv_;                   // worker waits here for commands
    std::condition_variable done_cv_;                     // WaitAll waits here
    std::deque<Command> pending_ XSCHED_GUARDED_BY(mu_);  // submitted, not yet launched
    uint64_t submitted_ XSCHED_GUARDED_BY(mu_) = 0;       // commands submitted
    uint64_t finished_ XSCHED_GUARDED_BY(mu_) = 0;        // commands known complete
    int32_t waitall_waiters_ XSCHED_GUARDED_BY(mu_) = 0;  // callers inside WaitAll
    bool worker_stop_ XSCHED_GUARDED_BY(mu_) = false;     // the worker drains and exits
    std::thread worker_;                                  // started on the first Submit, under mu_

    // Drain observer state (ObserveDrainLocked).
    std::condition_variable observer_cv_;                       // the observer waits here for markers
    std::deque<PendingMarker> observe_ XSCHED_GUARDED_BY(mu_);  // handed to the observer, not yet waited for
    std::thread observer_;  // started on the first hand-over, under mu_; ends with MarkDestroyed
};

}  // namespace xsched

#endif  // XSCHED_SRC_XQUEUE_H_
