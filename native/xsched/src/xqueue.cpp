// xqueue.cpp: gate (progressive launching), Ready/Idle edges, launch worker.
#include "xqueue.h"

#include <algorithm>
#include <cstring>

#include "global_shm.h"
#include "scheduler.h"

namespace xsched {
namespace {

// MicrosSince() returns the whole microseconds from t to now.
uint64_t MicrosSince(Clock::time_point t) {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count());
}

// PreemptBucket() is the histogram bucket of a latency of us microseconds.
size_t PreemptBucket(uint64_t us) {
    static constexpr uint64_t kBounds[] = XSCHED_PREEMPT_BOUNDS_US;
    static_assert(sizeof(kBounds) / sizeof(kBounds[0]) == XSCHED_PREEMPT_BUCKETS - 1, "bounds vs buckets");
    size_t i = 0;
    while (i < XSCHED_PREEMPT_BUCKETS - 1 && us > kBounds[i]) ++i;
    return i;
}

}  // namespace

XQueue::XQueue(std::shared_ptr<HwQueue> hwq, Scheduler *sched, int64_t flags, int64_t threshold, int64_t batch_size)
    : hwq_(std::move(hwq)), sched_(sched), flags_(flags), threshold_(threshold), batch_(batch_size) {}

XQueue::~XQueue() = default;

bool XQueue::RaiseReady() {
    if (state_ != kQueueStateIdle) return false;
    state_ = kQueueStateReady;
    return true;
}

XResult XQueue::Gate() {
    bool edge;
    {
        Lock l(mu_);
        if (destroyed_) return kXSchedErrorNotFound;
        if (aborted_) return kXSchedErrorAborted;
        edge = RaiseReady();
        CloseUnitLocked();  // back at a gate: the unit admitted before is launched
    }
    // The policy runs here, on the gating thread, so that lower queues are
    // suspended before this gate admits its first unit.
    if (edge) sched_->Reschedule();
    Lock l(mu_);
    const XResult r = GateLocked(l, false);
    if (r == kXSchedSuccess) unit_open_ = true;  // until UnitLaunched(), Synchronized() or the next gate
    return r;
}

XResult XQueue::GateLocked(Lock &l, bool force) {
    bool blocked = false;
    Clock::time_point t0{};
    XResult r = kXSchedSuccess;
    for (;;) {
        if (!force) {
            if (destroyed_) {
                r = kXSchedErrorNotFound;
                break;
            }
            if (aborted_) {
                r = kXSchedErrorAborted;
                break;
            }
            if (Blocked() && !deactivate_) {  // Level 2: admitted, held on the device
                if (!blocked) t0 = Clock::now();
                blocked = true;
                if (drain_pending_) {
                    // preempted with units in flight: see them complete (the preemption latency), then
                    // wait for the resume
                    r = WaitDrainLocked(l);
                    if (r != kXSchedSuccess) break;
                    continue;
                }
                l.Wait(cv_);
                continue;
            }
            if (gslot_ != nullptr && GlobalSuspendedLocked()) {
                if (!blocked) t0 = Clock::now();
                blocked = true;
                r = WaitGlobalLocked(l);
                if (r != kXSchedSuccess) break;
                continue;
            }
        }
        // Progressive launching: a marker every batch_ units, before the unit.
        if (launched_ > completed_ && launched_ - last_marker_ >= static_cast<uint64_t>(batch_)) {
            std::shared_ptr<Marker> m;
            r = hwq_->RecordMarker(&m);
            if (r != kXSchedSuccess) break;
            markers_.push_back(PendingMarker{launched_, std::move(m)});
            last_marker_ = launched_;
        }
        if (launched_ - completed_ >= static_cast<uint64_t>(deactivate_ ? ahead_ : threshold_)) {
            if (markers_.empty()) {  // e.g. threshold lowered: cover everything launched
                std::shared_ptr<Marker> m;
                r = hwq_->RecordMarker(&m);
                if (r != kXSchedSuccess) break;
                markers_.push_back(PendingMarker{launched_, std::move(m)});
                last_marker_ = launched_;
            }
            PendingMarker pm = markers_.front();
            if (!blocked) t0 = Clock::now();
            blocked = true;
            l.Unlock();
            XResult w = hwq_->WaitMarker(*pm.marker, wake_);
            l.Relock();
            if (w == kXSchedSuccess) {
                completed_ = std::max(completed_, pm.pos);
                while (!markers_.empty() && markers_.front().pos <= completed_) markers_.pop_front();
                NoteCompletedLocked();
                continue;
            }
            if (w == kXSchedErrorAborted && !force) continue;  // the loop reports abort/destroy
            if (w != kXSchedErrorAborted) {
                r = w;
                break;
            }
            // force and cancelled: admit without waiting (destroy drains).
        }
        ++launched_;
        if (deactivate_ && !force) {
            // the unit waits on the device until released: now, or at the resume when held. The barrier is
            // launched without mu_: a held stream's launch queue may be full, and a launch call then blocks until
            // the resume, which needs mu_ (only this thread launches on the queue, so the order holds)
            const uint32_t seq = static_cast<uint32_t>(launched_);
            l.Unlock();
            const XResult b = hwq_->LaunchBarrier(seq);
            l.Relock();
            if (b != kXSchedSuccess) {
                LeaveDeactivateLocked();  // Level 1 from here on
            } else if (!held_) {
                hwq_->Release(seq);
            }
        }
        break;
    }
    if (blocked) gate_blocked_us_ += MicrosSince(t0);
    return r;
}

