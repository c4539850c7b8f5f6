// xqueue.cuh: one preemptible queue (xsched XQueue) per CUDA stream of a
// ggml_backend_cuda_context (GGML_XQUEUE builds). Included by common.cuh right
// before ggml_backend_cuda_context, which holds a ggml_cuda_xqueue_state.
//
// Launches are gated on the calling thread (blocking submit): once per graph
// compute for a context nothing can preempt, once per segment for one that
// can be preempted (xqueue.cu), once per node with GGML_XQUEUE_PREEMPT=node.
// Every CUDA call stays on its stream in program order, so cuBLAS, PDL, async
// copies and events need no change.
#pragma once

#ifdef GGML_USE_XQUEUE

#include "ggml-backend.h"
#include "ggml-xqueue.h"

#include <atomic>
#include <vector>

struct ggml_backend_cuda_context;
struct ggml_cuda_xqueue_segments; // plans and timing events of the segments (xqueue.cu)

// ggml_cuda_xqueue_launch is how a graph compute is launched (decided per compute in xqueue.cu).
enum ggml_cuda_xqueue_launch {
    GGML_CUDA_XQUEUE_LAUNCH_WHOLE,   // as upstream, CUDA graph included; one gate
    GGML_CUDA_XQUEUE_LAUNCH_SEGMENT, // segments of bounded GPU time, each its own CUDA graph; one gate each
    GGML_CUDA_XQUEUE_LAUNCH_NODE,    // one gate per node, no CUDA graphs
};

// ggml_cuda_xqueue_state is the XQueue side of one ggml_backend_cuda_context.
struct ggml_cuda_xqueue_state {
    ggml_xqueue_group group;
    // xq[device][stream_no]: the XQueue of streams[device][stream_no], 0 = ungated.
    // Written on the compute thread only (stream creation), read by the gates.
    XQueueHandle xq[GGML_CUDA_MAX_DEVICES][GGML_CUDA_MAX_STREAMS] = {};
    // stream_hw_priority[device][stream_no]: the CUDA stream priority the stream was created with.
    int stream_hw_priority[GGML_CUDA_MAX_DEVICES][GGML_CUDA_MAX_STREAMS] = {};
    // hw_priority: the CUDA stream priority of this context's xsched priority (set by the priority proc); in
    // force when GGML_XQUEUE_STREAM_PRIORITY and the policy ask for one (ggml_cuda_xqueue_wanted_hw_priority).
    std::atomic<int> hw_priority{0};
    // applied_hw_priority: the CUDA stream priority the existing streams were last brought to.
    int applied_hw_priority = 0;
    // The fields below belong to the compute thread.
    // launch: how the current graph compute is launched.
    ggml_cuda_xqueue_launch launch = GGML_CUDA_XQUEUE_LAUNCH_WHOLE;
    // graphs_allowed: whether upstream's CUDA graphs may be used (not with one gate per node).
    bool graphs_allowed = true;
    // coarse: only the first gate of an epoch (a graph compute, or a segment) on a stream is a gate.
    bool coarse = true;
    // held_on_device: the context's segments are launched at Level 2 (GGML_XQUEUE_HOLD=device), set per compute.
    bool held_on_device = false;
    // epoch: counts graph computes and segments; gated_epoch: the epoch of a stream's last gate.
    uint32_t epoch = 0;
    uint32_t gated_epoch[GGML_CUDA_MAX_DEVICES][GGML_CUDA_MAX_STREAMS] = {};
    // segments: created at the first segmented compute, freed by ggml_cuda_xqueue_destroy().
    ggml_cuda_xqueue_segments * segments = nullptr;
    // snapshot_rows: the buffer of the scheduler snapshot (grows with the queue count).
    std::vector<XQueueInfo> snapshot_rows = std::vector<XQueueInfo>(64);
    // threat_generation: XSchedGeneration() when threat_preemptible was derived from a snapshot.
    // threat_policy: the policy of that snapshot (kPolicyNone until one was read).
    uint64_t threat_generation = 0;
    bool     threat_preemptible = false;
    int32_t  threat_policy      = kPolicyNone;
};

// ggml_cuda_xqueue_part_fn is upstream's graph compute of (a view of) a ggml graph.
typedef void (*ggml_cuda_xqueue_part_fn)(ggml_backend_cuda_context * ctx, ggml_cgraph * cgraph);

// ggml_cuda_xqueue_create_stream() creates streams[device][stream_no] (with
// the context's CUDA stream priority) and its XQueue. The device is current.
void ggml_cuda_xqueue_create_stream(ggml_backend_cuda_context & ctx, int device, int stream_no);
// ggml_cuda_xqueue_destroy() destroys every XQueue of ctx and the segment state; call before the streams
// are destroyed.
void ggml_cuda_xqueue_destroy(ggml_backend_cuda_context & ctx);
// ggml_cuda_xqueue_compute() runs one graph compute on the compute thread: applies a changed stream
// priority, creates stream 0, decides how to launch (whole, segments, nodes) and calls part for the whole
// graph or for each segment.
void ggml_cuda_xqueue_compute(ggml_backend_cuda_context & ctx, ggml_cgraph * cgraph, ggml_cuda_xqueue_part_fn part);

// ggml_cuda_xqueue_gate() blocks until the scheduler admits the next unit on (device, stream_no); when
// coarse, only the first call of an epoch on that stream is a gate.
static inline void ggml_cuda_xqueue_gate(ggml_cuda_xqueue_state & s, int device, int stream_no) {
    if (s.coarse) {
        if (s.gated_epoch[device][stream_no] == s.epoch) {
            return;
        }
        s.gated_epoch[device][stream_no] = s.epoch;
    }
    ggml_xqueue_gate(s.xq[device][stream_no]);
}

// ggml_cuda_xqueue_synchronized() reports that the device's streams were synchronized: the synchronized
// stream joins the streams forked from it (GGML_CUDA_GRAPH_OPT) before the end of every graph, so all of
// them are complete.
static inline void ggml_cuda_xqueue_synchronized(ggml_cuda_xqueue_state & s, int device, int stream_no) {
    (void) stream_no;
    for (int i = 0; i < GGML_CUDA_MAX_STREAMS; ++i) {
        ggml_xqueue_synchronized(s.xq[device][i]);
    }
}

// The backend procs (ggml_backend_set_priority_t & co. in ggml-backend.h).
void ggml_backend_cuda_xqueue_set_priority(ggml_backend_t backend, int32_t priority, int32_t weight);
void ggml_backend_cuda_xqueue_set_active(ggml_backend_t backend, bool active);
void ggml_backend_cuda_xqueue_set_gates_released(ggml_backend_t backend, bool released);
void ggml_backend_cuda_xqueue_set_queue_name(ggml_backend_t backend, const char * name);

#endif // GGML_USE_XQUEUE
