// xqueue.cu: XQueues for the CUDA streams of a backend context, the CUDA stream
// priority of a context, and the per-context CUDA-graph decision.
//
// Environment (read once per process):
//   GGML_XQUEUE_GRAPHS=auto|greedy|off|on (default auto)
//     off:  no CUDA graphs for any context that has XQueues (XSched's choice;
//           every node is a preemption point).
//     on:   CUDA graphs exactly as upstream; a graph launch is one gated unit.
//     auto: a context uses CUDA graphs only while nothing can preempt it: under
//           HPF when its priority is >= that of every other live XQueue, under
//           NONE always, under WRR never (time slices need node granularity).
//     greedy: as auto, but under HPF a lower-priority context also uses graphs
//           while every more important queue is Idle (faster harvesting; a
//           high-priority arrival may wait behind one in-flight graph).
//   GGML_XQUEUE_GATE=auto|node (default auto)
//     auto: a context that nothing can preempt (the auto rule above, whatever
//           GGML_XQUEUE_GRAPHS says) passes one gate per graph compute instead
//           of one per node: its per-node gates would never hold it back
//           (~17,000 of them for a 6,300-token prompt; a candidate cause of
//           the 2-3% server prefill gap measured on an H200).
//     node: every node (or graph launch) is a gated unit, always.
//   GGML_XQUEUE_STREAM_PRIORITY=on|off (default on)
//     on: a context of priority p > 0 gets CUDA stream priority -p (clamped to
//         the device range), so its kernels win at block granularity.
#ifdef GGML_USE_XQUEUE

#include "common.cuh"
#include "ggml-backend-impl.h"

#include <cstring>

enum ggml_cuda_xqueue_graph_mode {
    GGML_CUDA_XQUEUE_GRAPHS_AUTO,
    GGML_CUDA_XQUEUE_GRAPHS_GREEDY,
    GGML_CUDA_XQUEUE_GRAPHS_OFF,
    GGML_CUDA_XQUEUE_GRAPHS_ON,
};

static ggml_cuda_xqueue_graph_mode ggml_cuda_xqueue_graph_mode_from_env() {
    const char * v = getenv("GGML_XQUEUE_GRAPHS");
    if (v == nullptr || *v == '\0' || strcmp(v, "auto") == 0) {
        return GGML_CUDA_XQUEUE_GRAPHS_AUTO;
    }
    if (strcmp(v, "greedy") == 0) {
        return GGML_CUDA_XQUEUE_GRAPHS_GREEDY;
    }
    if (strcmp(v, "off") == 0 || strcmp(v, "0") == 0) {
        return GGML_CUDA_XQUEUE_GRAPHS_OFF;
    }
    if (strcmp(v, "on") == 0 || strcmp(v, "1") == 0) {
        return GGML_CUDA_XQUEUE_GRAPHS_ON;
    }
    fprintf(stderr, "error: GGML_XQUEUE_GRAPHS=%s: expected auto, greedy, off or on\n", v);
    exit(1);
}

static ggml_cuda_xqueue_graph_mode ggml_cuda_xqueue_get_graph_mode() {
    static const ggml_cuda_xqueue_graph_mode mode = ggml_cuda_xqueue_graph_mode_from_env();
    return mode;
}

static bool ggml_cuda_xqueue_coarse_gate_enabled() {
    static const bool enabled = [] {
        const char * v = getenv("GGML_XQUEUE_GATE");
        if (v == nullptr || *v == '\0' || strcmp(v, "auto") == 0) {
            return true;
        }
        if (strcmp(v, "node") == 0) {
            return false;
        }
        fprintf(stderr, "error: GGML_XQUEUE_GATE=%s: expected auto or node\n", v);
        exit(1);
    }();
    return enabled;
}

static bool ggml_cuda_xqueue_stream_priority_enabled() {
    static const bool enabled = [] {
        const char * v = getenv("GGML_XQUEUE_STREAM_PRIORITY");
        if (v == nullptr || *v == '\0' || strcmp(v, "on") == 0 || strcmp(v, "1") == 0) {
            return true;
        }
        if (strcmp(v, "off") == 0 || strcmp(v, "0") == 0) {
            return false;
        }
        fprintf(stderr, "error: GGML_XQUEUE_STREAM_PRIORITY=%s: expected on or off\n", v);
        exit(1);
    }();
    return enabled;
}

