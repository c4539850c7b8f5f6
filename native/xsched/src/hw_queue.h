// hw_queue.h: the platform queue interface (one file per platform implements it).
#ifndef XSCHED_SRC_HW_QUEUE_H_
#define XSCHED_SRC_HW_QUEUE_H_

#include <atomic>
#include <memory>

#include "xsched/types.h"

namespace xsched {

// Marker is a completion point recorded on a HwQueue; it covers every unit
// launched on the queue before it was recorded.
class Marker {
public:
    // ~Marker() releases the platform object (e.g. returns a CUDA event to its pool).
    virtual ~Marker() = default;
};

// HwQueue is a platform's native in-order queue (a host executor, a CUDA stream).
// All methods are thread-safe unless noted.
class HwQueue {
public:
    // ~HwQueue() waits for launched work and frees the platform queue.
    virtual ~HwQueue() = default;
    // LaunchHost() appends fn(handle, data) to a host queue; NotSupported elsewhere.
    virtual XResult LaunchHost(LaunchCallback fn, void *data) {
        (void)fn;
        (void)data;
        return kXSchedErrorNotSupported;
    }
    // RecordMarker() records a completion marker behind everything launched so
    // far. Called on the launching thread, in program order.
    virtual XResult RecordMarker(std::shared_ptr<Marker> *out) = 0;
    // WaitMarker() blocks until m is complete (Success) or until *cancel becomes
    // true and WakeWaiters() was called (Aborted). It never spins a core.
    virtual XResult WaitMarker(Marker &m, const std::atomic<bool> &cancel) = 0;
    // Synchronize() blocks until everything launched so far has completed.
    virtual XResult Synchronize() = 0;
    // WakeWaiters() makes blocked WaitMarker() calls re-check their cancel flag.
    virtual void WakeWaiters() {}
    // OnWorkerStart() prepares a launch-worker thread (CUDA: sets the device).
    virtual void OnWorkerStart() {}
    // OnOwnThread() tells whether the caller runs on the platform's own executor (a host queue's callback).
    virtual bool OnOwnThread() const { return false; }

    // Level 2 (deactivate): units wait on the device behind barriers that the host releases, so the host may
    // launch ahead while a suspension still stops the device between two units, whatever the launching thread
    // is doing. Sequence numbers are 32 bits and compare cyclically. All NotSupported/no-ops by default.
    // CanDeactivate() tells whether the queue has device barriers (probed once).
    virtual bool CanDeactivate() { return false; }
    // LaunchBarrier() makes what is launched next wait on the device until Release() has released `seq`
    // (released means (int32_t)(released - seq) >= 0); the device then writes seq to Started().
    virtual XResult LaunchBarrier(uint32_t seq) {
        (void)seq;
        return kXSchedErrorNotSupported;
    }
    // LaunchDone() makes the device write seq to Done() once the work launched before it is complete.
    virtual XResult LaunchDone(uint32_t seq) {
        (void)seq;
        return kXSchedErrorNotSupported;
    }
    // Release() releases every barrier up to seq (it may lower the mark: barriers not yet passed then wait).
    virtual void Release(uint32_t seq) { (void)seq; }
    // Started() and Done() read the last sequence numbers the device wrote.
    virtual uint32_t Started() { return 0; }
    virtual uint32_t Done() { return 0; }

    // handle is the registry handle; set once when registered.
    HwQueueHandle handle = 0;
    // bound_xqueue is the XQueue created on this queue (0 if none); guarded by BindMutex().
    XQueueHandle bound_xqueue = 0;
};

}  // namespace xsched

#endif  // XSCHED_SRC_HW_QUEUE_H_
