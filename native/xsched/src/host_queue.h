// host_queue.h: the host platform, an in-order executor thread per queue.
#ifndef XSCHED_SRC_HOST_QUEUE_H_
#define XSCHED_SRC_HOST_QUEUE_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <thread>

#include "hw_queue.h"
#include "mutex.h"

namespace xsched {

// HostQueue runs launched callbacks in order on its own thread; a unit is
// complete when its callback has returned. Markers are FIFO positions.
class HostQueue final : public HwQueue {
public:
    // HostQueue() starts the executor thread.
    HostQueue();
    // ~HostQueue() runs what is still queued, then joins the executor.
    ~HostQueue() override;
    HostQueue(const HostQueue &) = delete;
    HostQueue &operator=(const HostQueue &) = delete;

    XResult LaunchHost(LaunchCallback fn, void *data) override;
    XResult RecordMarker(std::shared_ptr<Marker> *out) override;
    XResult WaitMarker(Marker &m, const std::atomic<bool> &cancel) override;
    XResult Synchronize() override;
    void WakeWaiters() override;
    bool OnOwnThread() const override { return thread_.get_id() == std::this_thread::get_id(); }
    struct Marks;  // the barrier words (host_queue.cpp), shared with the barrier tasks
    // Level 2 on the host: a barrier is a task that waits for its release (the executor stands still, as a
    // device would), Done() is written by a task.
    bool CanDeactivate() override { return true; }
    XResult LaunchBarrier(uint32_t seq) override;
    XResult LaunchDone(uint32_t seq) override;
    void Release(uint32_t seq) override;
    uint32_t Started() override;
    uint32_t Done() override;

private:
    struct Task {
        LaunchCallback fn;
        void *data;
    };
    // Run() is the executor loop.
    void Run();

    Mutex mu_;
    std::condition_variable work_cv_;  // signalled when a task is queued or on stop
    std::condition_variable done_cv_;  // signalled when a task completes or on WakeWaiters
    std::deque<Task> tasks_ XSCHED_GUARDED_BY(mu_);
    uint64_t enqueued_ XSCHED_GUARDED_BY(mu_) = 0;  // tasks launched so far
    uint64_t executed_ XSCHED_GUARDED_BY(mu_) = 0;  // tasks whose callback returned
    bool stop_ XSCHED_GUARDED_BY(mu_) = false;
    std::shared_ptr<Marks> marks_;
    std::thread thread_;
};

}  // namespace xsched

#endif  // XSCHED_SRC_HOST_QUEUE_H_