// ggml_cuda_xqueue_hw_priority() maps an xsched priority onto a CUDA stream
// priority: p > 0 -> -p clamped to [greatest, least]; p <= 0 -> the default (least).
static int ggml_cuda_xqueue_hw_priority(int32_t priority) {
    if (!ggml_cuda_xqueue_stream_priority_enabled() || priority <= 0) {
        return 0;
    }
    static const std::pair<int, int> range = [] {
        int least = 0;
        int greatest = 0;
        if (cudaDeviceGetStreamPriorityRange(&least, &greatest) != cudaSuccess) {
            (void) cudaGetLastError();
            return std::make_pair(0, 0);
        }
        return std::make_pair(least, greatest);
    }();
    const int least = range.first;
    const int greatest = range.second;
    int hw = -priority;
    if (hw < greatest) {
        hw = greatest;
    }
    if (hw > least) {
        hw = least;
    }
    return hw;
}

void ggml_cuda_xqueue_create_stream(ggml_backend_cuda_context & ctx, int device, int stream_no) {
    ggml_cuda_xqueue_state & s = ctx.xqueue;
    const int hw = s.hw_priority.load(std::memory_order_relaxed);

    cudaStream_t stream = nullptr;
    if (hw != 0) {
        CUDA_CHECK(cudaStreamCreateWithPriority(&stream, cudaStreamNonBlocking, hw));
    } else {
        CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    }
    ctx.streams[device][stream_no] = stream;
    s.stream_hw_priority[device][stream_no] = hw;

    HwQueueHandle hwq = 0;
    const XResult r = CudaQueueCreate(&hwq, (void *) stream);
    if (r != kXSchedSuccess) {
        static std::atomic<bool> warned{false};
        if (!warned.exchange(true)) {
            GGML_LOG_WARN("%s: CudaQueueCreate failed: %s (%s); CUDA streams run ungated\n",
                          __func__, XResultName(r), XResultMessage(r));
        }
        s.xq[device][stream_no] = 0;
        return;
    }
    char suffix[32];
    snprintf(suffix, sizeof(suffix), "cuda%d.s%d", device, stream_no);
    s.xq[device][stream_no] = s.group.create(hwq, suffix);
}

void ggml_cuda_xqueue_destroy(ggml_backend_cuda_context & ctx) {
    ggml_cuda_xqueue_state & s = ctx.xqueue;
    s.group.destroy_all();
    memset(s.xq, 0, sizeof(s.xq));
}

// ggml_cuda_xqueue_apply_hw_priority() recreates the existing streams whose
// CUDA priority differs from the wanted one (a stream's priority is fixed at
// creation) and rebinds their cuBLAS handles. Runs on the compute thread
// between graphs, so nothing of this context is being launched or captured.
static void ggml_cuda_xqueue_apply_hw_priority(ggml_backend_cuda_context & ctx, int hw) {
    ggml_cuda_xqueue_state & s = ctx.xqueue;
    for (int d = 0; d < GGML_CUDA_MAX_DEVICES; ++d) {
        for (int i = 0; i < GGML_CUDA_MAX_STREAMS; ++i) {
            cudaStream_t old = ctx.streams[d][i];
            if (old == nullptr || s.stream_hw_priority[d][i] == hw) {
                continue;
            }
            ggml_cuda_set_device(d);
            CUDA_CHECK(cudaStreamSynchronize(old));
            if (s.xq[d][i] != 0) {
                s.group.destroy(s.xq[d][i]);
                s.xq[d][i] = 0;
            }
            CUDA_CHECK(cudaStreamDestroy(old));
            ctx.streams[d][i] = nullptr;
            ggml_cuda_xqueue_create_stream(ctx, d, i);
            if (ctx.cublas_handles[d][i] != nullptr) {
                CUBLAS_CHECK(cublasSetStream(ctx.cublas_handles[d][i], ctx.streams[d][i]));
            }
            GGML_LOG_DEBUG("%s: %s stream %d recreated with CUDA priority %d\n", __func__, ctx.name.c_str(), i, hw);
        }
    }
    ggml_cuda_set_device(ctx.device);
}

// ggml_cuda_xqueue_threat is who could preempt a context now, read from one scheduler snapshot.
struct ggml_cuda_xqueue_threat {
    bool any;  // some queue may preempt it (a more important one exists, or the policy time-slices)
    bool busy; // such a queue is Ready or in an activity scope (for greedy: only then is a graph risky)
};

