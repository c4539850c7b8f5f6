// xsched.cpp: the C API (handles checked through the registry, never cast).
#include <cstdio>
#include <cstring>
#include <strings.h>

#include "command.h"
#include "config.h"
#include "global_client.h"
#include "hw_queue.h"
#include "policy.h"
#include "registry.h"
#include "scheduler.h"
#include "xqueue.h"
#include "xsched/xsched.h"

using namespace xsched;

namespace {

// kResults is the one table of result names and messages.
struct ResultEntry {
    XResult code;
    const char *name;
    const char *message;
};
const ResultEntry kResults[] = {
    {kXSchedSuccess, "kXSchedSuccess", "success"},
    {kXSchedErrorHardware, "kXSchedErrorHardware", "the platform (e.g. the CUDA runtime) failed"},
    {kXSchedErrorInvalidValue, "kXSchedErrorInvalidValue", "an argument is out of range or null"},
    {kXSchedErrorNotFound, "kXSchedErrorNotFound", "the handle names no live object"},
    {kXSchedErrorNotAllowed, "kXSchedErrorNotAllowed", "the object's state forbids the call"},
    {kXSchedErrorNotSupported, "kXSchedErrorNotSupported", "not built in, or not supported on this platform"},
    {kXSchedErrorBadResponse, "kXSchedErrorBadResponse", "bad response"},
    {kXSchedErrorAborted, "kXSchedErrorAborted", "the gate was released by XQueueAbort"},
    {kXSchedErrorUnknown, "kXSchedErrorUnknown", "unknown error"},
};

// FindQueue() resolves an XQueue handle: InvalidValue for 0, NotFound if not live.
XResult FindQueue(XQueueHandle xq, std::shared_ptr<XQueue> *out) {
    if (xq == 0) return kXSchedErrorInvalidValue;
    *out = XQueues().Find(xq);
    return *out ? kXSchedSuccess : kXSchedErrorNotFound;
}

// Hint() applies set(queue) to a live queue and lets the scheduler decide again.
template <typename Set>
XResult Hint(XQueueHandle xq, Set set) {
    std::shared_ptr<XQueue> q;
    XResult r = FindQueue(xq, &q);
    if (r != kXSchedSuccess) return r;
    set(*q);
    if (Scheduler *s = Scheduler::Existing()) {
        s->BumpGeneration();
        s->Reschedule();
    }
    return kXSchedSuccess;
}

// GetScheduler() returns the process scheduler, creating it from the
// environment; InvalidValue (and no scheduler) when the environment is bad.
XResult GetScheduler(Scheduler **out, Config *cfg_out) {
    Config cfg;
    std::string err;
    if (!LoadConfig(&cfg, &err)) {
        std::fprintf(stderr, "xsched: %s\n", err.c_str());
        return kXSchedErrorInvalidValue;
    }
    Scheduler::Config sc;
    sc.policy = cfg.policy;
    sc.timeslice_us = cfg.timeslice_us;
    sc.global_path = cfg.scheduler_path;
    *out = &Scheduler::Get(sc);
    if (cfg_out) *cfg_out = cfg;
    return kXSchedSuccess;
}

}  // namespace

