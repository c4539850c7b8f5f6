// host_queue.cpp: the host platform and its C entry points.
#include "host_queue.h"

#include <cstdlib>
#include <memory>

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

// Marks are a host queue's barrier words; a barrier task waits on `cv` for its release.
struct HostQueue::Marks {
    Mutex mu;
    std::condition_variable cv;
    uint32_t released XSCHED_GUARDED_BY(mu) = 0;
    uint32_t started XSCHED_GUARDED_BY(mu) = 0;
    uint32_t done XSCHED_GUARDED_BY(mu) = 0;
    bool stop XSCHED_GUARDED_BY(mu) = false;  // the queue is going: barriers pass
};

namespace {

// MarkTask is the data of one barrier or done task.
struct MarkTask {
    std::shared_ptr<HostQueue::Marks> marks;
    uint32_t seq;
};

// Reached() is the cyclic comparison of the barriers: mark has reached seq.
bool Reached(uint32_t mark, uint32_t seq) { return static_cast<int32_t>(mark - seq) >= 0; }

XResult BarrierTask(HwQueueHandle, void *data) {
    std::unique_ptr<MarkTask> t(static_cast<MarkTask *>(data));
    Lock l(t->marks->mu);
    while (!t->marks->stop && !Reached(t->marks->released, t->seq)) l.Wait(t->marks->cv);
    t->marks->started = t->seq;
    return kXSchedSuccess;
}

XResult DoneTask(HwQueueHandle, void *data) {
    std::unique_ptr<MarkTask> t(static_cast<MarkTask *>(data));
    Lock l(t->marks->mu);
    t->marks->done = t->seq;
    return kXSchedSuccess;
}

}  // namespace

HostQueue::HostQueue() : marks_(std::make_shared<Marks>()), thread_([this] { Run(); }) {}

HostQueue::~HostQueue() {
    {
        Lock m(marks_->mu);
        marks_->stop = true;
    }
    marks_->cv.notify_all();
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

XResult HostQueue::LaunchBarrier(uint32_t seq) {
    auto *t = new MarkTask{marks_, seq};
    const XResult r = LaunchHost(BarrierTask, t);
    if (r != kXSchedSuccess) delete t;
    return r;
}

XResult HostQueue::LaunchDone(uint32_t seq) {
    auto *t = new MarkTask{marks_, seq};
    const XResult r = LaunchHost(DoneTask, t);
    if (r != kXSchedSuccess) delete t;
    return r;
}

void HostQueue::Release(uint32_t seq) {
    {
        Lock l(marks_->mu);
        marks_->released = seq;
    }
    marks_->cv.notify_all();
}

uint32_t HostQueue::Started() {
    Lock l(marks_->mu);
    return marks_->started;
}

uint32_t HostQueue::Done() {
    Lock l(marks_->mu);
    return marks_->done;
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