XResult XQueue::SetDeactivate(bool on, int64_t ahead) {
    Lock l(mu_);
    if (destroyed_) return kXSchedErrorNotFound;
    if (!on) {
        if (deactivate_) LeaveDeactivateLocked();
        return kXSchedSuccess;
    }
    if (ahead < 1 || ahead > 65536) return kXSchedErrorInvalidValue;
    if (gslot_ != nullptr || !hwq_->CanDeactivate()) return kXSchedErrorNotSupported;
    ahead_ = ahead;
    if (!deactivate_) {
        // a boundary: the device writes Started and Done behind everything launched at Level 1, so that the
        // two words agree whenever the device has nothing of this queue running
        const uint32_t seq = static_cast<uint32_t>(launched_);
        hwq_->Release(seq);
        if (hwq_->LaunchBarrier(seq) != kXSchedSuccess || hwq_->LaunchDone(seq) != kXSchedSuccess) {
            return kXSchedErrorHardware;
        }
        deactivate_ = true;
        held_ = false;
    }
    ApplyHoldLocked();
    return kXSchedSuccess;
}

void XQueue::LeaveDeactivateLocked() {
    deactivate_ = false;
    held_ = false;
    hwq_->Release(static_cast<uint32_t>(launched_));  // every barrier launched so far passes
}

void XQueue::ApplyHoldLocked() {
    const bool want = deactivate_ && Blocked() && !aborted_ && !destroyed_;
    if (want == held_) return;
    held_ = want;
    // held: barriers the device has not passed wait (the unit it runs ends, none after it starts)
    hwq_->Release(held_ ? hwq_->Done() : static_cast<uint32_t>(launched_));
}

bool XQueue::DeviceStoppedLocked() {
    const uint32_t done = hwq_->Done();
    return done == hwq_->Started() || done == static_cast<uint32_t>(launched_);
}

XResult XQueue::WaitDrainLocked(Lock &l) {
    std::shared_ptr<Marker> m;
    XResult r = hwq_->RecordMarker(&m);  // behind every unit this queue launched
    if (r != kXSchedSuccess) {
        drain_pending_ = false;  // cannot observe this drain
        UpdateDrainCancel();
        return r;
    }
    const uint64_t pos = launched_;
    l.Unlock();
    XResult w = hwq_->WaitMarker(*m, drain_cancel_);
    l.Relock();
    if (w == kXSchedSuccess) {
        completed_ = std::max(completed_, pos);
        while (!markers_.empty() && markers_.front().pos <= completed_) markers_.pop_front();
        NoteCompletedLocked();
        return kXSchedSuccess;
    }
    return w == kXSchedErrorAborted ? kXSchedSuccess : w;  // cancelled: the caller re-checks its state
}