extern "C" {

const char *XResultName(XResult r) {
    for (const ResultEntry &e : kResults) {
        if (e.code == r) return e.name;
    }
    return "kXSchedErrorUnknown";
}

const char *XResultMessage(XResult r) {
    for (const ResultEntry &e : kResults) {
        if (e.code == r) return e.message;
    }
    return "unknown error";
}

XResult HwQueueDestroy(HwQueueHandle hwq) {
    if (hwq == 0) return kXSchedErrorInvalidValue;
    std::shared_ptr<HwQueue> q;
    {
        Lock l(BindMutex());
        q = HwQueues().Find(hwq);
        if (!q) return kXSchedErrorNotFound;
        if (q->bound_xqueue != 0) return kXSchedErrorNotAllowed;
        if (q->OnOwnThread()) return kXSchedErrorNotAllowed;  // a callback cannot free its own executor
        HwQueues().Remove(hwq);
    }
    q.reset();  // the platform queue is freed here (or by the last user)
    return kXSchedSuccess;
}

XResult HwQueueSynchronize(HwQueueHandle hwq) {
    if (hwq == 0) return kXSchedErrorInvalidValue;
    auto q = HwQueues().Find(hwq);
    if (!q) return kXSchedErrorNotFound;
    return q->Synchronize();
}

XResult XQueueCreate(XQueueHandle *xq, HwQueueHandle hwq, int64_t level, int64_t flags) {
    if (xq == nullptr || hwq == 0) return kXSchedErrorInvalidValue;
    if (level == kPreemptLevelDeactivate || level == kPreemptLevelInterrupt) return kXSchedErrorNotSupported;
    if (level != kPreemptLevelBlock) return kXSchedErrorInvalidValue;
    if ((flags & ~kQueueCreateFlagBlockingSubmit) != 0) return kXSchedErrorInvalidValue;
    Scheduler *sched = nullptr;
    Config cfg;
    XResult r = GetScheduler(&sched, &cfg);
    if (r != kXSchedSuccess) return r;
    std::shared_ptr<XQueue> q;
    {
        Lock l(BindMutex());
        auto hw = HwQueues().Find(hwq);
        if (!hw) return kXSchedErrorNotFound;
        if (hw->bound_xqueue != 0) {  // one XQueue per HwQueue: return the existing one
            *xq = hw->bound_xqueue;
            return kXSchedSuccess;
        }
        q = std::make_shared<XQueue>(hw, sched, flags, cfg.threshold, cfg.batch_size);
        hw->bound_xqueue = XQueues().Insert(q);
        sched->Add(q);
    }
    *xq = q->handle;
    return kXSchedSuccess;
}

XResult XQueueDestroy(XQueueHandle xq) {
    if (xq == 0) return kXSchedErrorInvalidValue;
    std::shared_ptr<XQueue> q;
    {
        Lock l(BindMutex());
        q = XQueues().Find(xq);
        if (!q) return kXSchedErrorNotFound;
        // a command's callback (on the launch worker or the host executor) cannot destroy the queue that
        // runs it: the worker would run on in freed memory and Synchronize() would wait for itself
        if (q->OnWorkerThread() || q->hwq()->OnOwnThread()) return kXSchedErrorNotAllowed;
        XQueues().Remove(xq);
        q->hwq()->bound_xqueue = 0;
    }
    q->MarkDestroyed();  // before the scheduler resumes it on removal: a blocked gate must not be admitted
    if (Scheduler *s = Scheduler::Existing()) s->Remove(q);
    q->Shutdown();
    return kXSchedSuccess;
}

XResult XQueueGet(XQueueHandle *xq, HwQueueHandle hwq) {
    if (xq == nullptr || hwq == 0) return kXSchedErrorInvalidValue;
    Lock l(BindMutex());
    auto hw = HwQueues().Find(hwq);
    if (!hw || hw->bound_xqueue == 0) return kXSchedErrorNotFound;
    *xq = hw->bound_xqueue;
    return kXSchedSuccess;
}

XResult XQueueSetName(XQueueHandle xq, const char *name) {
    if (name == nullptr) return kXSchedErrorInvalidValue;
    std::shared_ptr<XQueue> q;
    XResult r = FindQueue(xq, &q);
    if (r != kXSchedSuccess) return r;
    q->SetName(name);
    return kXSchedSuccess;
}

XResult XQueueSetLaunchConfig(XQueueHandle xq, int64_t threshold, int64_t batch_size) {
    std::shared_ptr<XQueue> q;
    XResult r = FindQueue(xq, &q);
    if (r != kXSchedSuccess) return r;
    return q->SetLaunchConfig(threshold, batch_size);
}

XResult XQueueSetLevel(XQueueHandle xq, XPreemptLevel level, int64_t ahead) {
    if (level != kPreemptLevelBlock && level != kPreemptLevelDeactivate) {
        return level == kPreemptLevelInterrupt ? kXSchedErrorNotSupported : kXSchedErrorInvalidValue;
    }
    std::shared_ptr<XQueue> q;
    XResult r = FindQueue(xq, &q);
    if (r != kXSchedSuccess) return r;
    return q->SetDeactivate(level == kPreemptLevelDeactivate, ahead);
}

XResult XQueueGetLaunchConfig(XQueueHandle xq, int64_t *threshold, int64_t *batch_size) {
    if (threshold == nullptr || batch_size == nullptr) return kXSchedErrorInvalidValue;
    std::shared_ptr<XQueue> q;
    XResult r = FindQueue(xq, &q);
    if (r != kXSchedSuccess) return r;
    q->GetLaunchConfig(threshold, batch_size);
    return kXSchedSuccess;
}

XResult XQueueSuspend(XQueueHandle xq, int64_t flags) {
    if ((flags & ~kQueueSuspendFlagSyncHwQueue) != 0) return kXSchedErrorInvalidValue;
    std::shared_ptr<XQueue> q;
    XResult r = FindQueue(xq, &q);
    if (r != kXSchedSuccess) return r;
    q->SetUserSuspended(true);
    if (flags & kQueueSuspendFlagSyncHwQueue) return q->hwq()->Synchronize();
    return kXSchedSuccess;
}

XResult XQueueResume(XQueueHandle xq, int64_t flags) {
    if (flags == 0x1) return kXSchedErrorNotSupported;  // XSched's DropCommands
    if (flags != kQueueResumeFlagNone) return kXSchedErrorInvalidValue;
    std::shared_ptr<XQueue> q;
    XResult r = FindQueue(xq, &q);
    if (r != kXSchedSuccess) return r;
    q->SetUserSuspended(false);
    return kXSchedSuccess;
}

XResult XQueueQuery(XQueueHandle xq, XQueueState *state) {
    if (state == nullptr) return kXSchedErrorInvalidValue;
    std::shared_ptr<XQueue> q;
    XResult r = FindQueue(xq, &q);
    if (r != kXSchedSuccess) return r;
    *state = q->State();
    return kXSchedSuccess;
}

XResult XQueueGate(XQueueHandle xq) {
    std::shared_ptr<XQueue> q;
    XResult r = FindQueue(xq, &q);
    if (r != kXSchedSuccess) return r;
    return q->Gate();
}

XResult XQueueSynchronized(XQueueHandle xq) {
    std::shared_ptr<XQueue> q;
    XResult r = FindQueue(xq, &q);
    if (r != kXSchedSuccess) return r;
    return q->Synchronized();
}

XResult XQueueUnitLaunched(XQueueHandle xq) {
    std::shared_ptr<XQueue> q;
    XResult r = FindQueue(xq, &q);
    if (r != kXSchedSuccess) return r;
    return q->UnitLaunched();
}

XResult XQueueBeginActive(XQueueHandle xq) {
    std::shared_ptr<XQueue> q;
    XResult r = FindQueue(xq, &q);
    if (r != kXSchedSuccess) return r;
    return q->BeginActive();
}

XResult XQueueEndActive(XQueueHandle xq) {
    std::shared_ptr<XQueue> q;
    XResult r = FindQueue(xq, &q);
    if (r != kXSchedSuccess) return r;
    return q->EndActive();
}

XResult XQueueAbort(XQueueHandle xq, int32_t abort) {
    std::shared_ptr<XQueue> q;
    XResult r = FindQueue(xq, &q);
    if (r != kXSchedSuccess) return r;
    q->SetAbort(abort != 0);
    return kXSchedSuccess;
}

XResult HwCommandCreateCallback(HwCommandHandle *cmd, LaunchCallback fn, void *data) {
    if (cmd == nullptr || fn == nullptr) return kXSchedErrorInvalidValue;
    auto c = std::make_shared<Command>();
    c->fn = fn;
    c->data = data;
    *cmd = Commands().Insert(c);
    return kXSchedSuccess;
}

XResult HwCommandDestroy(HwCommandHandle cmd) {
    if (cmd == 0) return kXSchedErrorInvalidValue;
    return Commands().Remove(cmd) ? kXSchedSuccess : kXSchedErrorNotFound;
}

XResult XQueueSubmit(XQueueHandle xq, HwCommandHandle cmd) {
    if (cmd == 0) return kXSchedErrorInvalidValue;
    std::shared_ptr<XQueue> q;
    XResult r = FindQueue(xq, &q);
    if (r != kXSchedSuccess) return r;
    auto c = Commands().Find(cmd);
    if (!c) return kXSchedErrorNotFound;
    r = q->Submit(*c);
    if (r == kXSchedSuccess) Commands().Remove(cmd);  // ownership passes to the queue
    return r;
}

XResult XQueueWaitAll(XQueueHandle xq) {
    std::shared_ptr<XQueue> q;
    XResult r = FindQueue(xq, &q);
    if (r != kXSchedSuccess) return r;
    return q->WaitAll();
}

XResult XQueueProfileHwCommandCount(XQueueHandle xq, int64_t *count) {
    if (count == nullptr) return kXSchedErrorInvalidValue;
    std::shared_ptr<XQueue> q;
    XResult r = FindQueue(xq, &q);
    if (r != kXSchedSuccess) return r;
    *count = static_cast<int64_t>(q->UnitsLaunched());
    return kXSchedSuccess;
}

XResult XHintPriority(XQueueHandle xq, int32_t priority) {
    if (priority < PRIORITY_MIN || priority > PRIORITY_MAX) return kXSchedErrorInvalidValue;
    return Hint(xq, [priority](XQueue &q) { q.SetPriority(priority); });
}

XResult XHintWeight(XQueueHandle xq, int32_t weight) {
    if (weight < WEIGHT_MIN || weight > WEIGHT_MAX) return kXSchedErrorInvalidValue;
    return Hint(xq, [weight](XQueue &q) { q.SetWeight(weight); });
}

XResult XHintGroup(XQueueHandle xq, uint64_t group) {
    return Hint(xq, [group](XQueue &q) { q.SetGroup(group); });
}

XResult XHintTimeslice(int64_t timeslice_us) {
    if (timeslice_us < kTimesliceMinUs || timeslice_us > kTimesliceMaxUs) return kXSchedErrorInvalidValue;
    Scheduler *s = nullptr;
    XResult r = GetScheduler(&s, nullptr);
    if (r != kXSchedSuccess) return r;
    s->SetTimeslice(timeslice_us);
    return kXSchedSuccess;
}

XResult XHintSetScheduler(XSchedulerType type, XPolicyType policy) {
    if ((type == kSchedulerLocal || type == kSchedulerGlobal) && !CreatePolicy(policy)) return kXSchedErrorInvalidValue;
    Scheduler *s = nullptr;
    Config cfg;
    XResult r = GetScheduler(&s, &cfg);
    if (r != kXSchedSuccess) return r;
    if (type == kSchedulerGlobal) {  // join the daemon of XSCHED_SCHEDULER / XHintSetGlobalScheduler
        std::string path = s->GlobalPath();
        if (path.empty()) path = cfg.scheduler_path;
        if (path.empty()) return kXSchedErrorNotAllowed;
        r = s->SetScheduler(kSchedulerLocal, policy);  // the policy while the daemon is not reachable
        if (r == kXSchedSuccess) s->SetGlobal(path);
        return r;
    }
    if (type == kSchedulerAppManaged) s->SetGlobal("");  // the program suspends and resumes alone
    return s->SetScheduler(type, policy);
}

XResult XHintSetGlobalScheduler(const char *socket_path) {
    std::string path = socket_path != nullptr ? socket_path : "";
    std::string why;
    if (!path.empty() && !CheckSchedulerPath(path, &why)) {
        std::fprintf(stderr, "xsched: XHintSetGlobalScheduler(%s): %s\n", path.c_str(), why.c_str());
        return kXSchedErrorInvalidValue;
    }
    Scheduler *s = nullptr;
    XResult r = GetScheduler(&s, nullptr);
    if (r != kXSchedSuccess) return r;
    s->SetGlobal(path);
    return kXSchedSuccess;
}

XResult XSchedGlobalMaxPriority(int32_t *priority) {
    if (priority == nullptr) return kXSchedErrorInvalidValue;
    Scheduler *s = Scheduler::Existing();
    return s != nullptr && s->GlobalMaxPriority(priority) ? kXSchedSuccess : kXSchedErrorNotFound;
}

XResult XSchedGlobalStatus(char *buf, size_t len, size_t *needed) {
    if (needed == nullptr || (buf == nullptr && len > 0)) return kXSchedErrorInvalidValue;
    Scheduler *s = Scheduler::Existing();
    std::string path = s != nullptr ? s->GlobalPath() : std::string();
    if (path.empty()) {
        Config cfg;
        std::string err;
        if (LoadConfig(&cfg, &err)) path = cfg.scheduler_path;
    }
    if (path.empty()) return kXSchedErrorNotAllowed;
    std::string json, why;
    if (!FetchGlobalStatus(path, &json, &why)) {
        std::snprintf(buf != nullptr ? buf : nullptr, len, "%s", why.c_str());
        *needed = why.size() + 1;
        return kXSchedErrorNotFound;
    }
    *needed = json.size() + 1;
    if (len < json.size() + 1) {
        if (len > 0) buf[0] = '\0';
        return kXSchedErrorInvalidValue;
    }
    std::memcpy(buf, json.c_str(), json.size() + 1);
    return kXSchedSuccess;
}

XResult XSchedCheckEnv(char *msg, size_t msg_len) {
    Config cfg;
    std::string err;
    if (LoadConfig(&cfg, &err)) {
        if (msg != nullptr && msg_len > 0) msg[0] = '\0';
        return kXSchedSuccess;
    }
    if (msg != nullptr && msg_len > 0) std::snprintf(msg, msg_len, "%s", err.c_str());
    return kXSchedErrorInvalidValue;
}

XResult XPolicyFromName(const char *name, XPolicyType *policy) {
    if (name == nullptr || policy == nullptr) return kXSchedErrorInvalidValue;
    for (const PolicyFactory &f : PolicyFactories()) {
        if (strcasecmp(name, f.name) == 0) {
            *policy = f.type;
            return kXSchedSuccess;
        }
    }
    return kXSchedErrorInvalidValue;
}

const char *XPolicyName(XPolicyType policy) {
    for (const PolicyFactory &f : PolicyFactories()) {
        if (f.type == policy) return f.name;
    }
    return "UNKNOWN";
}

uint64_t XSchedGeneration(void) {
    Scheduler *s = Scheduler::Existing();
    return s != nullptr ? s->Generation() : 0;
}

XResult XSchedSnapshot(XSchedSnapshotInfo *info, XQueueInfo *rows, size_t capacity, size_t *written) {
    if (info == nullptr || written == nullptr || (rows == nullptr && capacity > 0)) return kXSchedErrorInvalidValue;
    if (Scheduler *s = Scheduler::Existing()) {
        s->Snapshot(info, rows, capacity, written);
        return kXSchedSuccess;
    }
    Config cfg;
    std::string err;
    bool ok = LoadConfig(&cfg, &err);
    info->scheduler = kSchedulerLocal;
    info->policy = ok ? cfg.policy : kPolicyUnknown;
    info->timeslice_us = ok ? cfg.timeslice_us : 0;
    info->n_queues = 0;
    *written = 0;
    return kXSchedSuccess;
}

}  // extern "C"
