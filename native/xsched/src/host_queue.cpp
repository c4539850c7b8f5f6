// host_queue.cpp: the host platform and its C entry points.
#include "host_queue.h"

#include <cstdlib>

#include "registry.h"
#include "xsched/host.h"

namespace xsched {
namespace {

// HostMarker is a position in a host queue's FIFO.
class HostMarker final : public Marker {
public:
    explicit HostMarker(uint64_t pos) : pos(pos) {}
    // pos is complete once this many tasks have executed.
    const uint64_t pos;
};

}  // namespace

HostQueue::HostQueue() : thread_([this] { Run(); }) {}

HostQueue::~HostQueue() {
    {
        Lock l(mu_);
        stop_ = true;
    }
    work_cv_.notify_all();
    if (thread_.get_id() == std::this_thread::get_id()) {
        // unreachable through the C API, which refuses destroys from a callback (NotAllowed); a detached
        // executor would run on in freed memory, so stop here rather than corrupt the process
        std::abort();
    } else {
        thread_.join();
    }
}

void HostQueue::Run() {
    Lock l(mu_);
    for (;;) {
        while (tasks_.empty() && !stop_) l.Wait(work_cv_);
        if (tasks_.empty()) return;  // stop_ and drained
        Task t = tasks_.front();
        tasks_.pop_front();
        l.Unlock();
        t.fn(handle, t.data);
        l.Relock();
        ++executed_;
        done_cv_.notify_all();
    }
}

XResult HostQueue::LaunchHost(LaunchCallback fn, void *data) {
    if (fn == nullptr) return kXSchedErrorInvalidValue;
    {
        Lock l(mu_);
        tasks_.push_back(Task{fn, data});
        ++enqueued_;
    }
    work_cv_.notify_one();
    return kXSchedSuccess;
}

XResult HostQueue::RecordMarker(std::shared_ptr<Marker> *out) {
    Lock l(mu_);
    *out = std::make_shared<HostMarker>(enqueued_);
    return kXSchedSuccess;
}

XResult HostQueue::WaitMarker(Marker &m, const std::atomic<bool> &cancel) {
    const uint64_t pos = static_cast<HostMarker &>(m).pos;
    Lock l(mu_);
    while (executed_ < pos) {
        if (cancel.load()) return kXSchedErrorAborted;
        l.Wait(done_cv_);
    }
    return kXSchedSuccess;
}

XResult HostQueue::Synchronize() {
    Lock l(mu_);
    const uint64_t pos = enqueued_;
    while (executed_ < pos) l.Wait(done_cv_);
    return kXSchedSuccess;
}

void HostQueue::WakeWaiters() {
    Lock l(mu_);  // taken so that a waiter between its check and its wait is not missed
    done_cv_.notify_all();
}

}  // namespace xsched

using xsched::HwQueues;

extern "C" XResult HostQueueCreate(HwQueueHandle *hwq) {
    if (hwq == nullptr) return kXSchedErrorInvalidValue;
    auto q = std::make_shared<xsched::HostQueue>();
    *hwq = HwQueues().Insert(q);
    return kXSchedSuccess;
}

extern "C" XResult HostQueueLaunch(HwQueueHandle hwq, LaunchCallback fn, void *data) {
    if (hwq == 0 || fn == nullptr) return kXSchedErrorInvalidValue;
    auto q = HwQueues().Find(hwq);
    if (!q) return kXSchedErrorNotFound;
    return q->LaunchHost(fn, data);
}