void XQueue::NoteCompletedLocked() {
    if (!drain_pending_ || completed_ < drain_target_) return;
    FinishDrainLocked();
}

void XQueue::FinishDrainLocked() {
    drain_pending_ = false;
    UpdateDrainCancel();
    const uint64_t us = MicrosSince(drain_since_);
    preempt_.measured++;
    preempt_.sum_us += us;
    preempt_.max_us = std::max(preempt_.max_us, us);
    preempt_.buckets[PreemptBucket(us)]++;
    if (drain_open_) {
        preempt_.open_units++;
        preempt_.launch_sum_us += drain_launch_us_;
        preempt_.launch_max_us = std::max(preempt_.launch_max_us, drain_launch_us_);
    }
}

void XQueue::CloseUnitLocked() {
    if (!unit_open_) return;
    unit_open_ = false;
    if (drain_pending_ && drain_open_) drain_launch_us_ = MicrosSince(drain_since_);
}

void XQueue::BeginDrainLocked(Clock::time_point since) {
    preempt_.count++;
    drain_pending_ = true;
    drain_target_ = launched_;
    drain_since_ = since;
    drain_open_ = unit_open_;
    drain_launch_us_ = 0;
    UpdateDrainCancel();
}

XResult XQueue::Synchronized() {
    bool edge = false;
    {
        Lock l(mu_);
        if (destroyed_) return kXSchedErrorNotFound;
        completed_ = launched_;
        markers_.clear();
        CloseUnitLocked();
        NoteCompletedLocked();
        if (scopes_ == 0 && state_ == kQueueStateReady) {
            state_ = kQueueStateIdle;
            edge = true;
        }
    }
    if (edge) sched_->Reschedule();
    return kXSchedSuccess;
}

XResult XQueue::UnitLaunched() {
    Lock l(mu_);
    if (destroyed_) return kXSchedErrorNotFound;
    if (deactivate_ && launched_ > 0) {
        // Level 2: the device writes Done behind the unit (launched without mu_, as the barrier)
        const uint32_t seq = static_cast<uint32_t>(launched_);
        l.Unlock();
        (void)hwq_->LaunchDone(seq);
        l.Relock();
        if (destroyed_) return kXSchedErrorNotFound;
    }
    CloseUnitLocked();
    if (launched_ > completed_ && launched_ > last_marker_) {
        std::shared_ptr<Marker> m;
        XResult r = hwq_->RecordMarker(&m);
        if (r != kXSchedSuccess) return r;
        markers_.push_back(PendingMarker{launched_, std::move(m)});
        last_marker_ = launched_;
    }
    ObserveDrainLocked();  // suspended while the unit was being launched
    return kXSchedSuccess;
}

void XQueue::ObserveDrainLocked() {
    if (drain_pending_ && held_) {  // Level 2: the device's words tell when it stopped
        if (DeviceStoppedLocked()) {
            FinishDrainLocked();
        } else if (!observe_poll_) {
            observe_poll_ = true;
            if (!observer_.joinable()) observer_ = std::thread([this] { ObserverLoop(); });
            observer_cv_.notify_one();
        }
        return;
    }
    if (!drain_pending_ || markers_.empty() || markers_.back().pos < drain_target_) return;
    if (!observe_.empty() && observe_.back().pos >= markers_.back().pos) return;  // handed already
    observe_.push_back(markers_.back());
    if (!observer_.joinable()) observer_ = std::thread([this] { ObserverLoop(); });
    observer_cv_.notify_one();
}

