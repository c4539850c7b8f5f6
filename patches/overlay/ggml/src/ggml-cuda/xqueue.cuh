// xqueue.cuh: one preemptible queue (xsched XQueue) per CUDA stream of a
// ggml_backend_cuda_context (GGML_XQUEUE builds). Included by common.cuh right
// before ggml_backend_cuda_context, which holds a ggml_cuda_xqueue_state.
//
// Launches are gated on the calling thread (blocking submit): once per graph
// node or fused group in direct execution, once per cudaGraphLaunch with CUDA
// graphs. Every CUDA call stays on its stream in program order, so cuBLAS,
// PDL, async copies and events need no change.
#pragma once

#ifdef GGML_USE_XQUEUE

#include "ggml-backend.h"
#include "ggml-xqueue.h"

#include <atomic>

struct ggml_backend_cuda_context;

// ggml_cuda_xqueue_state is the XQueue side of one ggml_backend_cuda_context.
struct ggml_cuda_xqueue_state {
    ggml_xqueue_group group;
    // xq[device][stream_no]: the XQueue of streams[device][stream_no], 0 = ungated.
    // Written on the compute thread only (stream creation), read by the gates.
    XQueueHandle xq[GGML_CUDA_MAX_DEVICES][GGML_CUDA_MAX_STREAMS] = {};
    // stream_hw_priority[device][stream_no]: the CUDA stream priority the stream was created with.
    int stream_hw_priority[GGML_CUDA_MAX_DEVICES][GGML_CUDA_MAX_STREAMS] = {};
    // hw_priority: the CUDA stream priority wanted for this context (set by the priority proc).
    std::atomic<int> hw_priority{0};
    // applied_hw_priority: the hw_priority the existing streams were last brought to.
    int applied_hw_priority = 0;
    // graphs_allowed: whether this context may use CUDA graphs now (see GGML_XQUEUE_GRAPHS).
    bool graphs_allowed = true;
    // coarse: nothing can preempt this context now, so one gate per graph compute and stream suffices
    // (see GGML_XQUEUE_GATE). Compute thread only, like epoch and gated_epoch.
    bool coarse = false;
    // epoch: counts graph computes (ggml_cuda_xqueue_prepare); gated_epoch: the epoch of a stream's last gate.
    uint32_t epoch = 0;
    uint32_t gated_epoch[GGML_CUDA_MAX_DEVICES][GGML_CUDA_MAX_STREAMS] = {};
};

// ggml_cuda_xqueue_create_stream() creates streams[device][stream_no] (with
// the context's CUDA stream priority) and its XQueue. The device is current.
void ggml_cuda_xqueue_create_stream(ggml_backend_cuda_context & ctx, int device, int stream_no);
// ggml_cuda_xqueue_destroy() destroys every XQueue of ctx; call before the streams are destroyed.
void ggml_cuda_xqueue_destroy(ggml_backend_cuda_context & ctx);
// ggml_cuda_xqueue_prepare() runs at the start of each graph compute on the
// compute thread: creates stream 0, applies a changed stream priority, and
// decides whether this context may use CUDA graphs for this graph.
void ggml_cuda_xqueue_prepare(ggml_backend_cuda_context & ctx);

// ggml_cuda_xqueue_gate() blocks until the scheduler admits the next unit on (device, stream_no); for a
// coarse context only the first call of a graph compute on that stream is a gate.
static inline void ggml_cuda_xqueue_gate(ggml_cuda_xqueue_state & s, int device, int stream_no) {
    if (s.coarse) {
        if (s.gated_epoch[device][stream_no] == s.epoch) {
            return;
        }
        s.gated_epoch[device][stream_no] = s.epoch;
    }
    ggml_xqueue_gate(s.xq[device][stream_no]);
}

// ggml_cuda_xqueue_synchronized() reports that (device, stream_no) was synchronized.
static inline void ggml_cuda_xqueue_synchronized(ggml_cuda_xqueue_state & s, int device, int stream_no) {
    ggml_xqueue_synchronized(s.xq[device][stream_no]);
}

// The backend procs (ggml_backend_set_priority_t & co. in ggml-backend.h).
void ggml_backend_cuda_xqueue_set_priority(ggml_backend_t backend, int32_t priority, int32_t weight);
void ggml_backend_cuda_xqueue_set_active(ggml_backend_t backend, bool active);
void ggml_backend_cuda_xqueue_set_gate_abort(ggml_backend_t backend, bool abort);
void ggml_backend_cuda_xqueue_set_queue_name(ggml_backend_t backend, const char * name);

#endif // GGML_USE_XQUEUE
