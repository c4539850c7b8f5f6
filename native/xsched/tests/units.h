// units.h: simulated units of work for host-platform tests.
#ifndef XSCHED_TESTS_UNITS_H_
#define XSCHED_TESTS_UNITS_H_

#include <algorithm>
#include <atomic>
#include <mutex>

#include "harness.h"

namespace xtest {

// SimDevice is a simulated device shared by several queues: units are placed
// one after the other on a virtual timeline and a unit completes when its slot
// ends (sleep_until an absolute time), so CPU contention on a loaded machine
// delays completions but does not change how much work fits in a time span.
struct SimDevice {
    std::mutex mu;
    std::chrono::steady_clock::time_point free_at{};  // end of the last reserved slot
};

// Unit is the data of one queue's simulated units: each execution counts and
// costs cost_us (spinning, or a slot on a SimDevice).
struct Unit {
    std::atomic<uint64_t> executed{0};
    std::atomic<int> cost_us{0};
    SimDevice *device = nullptr;        // if set, units of all queues sharing it run one at a time
    std::atomic<bool> *hold = nullptr;  // if set, a unit waits while *hold is true
};

// RunUnit is the host callback of a Unit.
inline XResult RunUnit(HwQueueHandle, void *data) {
    Unit *u = static_cast<Unit *>(data);
    if (u->hold) {
        while (u->hold->load()) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (u->device) {
        std::chrono::steady_clock::time_point end;
        {
            std::lock_guard<std::mutex> l(u->device->mu);
            auto start = std::max(std::chrono::steady_clock::now(), u->device->free_at);
            end = start + std::chrono::microseconds(u->cost_us.load());
            u->device->free_at = end;
        }
        std::this_thread::sleep_until(end);
        u->executed.fetch_add(1);
    } else {
        if (u->cost_us.load() > 0) SpinUs(u->cost_us.load());
        u->executed.fetch_add(1);
    }
    return kXSchedSuccess;
}

// HostXQueue is a host HwQueue with its XQueue, destroyed in order. Declare
// the Units it runs before it: units may still run until it is destroyed.
struct HostXQueue {
    HwQueueHandle hwq = 0;
    XQueueHandle xq = 0;
    // HostXQueue() creates both (blocking submit unless flags say otherwise).
    explicit HostXQueue(int64_t flags = kQueueCreateFlagBlockingSubmit) {
        if (HostQueueCreate(&hwq) != kXSchedSuccess) return;
        if (XQueueCreate(&xq, hwq, kPreemptLevelBlock, flags) != kXSchedSuccess) xq = 0;
    }
    // ~HostXQueue() destroys the XQueue, then the HwQueue.
    ~HostXQueue() {
        if (xq) XQueueDestroy(xq);
        if (hwq) HwQueueDestroy(hwq);
    }
    // Launch() gates one unit and launches it; returns the gate's result.
    XResult Launch(Unit *u) {
        XResult r = XQueueGate(xq);
        if (r == kXSchedSuccess) HostQueueLaunch(hwq, &RunUnit, u);
        return r;
    }
    // Drain() waits for the host queue and reports the synchronization.
    void Drain() {
        HwQueueSynchronize(hwq);
        XQueueSynchronized(xq);
    }
};

// Submitter gates and launches units on one queue from its own thread until stopped.
struct Submitter {
    HostXQueue *q;
    Unit *u;
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> gated{0};
    std::thread t;
    // Submitter() starts the loop.
    Submitter(HostXQueue *q, Unit *u) : q(q), u(u) {
        t = std::thread([this] {
            while (!stop.load()) {
                if (this->q->Launch(this->u) == kXSchedSuccess) gated.fetch_add(1);
            }
            this->q->Drain();
        });
    }
    // Stop() ends the loop and joins (after an abort if the gate may be held).
    void Stop() {
        stop.store(true);
        XQueueAbort(q->xq, 1);
        t.join();
        XQueueAbort(q->xq, 0);
    }
};

}  // namespace xtest

#endif  // XSCHED_TESTS_UNITS_H_