void XQueue::ObserverLoop() {
    hwq_->OnWorkerStart();
    Lock l(mu_);
    for (;;) {
        while (observe_.empty() && !observe_poll_ && !destroyed_) l.Wait(observer_cv_);
        if (destroyed_) return;
        if (observe_poll_) {
            // a held Level-2 drain: poll the device's words (a unit is ~0.1-1 ms; 10 us steps)
            if (!drain_pending_ || !held_) {
                observe_poll_ = false;
            } else if (DeviceStoppedLocked()) {
                FinishDrainLocked();
                observe_poll_ = false;
            } else {
                l.Unlock();
                std::this_thread::sleep_for(std::chrono::microseconds(10));
                l.Relock();
            }
            continue;
        }
        PendingMarker pm = observe_.front();
        observe_.pop_front();
        if (!drain_pending_ || completed_ >= pm.pos) continue;  // seen meanwhile, or resumed
        l.Unlock();
        XResult w = hwq_->WaitMarker(*pm.marker, drain_cancel_);
        l.Relock();
        if (w != kXSchedSuccess) continue;  // resumed, aborted or destroyed: the loop looks again
        completed_ = std::max(completed_, pm.pos);
        while (!markers_.empty() && markers_.front().pos <= completed_) markers_.pop_front();
        NoteCompletedLocked();
    }
}

XResult XQueue::BeginActive() {
    bool edge;
    {
        Lock l(mu_);
        if (destroyed_) return kXSchedErrorNotFound;
        ++scopes_;
        edge = RaiseReady();
    }
    if (edge) sched_->Reschedule();
    return kXSchedSuccess;
}

XResult XQueue::EndActive() {
    bool edge = false;
    {
        Lock l(mu_);
        if (destroyed_) return kXSchedErrorNotFound;
        if (scopes_ == 0) return kXSchedErrorNotAllowed;
        --scopes_;
        if (scopes_ == 0 && state_ == kQueueStateReady && launched_ == completed_) {
            state_ = kQueueStateIdle;
            edge = true;
        }
    }
    if (edge) sched_->Reschedule();
    return kXSchedSuccess;
}

void XQueue::SetAbort(bool abort) {
    {
        Lock l(mu_);
        aborted_ = abort;
        wake_.store(aborted_ || destroyed_);
        UpdateDrainCancel();
        ApplyHoldLocked();  // aborted: nothing stays held on the device
        cv_.notify_all();
        if (gslot_ != nullptr) global::Bump(&gslot_->wake_seq);
    }
    hwq_->WakeWaiters();
}

XResult XQueue::SetLaunchConfig(int64_t threshold, int64_t batch_size) {
    Lock l(mu_);
    int64_t t = threshold > 0 ? threshold : threshold_;
    int64_t b = batch_size > 0 ? batch_size : batch_;
    if (t > 65536 || b > t) return kXSchedErrorInvalidValue;
    threshold_ = t;
    batch_ = b;
    return kXSchedSuccess;
}

void XQueue::GetLaunchConfig(int64_t *threshold, int64_t *batch_size) {
    Lock l(mu_);
    *threshold = threshold_;
    *batch_size = batch_;
}

void XQueue::UpdateSuspendClock(bool was_blocked) {
    bool now_blocked = Blocked();
    if (!was_blocked && now_blocked) suspended_since_ = Clock::now();
    if (was_blocked && !now_blocked) {
        suspended_us_ += MicrosSince(suspended_since_);
        cv_.notify_all();
    }
}

void XQueue::SetUserSuspended(bool s) {
    Lock l(mu_);
    bool was = Blocked();
    user_suspended_ = s;
    UpdateSuspendClock(was);
    ApplyHoldLocked();
}

bool XQueue::SetSchedSuspended(bool s) {
    bool wake = false;
    {
        Lock l(mu_);
        if (sched_suspended_ == s) return false;
        bool was = Blocked();
        sched_suspended_ = s;
        UpdateSuspendClock(was);
        ApplyHoldLocked();
        if (s && launched_ > completed_ && !destroyed_) {
            // a preemption: units are (or may be) in flight
            BeginDrainLocked(Clock::now());
            ObserveDrainLocked();  // between units: every admitted unit is behind a marker
        } else if (!s && drain_pending_) {
            drain_pending_ = false;  // resumed before the drain was seen: counted, not measured
            UpdateDrainCancel();
            wake = true;
        }
    }
    if (wake) hwq_->WakeWaiters();
    return true;
}

