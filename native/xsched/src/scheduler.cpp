// scheduler.cpp: the local scheduler and its timer thread.
#include "scheduler.h"

#include <algorithm>

namespace xsched {
namespace {

std::atomic<Scheduler *> g_scheduler{nullptr};
std::mutex g_scheduler_mu;

}  // namespace

Scheduler &Scheduler::Get(const Config &cfg) {
    Scheduler *s = g_scheduler.load();
    if (s != nullptr) return *s;
    std::lock_guard<std::mutex> l(g_scheduler_mu);
    s = g_scheduler.load();
    if (s == nullptr) {
        s = new Scheduler(cfg);  // process lifetime: never destroyed (no exit-order hazards)
        g_scheduler.store(s);
    }
    return *s;
}

Scheduler *Scheduler::Existing() { return g_scheduler.load(); }

Scheduler::Scheduler(const Config &cfg)
    : type_(cfg.type), policy_type_(cfg.policy), timeslice_us_(cfg.timeslice_us) {
    if (type_ == kSchedulerLocal) policy_ = CreatePolicy(policy_type_);
}

Scheduler::~Scheduler() {
    Lock life(life_mu_);
    {
        Lock l(mu_);
        stop_ = true;
        cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
}

void Scheduler::Add(std::shared_ptr<XQueue> q) {
    Lock life(life_mu_);
    {
        Lock l(mu_);
        queues_.push_back(std::move(q));
        stop_ = false;
        RescheduleLocked();
    }
    BumpGeneration();
    if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
}

void Scheduler::Remove(const std::shared_ptr<XQueue> &q) {
    Lock life(life_mu_);
    bool last;
    {
        Lock l(mu_);
        queues_.erase(std::remove(queues_.begin(), queues_.end(), q), queues_.end());
        q->SetSchedSuspended(false);
        RescheduleLocked();
        BumpGeneration();
        last = queues_.empty();
        if (last) {
            stop_ = true;
            cv_.notify_all();
        }
    }
    if (last && thread_.joinable()) thread_.join();
}

void Scheduler::Reschedule() {
    Lock l(mu_);
    RescheduleLocked();
}

void Scheduler::RescheduleLocked() {
    if (!policy_) {  // app-managed: the scheduler never holds a queue back
        for (auto &q : queues_) q->SetSchedSuspended(false);
        wake_at_ = Clock::time_point::max();
        return;
    }
    PolicyInput in;
    in.queues.reserve(queues_.size());
    for (auto &q : queues_) in.queues.push_back(q->GetView());
    in.now = Clock::now();
    in.timeslice_us = timeslice_us_;
    PolicyOutput out;
    out.suspend.assign(queues_.size(), false);
    policy_->Decide(in, &out);
    // Suspend first, then resume, so that two queues never run together by accident.
    for (size_t i = 0; i < queues_.size(); ++i) {
        if (out.suspend[i]) queues_[i]->SetSchedSuspended(true);
    }
    for (size_t i = 0; i < queues_.size(); ++i) {
        if (!out.suspend[i]) queues_[i]->SetSchedSuspended(false);
    }
    Clock::time_point old = wake_at_;
    wake_at_ = out.wake_at;
    if (wake_at_ < old) cv_.notify_all();
}

XResult Scheduler::SetScheduler(XSchedulerType type, XPolicyType policy) {
    Lock l(mu_);
    if (type == kSchedulerAppManaged) {
        type_ = type;
        policy_.reset();
    } else if (type == kSchedulerLocal) {
        std::unique_ptr<Policy> p = CreatePolicy(policy);
        if (!p) return kXSchedErrorInvalidValue;
        type_ = type;
        policy_type_ = policy;
        policy_ = std::move(p);
    } else if (type == kSchedulerGlobal) {
        return kXSchedErrorNotSupported;
    } else {
        return kXSchedErrorInvalidValue;
    }
    RescheduleLocked();
    BumpGeneration();
    return kXSchedSuccess;
}

void Scheduler::SetTimeslice(int64_t us) {
    Lock l(mu_);
    timeslice_us_ = us;
    RescheduleLocked();
}

void Scheduler::Snapshot(XSchedSnapshotInfo *info, XQueueInfo *rows, size_t capacity, size_t *written) {
    Lock l(mu_);
    info->scheduler = type_;
    info->policy = policy_type_;
    info->timeslice_us = timeslice_us_;
    info->n_queues = queues_.size();
    size_t n = 0;
    for (auto &q : queues_) {
        if (n >= capacity) break;
        q->FillInfo(&rows[n++]);
    }
    *written = n;
}

void Scheduler::Run() {
    Lock l(mu_);
    while (!stop_) {
        if (wake_at_ == Clock::time_point::max()) {
            l.Wait(cv_);
            continue;
        }
        if (Clock::now() >= wake_at_) {
            wake_at_ = Clock::time_point::max();
            RescheduleLocked();
            continue;
        }
        l.WaitUntil(cv_, wake_at_);
    }
}

}  // namespace xsched
