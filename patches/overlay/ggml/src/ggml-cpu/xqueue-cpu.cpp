// xqueue-cpu.cpp: one host XQueue per CPU backend, gated per graph compute.
#ifdef GGML_USE_XQUEUE

#include "xqueue-cpu.h"
#include "ggml-xqueue.h"

#include <atomic>
#include <mutex>

struct ggml_cpu_xqueue {
    ggml_xqueue_group         group;
    std::atomic<XQueueHandle> xq{0};
    std::mutex                create_mutex;
    bool                      failed = false; // creation failed once: stay ungated
};

ggml_cpu_xqueue * ggml_cpu_xqueue_new(void) {
    return new ggml_cpu_xqueue;
}

void ggml_cpu_xqueue_free(ggml_cpu_xqueue * q) {
    delete q; // the group's destructor releases the queue
}

static XQueueHandle ggml_cpu_xqueue_get(ggml_cpu_xqueue * q) {
    XQueueHandle xq = q->xq.load(std::memory_order_acquire);
    if (xq != 0) {
        return xq;
    }
    std::lock_guard<std::mutex> lock(q->create_mutex);
    if (q->xq.load(std::memory_order_relaxed) != 0 || q->failed) {
        return q->xq.load(std::memory_order_relaxed);
    }
    HwQueueHandle hwq = 0;
    XResult r = HostQueueCreate(&hwq);
    if (r != kXSchedSuccess) {
        GGML_LOG_WARN("%s: HostQueueCreate failed: %s; CPU backend runs ungated\n", __func__, XResultName(r));
        q->failed = true;
        return 0;
    }
    xq = q->group.create(hwq, "cpu");
    q->failed = (xq == 0);
    q->xq.store(xq, std::memory_order_release);
    return xq;
}

void ggml_cpu_xqueue_begin(ggml_cpu_xqueue * q) {
    ggml_xqueue_gate(ggml_cpu_xqueue_get(q));
}

void ggml_cpu_xqueue_end(ggml_cpu_xqueue * q) {
    ggml_xqueue_synchronized(q->xq.load(std::memory_order_acquire));
}

void ggml_cpu_xqueue_set_priority(ggml_cpu_xqueue * q, int32_t priority, int32_t weight) {
    q->group.set_priority(priority, weight);
}

void ggml_cpu_xqueue_set_active(ggml_cpu_xqueue * q, bool active) {
    q->group.set_active(active);
}

void ggml_cpu_xqueue_set_gates_released(ggml_cpu_xqueue * q, bool released) {
    q->group.set_gates_released(released);
}

void ggml_cpu_xqueue_set_name(ggml_cpu_xqueue * q, const char * name) {
    q->group.set_prefix(name);
}

#endif // GGML_USE_XQUEUE