void XQueue::SetPriority(int32_t p) {
    Lock l(mu_);
    priority_ = p;
}

void XQueue::SetWeight(int32_t w) {
    Lock l(mu_);
    weight_ = w;
}

void XQueue::SetGroup(uint64_t g) {
    Lock l(mu_);
    group_ = g;
}

void XQueue::SetName(const char *name) {
    Lock l(mu_);
    name_.assign(name, strnlen(name, 63));
}

XQueueState XQueue::State() {
    Lock l(mu_);
    return state_;
}

uint64_t XQueue::UnitsLaunched() {
    Lock l(mu_);
    return launched_;
}

XQueue::View XQueue::GetView() {
    Lock l(mu_);
    return View{handle, priority_, weight_, group_, state_ == kQueueStateReady || scopes_ > 0, sched_suspended_};
}

void XQueue::FillInfo(XQueueInfo *row) {
    Lock l(mu_);
    std::memset(row, 0, sizeof(*row));
    row->handle = handle;
    std::memcpy(row->name, name_.c_str(), std::min<size_t>(name_.size(), sizeof(row->name) - 1));
    row->priority = priority_;
    row->weight = weight_;
    row->state = state_;
    row->suspended = (Blocked() || (gslot_ != nullptr && GlobalSuspendedLocked())) ? 1 : 0;
    row->active_scopes = scopes_;
    row->threshold = threshold_;
    row->batch_size = batch_;
    row->in_flight = static_cast<int64_t>(launched_ - completed_);
    row->units_launched = launched_;
    row->suspended_us = suspended_us_ + (Blocked() ? MicrosSince(suspended_since_) : 0);
    if (gslot_ != nullptr) {  // the global scheduler's suspensions, as the daemon accounts them
        const uint64_t at = gslot_->suspended_at_ns.load(std::memory_order_relaxed);
        const uint64_t now = global::NowNs();
        row->suspended_us += gslot_->suspended_ns.load(std::memory_order_relaxed) / 1000 +
                             (GlobalSuspendedLocked() && now > at ? (now - at) / 1000 : 0);
    }
    row->gate_blocked_us = gate_blocked_us_;
    row->group = group_;
    row->preempt = preempt_;
}

XResult XQueue::Submit(const Command &cmd) {
    Lock l(mu_);
    if (destroyed_) return kXSchedErrorNotFound;
    if (flags_ & kQueueCreateFlagBlockingSubmit) return kXSchedErrorNotAllowed;
    pending_.push_back(cmd);
    ++submitted_;
    if (!worker_.joinable()) worker_ = std::thread([this] { WorkerLoop(); });
    worker_cv_.notify_one();
    return kXSchedSuccess;
}

XResult XQueue::WaitAll() {
    Lock l(mu_);
    const uint64_t target = submitted_;
    ++waitall_waiters_;
    worker_cv_.notify_one();
    while (finished_ < target) l.Wait(done_cv_);
    --waitall_waiters_;
    return kXSchedSuccess;
}

void XQueue::WorkerLoop() {
    hwq_->OnWorkerStart();
    Lock l(mu_);
    uint64_t launched_cmds = finished_;
    for (;;) {
        bool drain = launched_cmds > finished_ && (pending_.empty() || waitall_waiters_ > 0);
        if (drain) {
            // Everything handed over is launched (or a WaitAll is waiting): sync.
            l.Unlock();
            hwq_->Synchronize();
            Synchronized();
            l.Relock();
            finished_ = launched_cmds;
            done_cv_.notify_all();
            continue;
        }
        if (pending_.empty()) {
            if (worker_stop_) return;
            l.Wait(worker_cv_);
            continue;
        }
        Command c = pending_.front();
        pending_.pop_front();
        if (!worker_stop_ && RaiseReady()) {
            l.Unlock();
            sched_->Reschedule();
            l.Relock();
        }
        // Aborted or destroyed gates do not block; the command is launched anyway.
        (void)GateLocked(l, worker_stop_);
        l.Unlock();
        c.fn(hwq_->handle, c.data);
        l.Relock();
        ++launched_cmds;
    }
}

