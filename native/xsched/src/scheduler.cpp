// scheduler.cpp: the local scheduler and its timer thread.
#include "scheduler.h"

#include <algorithm>

#include "global_client.h"

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

Scheduler::Scheduler(const Config &cfg) : type_(cfg.type), policy_type_(cfg.policy), timeslice_us_(cfg.timeslice_us) {
    if (type_ == kSchedulerLocal) policy_ = CreatePolicy(policy_type_);
    if (!cfg.global_path.empty()) {
        global_ = MakeGlobal(cfg.global_path);
        global_live_.store(global_.get());
    }
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
    // the first queue joins the global scheduler (synchronously, so that it starts under its decisions)
    if (global_ && !thread_.joinable()) global_->Start();
    bool full = false;
    {
        Lock l(mu_);
        if (joined_) {
            global::Slot *slot = global_->Alloc();
            full = slot == nullptr;
            if (full) {
                DropGlobalLocked();
            } else {
                q->AttachGlobal(slot);
                slots_.push_back(slot);
            }
        }
        queues_.push_back(std::move(q));
        stop_ = false;
        RescheduleLocked();
    }
    if (full) {
        global_->CloseSession();
        global_->Note("xsched: the global scheduler's table for this process is full (" +
                      std::to_string(global::kSlots) + " queues); scheduling locally");
    }
    BumpGeneration();
    if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
}

void Scheduler::Remove(const std::shared_ptr<XQueue> &q) {
    Lock life(life_mu_);
    bool last;
    {
        Lock l(mu_);
        auto it = std::find(queues_.begin(), queues_.end(), q);
        if (it != queues_.end()) {
            const size_t i = static_cast<size_t>(it - queues_.begin());
            if (joined_) {
                q->AttachGlobal(nullptr);
                if (slots_[i] != nullptr) global_->Free(slots_[i]);
                slots_.erase(slots_.begin() + static_cast<ptrdiff_t>(i));
            }
            queues_.erase(it);
        }
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
    if (last && global_) {  // no queue left: leave the daemon (the next queue joins again)
        global_->Stop();
        DropGlobal();
    }
}

void Scheduler::Reschedule() {
    Lock l(mu_);
    RescheduleLocked();
}

void Scheduler::RescheduleLocked() {
    if (joined_) {  // the daemon decides: publish every view, ring it and wait for its decision (rule G1)
        bool ready = false;
        for (size_t i = 0; i < queues_.size(); ++i) {
            if (slots_[i] != nullptr) queues_[i]->PublishGlobal();
            ready = ready || queues_[i]->GetView().ready;
        }
        // with no queue of this process Ready (the Idle edge of its last active queue), no decision can hold
        // anything here back: ring only. A late decision (timeout) applies when it comes; the agent watches
        // liveness.
        global_->Decide(ready);
        return;
    }
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
    if (joined_) {  // the daemon's policy is in force
        info->scheduler = kSchedulerGlobal;
        global_->DaemonPolicy(&info->policy, &info->timeslice_us);
    }
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

uint64_t Scheduler::Generation() const {
    const GlobalClient *g = global_live_.load(std::memory_order_acquire);
    return generation_.load(std::memory_order_acquire) + (g != nullptr ? g->Generation() : 0);
}

std::unique_ptr<GlobalClient> Scheduler::MakeGlobal(const std::string &path) {
    GlobalClient::Hooks hooks;
    hooks.adopt = [this](std::string *why) { return AdoptGlobal(why); };
    hooks.drop = [this](const std::string &) { DropGlobal(); };
    hooks.refresh = [this] { RefreshGlobal(); };
    return std::make_unique<GlobalClient>(path, std::move(hooks));
}

void Scheduler::SetGlobal(const std::string &path) {
    Lock life(life_mu_);
    if (global_ && global_->path() == path) return;
    if (global_) {
        global_->Stop();
        DropGlobal();
        global_live_.store(nullptr);
        retired_.push_back(std::move(global_));
    }
    if (path.empty()) return;
    global_ = MakeGlobal(path);
    global_live_.store(global_.get());
    if (thread_.joinable()) global_->Start();  // queues exist: join now
}

std::string Scheduler::GlobalPath() {
    Lock life(life_mu_);
    return global_ ? global_->path() : std::string();
}

bool Scheduler::GlobalMaxPriority(int32_t *priority) const {
    const GlobalClient *g = global_live_.load(std::memory_order_acquire);
    return g != nullptr && g->OthersMaxPriority(priority);
}

bool Scheduler::AdoptGlobal(std::string *why) {
    {
        Lock l(mu_);
        if (joined_) return true;
        std::vector<global::Slot *> slots;
        for (size_t i = 0; i < queues_.size(); ++i) {
            global::Slot *s = global_->Alloc();
            if (s == nullptr) {
                for (global::Slot *x : slots) global_->Free(x);
                *why = "the global scheduler's table for this process is full (" + std::to_string(global::kSlots) +
                       " queues)";
                return false;
            }
            slots.push_back(s);
        }
        slots_ = slots;
        for (size_t i = 0; i < queues_.size(); ++i) queues_[i]->AttachGlobal(slots_[i]);
        joined_ = true;
        RescheduleLocked();  // the daemon's decision is in force (lower queues suspended) ...
        for (auto &q : queues_) q->SetSchedSuspended(false);  // ... before the local one is lifted
        wake_at_ = Clock::time_point::max();
    }
    BumpGeneration();
    return true;
}

void Scheduler::DropGlobal() {
    {
        Lock l(mu_);
        if (!joined_) return;
        DropGlobalLocked();
    }
    BumpGeneration();
}

void Scheduler::DropGlobalLocked() {
    joined_ = false;
    RescheduleLocked();  // the local decision is in force ...
    for (size_t i = 0; i < queues_.size(); ++i) {
        if (i < slots_.size() && slots_[i] != nullptr)
            queues_[i]->AttachGlobal(nullptr);  // ... then the daemon's is lifted
    }
    slots_.clear();
    if (wake_at_ != Clock::time_point::max()) cv_.notify_all();
}

void Scheduler::RefreshGlobal() {
    Lock l(mu_);
    if (!joined_) return;
    for (size_t i = 0; i < queues_.size(); ++i) {
        if (slots_[i] != nullptr) queues_[i]->PublishGlobal();
    }
}

}  // namespace xsched