// ggml_cuda_xqueue_threat_now() tells whether another queue may preempt the context of s.
static ggml_cuda_xqueue_threat ggml_cuda_xqueue_threat_now(ggml_cuda_xqueue_state & s) {
    if (s.group.empty()) {
        return {false, false}; // no XQueue (platform refused): nothing to preempt, upstream behaviour
    }
    constexpr size_t capacity = 64;
    XSchedSnapshotInfo info = {};
    XQueueInfo rows[capacity];
    size_t n = 0;
    if (XSchedSnapshot(&info, rows, capacity, &n) != kXSchedSuccess || n < info.n_queues) {
        return {true, true}; // cannot tell: stay preemptible
    }
    if (info.scheduler != kSchedulerLocal) {
        return {true, true}; // app-managed: the program may suspend any queue at any time
    }
    if (info.policy == kPolicyNone) {
        return {false, false};
    }
    if (info.policy != kPolicyHighestPriorityFirst) {
        return {true, true}; // WRR: time slices need node granularity
    }
    ggml_cuda_xqueue_threat t = {false, false};
    const int32_t own = s.group.get_priority();
    for (size_t i = 0; i < n; ++i) {
        if (rows[i].priority <= own || s.group.owns(rows[i].handle)) {
            continue;
        }
        t.any = true;
        t.busy = t.busy || rows[i].state == kQueueStateReady || rows[i].active_scopes > 0;
    }
    return t;
}

void ggml_cuda_xqueue_prepare(ggml_backend_cuda_context & ctx) {
    ggml_cuda_xqueue_state & s = ctx.xqueue;

    const int hw = s.hw_priority.load(std::memory_order_relaxed);
    if (hw != s.applied_hw_priority) {
        ggml_cuda_xqueue_apply_hw_priority(ctx, hw);
        s.applied_hw_priority = hw;
    }

    ctx.stream(ctx.device, 0); // stream 0 and its XQueue exist before the first gate

    const ggml_cuda_xqueue_graph_mode mode = ggml_cuda_xqueue_get_graph_mode();
    // one scheduler snapshot per graph compute, and none when neither decision below reads it
    const bool need_threat = ggml_cuda_xqueue_coarse_gate_enabled() ||
        mode == GGML_CUDA_XQUEUE_GRAPHS_AUTO || mode == GGML_CUDA_XQUEUE_GRAPHS_GREEDY;
    const ggml_cuda_xqueue_threat threat = need_threat ? ggml_cuda_xqueue_threat_now(s) : ggml_cuda_xqueue_threat{true, true};
    bool allowed = true;
    switch (mode) {
        case GGML_CUDA_XQUEUE_GRAPHS_ON:     allowed = true;         break;
        case GGML_CUDA_XQUEUE_GRAPHS_OFF:    allowed = false;        break;
        case GGML_CUDA_XQUEUE_GRAPHS_AUTO:   allowed = !threat.any;  break; // a whole graph would delay it
        case GGML_CUDA_XQUEUE_GRAPHS_GREEDY: allowed = !threat.busy; break;
    }
    if (allowed != s.graphs_allowed) {
        GGML_LOG_DEBUG("%s: %s: CUDA graphs %s\n", __func__, ctx.name.c_str(), allowed ? "allowed" : "disabled (preemptible)");
    }
    s.graphs_allowed = allowed;

    const bool coarse = ggml_cuda_xqueue_coarse_gate_enabled() && !threat.any;
    if (coarse != s.coarse) {
        GGML_LOG_DEBUG("%s: %s: %s\n", __func__, ctx.name.c_str(), coarse ? "one gate per graph compute" : "one gate per node");
    }
    s.coarse = coarse;
    s.epoch++;
}

static ggml_backend_cuda_context * ggml_cuda_xqueue_ctx(ggml_backend_t backend) {
    return (ggml_backend_cuda_context *) backend->context;
}

void ggml_backend_cuda_xqueue_set_priority(ggml_backend_t backend, int32_t priority, int32_t weight) {
    ggml_backend_cuda_context * ctx = ggml_cuda_xqueue_ctx(backend);
    ctx->xqueue.group.set_priority(priority, weight);
    ctx->xqueue.hw_priority.store(ggml_cuda_xqueue_hw_priority(priority), std::memory_order_relaxed);
}

void ggml_backend_cuda_xqueue_set_active(ggml_backend_t backend, bool active) {
    ggml_cuda_xqueue_ctx(backend)->xqueue.group.set_active(active);
}

void ggml_backend_cuda_xqueue_set_gate_abort(ggml_backend_t backend, bool abort) {
    ggml_cuda_xqueue_ctx(backend)->xqueue.group.set_abort(abort);
}

void ggml_backend_cuda_xqueue_set_queue_name(ggml_backend_t backend, const char * name) {
    ggml_cuda_xqueue_ctx(backend)->xqueue.group.set_prefix(name);
}

#endif // GGML_USE_XQUEUE