bool XQueue::OnWorkerThread() {
    Lock l(mu_);
    return worker_.joinable() && worker_.get_id() == std::this_thread::get_id();
}

void XQueue::MarkDestroyed() {
    {
        Lock l(mu_);
        destroyed_ = true;
        wake_.store(true);
        UpdateDrainCancel();
        ApplyHoldLocked();
        worker_stop_ = true;
        cv_.notify_all();
        worker_cv_.notify_all();
        observer_cv_.notify_all();
        if (gslot_ != nullptr) global::Bump(&gslot_->wake_seq);
    }
    hwq_->WakeWaiters();
}

void XQueue::Shutdown() {
    MarkDestroyed();
    if (worker_.joinable()) worker_.join();      // never the worker itself: XQueueDestroy refuses that
    if (observer_.joinable()) observer_.join();  // its marker wait ends: drain_cancel_ is set
    hwq_->Synchronize();
}

bool XQueue::GlobalSuspendedLocked() const { return gslot_->suspend.load(std::memory_order_acquire) != 0; }

XResult XQueue::WaitGlobalLocked(Lock &l) {
    global::Slot *s = gslot_;
    const uint32_t seq = s->wake_seq.load(std::memory_order_acquire);
    const uint32_t epoch = s->suspend_epoch.load(std::memory_order_acquire);
    if (epoch != gepoch_) {
        // a new suspension by the daemon (written before the more important queue's gate returned):
        // a preemption when units are in flight, starting at the daemon's clock (CLOCK_MONOTONIC)
        gepoch_ = epoch;
        if (launched_ > completed_ && !drain_pending_ && !destroyed_) {
            BeginDrainLocked(Clock::time_point(std::chrono::duration_cast<Clock::duration>(
                std::chrono::nanoseconds(s->suspended_at_ns.load(std::memory_order_relaxed)))));
        }
    }
    if (s->suspend.load(std::memory_order_acquire) == 0) return kXSchedSuccess;  // resumed meanwhile
    if (drain_pending_) return WaitDrainLocked(l);  // ends with the in-flight units, an abort or a destroy
    l.Unlock();
    global::FutexWait(&s->wake_seq, seq, 100);
    l.Relock();
    return kXSchedSuccess;
}

void XQueue::AttachGlobal(global::Slot *slot) {
    Lock l(mu_);
    global::Slot *old = gslot_;
    gslot_ = slot;
    // Level 2 is local only: the daemon's suspensions reach the queue at its gate
    if (slot != nullptr && deactivate_) LeaveDeactivateLocked();
    gepoch_ = slot != nullptr ? slot->suspend_epoch.load(std::memory_order_acquire) : 0;
    cv_.notify_all();
    if (old != nullptr) global::Bump(&old->wake_seq);  // a gate waiting on the old slot looks again
}

void XQueue::PublishGlobal() {
    Lock l(mu_);
    global::Slot *s = gslot_;
    if (s == nullptr) return;
    s->priority.store(priority_, std::memory_order_relaxed);
    s->weight.store(weight_, std::memory_order_relaxed);
    s->group.store(group_, std::memory_order_relaxed);
    s->state.store(state_, std::memory_order_relaxed);
    s->units.store(launched_, std::memory_order_relaxed);
    s->in_flight.store(static_cast<int64_t>(launched_ - completed_), std::memory_order_relaxed);
    global::SetName(s, name_.c_str());
    s->ready.store(state_ == kQueueStateReady || scopes_ > 0 ? 1 : 0, std::memory_order_release);
}

}  // namespace xsched
