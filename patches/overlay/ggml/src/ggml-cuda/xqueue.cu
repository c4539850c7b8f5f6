// xqueue.cu: XQueues for the CUDA streams of a backend context, the CUDA stream priority of a context, and
// how a graph compute is launched: whole, in segments, or node by node.
//
// A context that nothing can preempt (under HPF no live queue has a higher priority; under NONE always)
// launches each graph compute as upstream does, CUDA graph included, behind one gate. A context that can be
// preempted (a more important queue exists under HPF; every context under WRR or an app-managed scheduler)
// is cut into segments of at most GGML_XQUEUE_SEGMENT_US of GPU time (ggml-xqueue-plan.h): each segment is
// a view of the ggml graph that upstream's code captures and replays as its own CUDA graph (or launches
// directly when it cannot use one, e.g. during prefill), behind one gate; two segments may be in flight,
// so a preemption waits for at most about two segments. Timing events around the segments of sampled computes
// correct the cost model per node, and a graph is cut anew when its segments measure over the budget or when
// clearly fewer would do. GGML_XQUEUE_PREEMPT=node|graph select the two
// alternatives for measurement (docs/knobs.md). GGML_XQUEUE_TAIL_US (off by default) lets the last segments of a
// prefill compute pass their gates at once, so that the host's work before the next ubatch overlaps GPU work
// (run 8: prefill at vanilla's speed, at the cost of longer preemptions at the end of a compute).
#ifdef GGML_USE_XQUEUE

#include "common.cuh"
#include "ggml-backend-impl.h"
#include "ggml-impl.h"
#include "ggml-xqueue-plan.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <unordered_map>
#include <vector>

// ggml_cuda_xqueue_hw_priority() maps an xsched priority onto a CUDA stream
// priority: p > 0 -> -p clamped to [greatest, least]; p <= 0 -> the default (least).
static int ggml_cuda_xqueue_hw_priority(int32_t priority) {
    if (ggml_xqueue_get_knobs().stream_priority == GGML_XQUEUE_STREAM_PRIORITY_OFF || priority <= 0) {
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
    return std::min(std::max(-priority, range.second), range.first);
}

void ggml_cuda_xqueue_create_stream(ggml_backend_cuda_context & ctx, int device, int stream_no) {
    ggml_cuda_xqueue_state & s = ctx.xqueue;
    const int hw = s.applied_hw_priority; // a change is applied by ggml_cuda_xqueue_compute, between graphs

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

//
// segments
//

// ggml_cuda_xqueue_plan_key names one graph shape of a context: its first node, its node count and that
// node's second dimension (the token count in llama's graphs), so decode and prefill graphs plan apart.
struct ggml_cuda_xqueue_plan_key {
    const void * first;
    int          n_nodes;
    int64_t      ne1;
    bool operator==(const ggml_cuda_xqueue_plan_key & o) const {
        return first == o.first && n_nodes == o.n_nodes && ne1 == o.ne1;
    }
};

struct ggml_cuda_xqueue_plan_key_hash {
    size_t operator()(const ggml_cuda_xqueue_plan_key & k) const {
        return std::hash<const void *>()(k.first) ^ (std::hash<int64_t>()(k.ne1 * 1000003 + k.n_nodes) << 1);
    }
};

// ggml_cuda_xqueue_token_class() buckets a graph's token count (decode, small batches, prefill ubatches by
// powers of two), so that decode and prefill keep separate corrections of the cost model.
constexpr int ggml_cuda_xqueue_token_classes = 12;
static int ggml_cuda_xqueue_token_class(int64_t ne1) {
    int c = 0;
    while (c + 1 < ggml_cuda_xqueue_token_classes && (int64_t(1) << c) < ne1) {
        ++c;
    }
    return c;
}

// ggml_cuda_xqueue_correction() is the median of a class's recent measured/estimated ratios; before any
// measurement 4 (the model underestimates launch-bound and small-GEMM work; too many segments for the first
// computes cost a little speed, too few cost preemption latency).
static double ggml_cuda_xqueue_correction(const std::vector<double> & ratios) {
    if (ratios.empty()) {
        return 4.0;
    }
    std::vector<double> v = ratios;
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return std::max(0.25, v[v.size() / 2]);
}

// ggml_cuda_xqueue_plan is the segmentation of one graph shape.
struct ggml_cuda_xqueue_plan {
    ggml_xqueue_tuner    tuner;       // when to cut anew, from measurements
    std::vector<int>     starts;      // first node of each segment
    std::vector<bool>    splittable;  // per segment: more than one compute node
    std::vector<double>  scale;       // per node: measured / modelled GPU time (ggml_xqueue_rescale)
    std::vector<uint8_t> norms;       // per node: starts a normalisation (a preferred cut)
    bool                 replan   = true; // cut anew at the next compute
    uint32_t             samples  = 0;    // measured computes since the plan was created
    uint32_t             version  = 0;    // counts re-plans (part of the segments' graph uids)
    uint32_t             computes = 0;    // graph computes since the last re-plan
    double               estimate_us = 0.0; // the corrected model's total for the graph at the last cut
    int                  token_class = 0;
    int64_t           ne1 = 0;           // the token count (for GGML_XQUEUE_TRACE)
    std::chrono::steady_clock::time_point last_start; // of the previous compute of this shape (trace)
    double            period_us = 0.0;   // host time between the last two computes' starts (trace)
    double            seg_us    = 0.0;   // measured GPU time of a segment, on average (0 until measured)
    double            tail_us   = 0.0;   // GPU time kept queued at the end of a compute (ggml_xqueue_tail_adapt)
};

// ggml_cuda_xqueue_segments holds a context's plans and its timing events (compute thread only).
struct ggml_cuda_xqueue_segments {
    std::unordered_map<ggml_cuda_xqueue_plan_key, ggml_cuda_xqueue_plan, ggml_cuda_xqueue_plan_key_hash> plans;
    std::vector<cudaEvent_t> events; // events[k] before segment k, events[n] after the last one
    // measured / estimated GPU time of whole computes, per token-count class (ggml_cuda_xqueue_token_class):
    // the first plan of a new graph shape starts from it (the cost model is far off for small prefill GEMMs)
    std::vector<double> ratios[ggml_cuda_xqueue_token_classes];
    // the measured compute whose events are not read yet, and its nodes' modelled costs
    ggml_cuda_xqueue_plan * pending = nullptr;
    std::vector<double>     pending_cost;
    uint32_t pending_version = 0;
    int      pending_n       = 0;
    bool     pending_valid   = false; // false when a segment was captured (its time is the capture's)
    int      pending_launch[3] = { 0, 0, 0 }; // its segments replayed as CUDA graphs, captured, launched directly
    // the last segmented compute, until the next one starts: its plan, when it returned and the GPU time it left
    // in flight (the tail of that plan is corrected from the host time until the next compute)
    ggml_cuda_xqueue_plan *               exit_plan = nullptr;
    std::chrono::steady_clock::time_point exit_time;
    double                                exit_queued_us = 0.0;
    // GGML_XQUEUE_TRACE of computes launched whole (a context nothing preempts): every 8th is timed, its line
    // written at a later compute once its events are complete. whole_stage: 0 none timed, 1 its start event is
    // recorded (the compute is being launched), 2 its end event too (the line is due)
    cudaEvent_t whole_events[2] = { nullptr, nullptr };
    int         whole_stage     = 0;
    int64_t     whole_tokens    = 0;
    uint32_t    whole_computes  = 0;
    double      whole_period_us = 0.0;
    std::chrono::steady_clock::time_point whole_last;
};

// ggml_cuda_xqueue_trace_whole() times one in eight computes launched whole (GGML_XQUEUE_TRACE): the GPU time of
// the compute and the host time since the previous compute of the context, as a line like the segments' trace.
// before: called before the compute is launched (true) or after (false).
static void ggml_cuda_xqueue_trace_whole(ggml_backend_cuda_context & ctx, ggml_cgraph * cgraph, bool before) {
    ggml_cuda_xqueue_state & s = ctx.xqueue;
    if (s.segments == nullptr) {
        s.segments = new ggml_cuda_xqueue_segments;
    }
    ggml_cuda_xqueue_segments & sg = *s.segments;
    cudaStream_t stream = ctx.stream();
    if (sg.whole_events[0] == nullptr) {
        CUDA_CHECK(cudaEventCreate(&sg.whole_events[0]));
        CUDA_CHECK(cudaEventCreate(&sg.whole_events[1]));
    }
    if (!before) {
        if (sg.whole_stage == 1) { // this compute is the timed one
            CUDA_CHECK(cudaEventRecord(sg.whole_events[1], stream));
            sg.whole_stage = 2;
        }
        return;
    }
    const auto now = std::chrono::steady_clock::now();
    if (sg.whole_computes > 0) {
        sg.whole_period_us = std::chrono::duration<double, std::micro>(now - sg.whole_last).count();
    }
    sg.whole_last = now;
    if (sg.whole_stage == 2 && cudaEventQuery(sg.whole_events[1]) == cudaSuccess) {
        float ms = 0.0f;
        if (cudaEventElapsedTime(&ms, sg.whole_events[0], sg.whole_events[1]) == cudaSuccess) {
            GGML_LOG_WARN("xqueue-trace: %s whole tokens=%lld nodes=%d gpu_us=%.0f period_us=%.0f\n", ctx.name.c_str(),
                          (long long) sg.whole_tokens, cgraph->n_nodes, 1000.0 * ms, sg.whole_period_us);
        }
        (void) cudaGetLastError();
        sg.whole_stage = 0;
    }
    if (sg.whole_stage == 0 && sg.whole_computes % 8 == 0) {
        sg.whole_tokens = std::max<int64_t>(1, cgraph->nodes[0]->ne[1]);
        CUDA_CHECK(cudaEventRecord(sg.whole_events[0], stream));
        sg.whole_stage = 1;
    }
    sg.whole_computes++;
}

// ggml_cuda_xqueue_segment_uid() gives segment k of a plan a graph uid of its own: the same for the same
// parent graph, plan and segment (so upstream reuses the captured graph without comparing properties),
// different otherwise. The top bit keeps it apart from the counter uids of ggml_graph_next_uid().
static uint64_t ggml_cuda_xqueue_segment_uid(uint64_t parent, uint32_t version, int k) {
    if (parent == 0) {
        return 0; // the parent is not reusable: upstream compares properties
    }
    return (1ull << 63) | ((parent & 0xffffffffull) << 28) | ((uint64_t) (version & 0xfff) << 16) | (uint64_t) (k & 0xffff);
}

// ggml_cuda_xqueue_collect() reads the timing of the last measured compute once it is complete, corrects the
// plan's per-node costs from it and lets the tuner decide whether to cut anew.
static void ggml_cuda_xqueue_collect(ggml_backend_cuda_context & ctx, ggml_cuda_xqueue_segments & sg) {
    if (sg.pending == nullptr) {
        return;
    }
    const cudaError_t q = cudaEventQuery(sg.events[sg.pending_n]);
    if (q == cudaErrorNotReady) {
        return;
    }
    ggml_cuda_xqueue_plan * plan = sg.pending;
    sg.pending = nullptr;
    if (q != cudaSuccess) {
        (void) cudaGetLastError();
        return;
    }
    if (!sg.pending_valid || plan->version != sg.pending_version) {
        return;
    }
    float total_ms = 0.0f;
    if (cudaEventElapsedTime(&total_ms, sg.events[0], sg.events[sg.pending_n]) != cudaSuccess) {
        (void) cudaGetLastError();
        return;
    }
    double model_us = 0.0; // the uncorrected model's total: the class ratio starts new shapes' plans
    for (double c : sg.pending_cost) {
        model_us += c;
    }
    if (model_us > 0.0) {
        std::vector<double> & r = sg.ratios[plan->token_class];
        if (r.size() >= 9) {
            r.erase(r.begin());
        }
        r.push_back(1000.0 * total_ms / model_us);
    }
    std::vector<double> measured(sg.pending_n);
    double longest_us = 0.0;
    double splittable_us = 0.0;
    for (int k = 0; k < sg.pending_n; ++k) {
        float ms = 0.0f;
        if (cudaEventElapsedTime(&ms, sg.events[k], sg.events[k + 1]) != cudaSuccess) {
            (void) cudaGetLastError();
            return;
        }
        measured[k] = 1000.0 * ms;
        longest_us = std::max(longest_us, measured[k]);
        if (plan->splittable[k]) {
            splittable_us = std::max(splittable_us, measured[k]);
        }
    }
    plan->seg_us = 1000.0 * total_ms / sg.pending_n;
    // the first sample corrects the model fully (the plan started from a class-wide guess), later ones halfway
    ggml_xqueue_rescale(plan->scale, sg.pending_cost, plan->starts, measured, plan->samples == 0 ? 1.0 : 0.5);
    plan->samples++;
    const double budget = (double) ggml_xqueue_get_knobs().segment_us;
    const int recut = (int) ggml_xqueue_cuts(ggml_xqueue_scaled(sg.pending_cost, plan->scale), plan->norms,
                                             ggml_xqueue_target(budget)).size();
    if (ggml_xqueue_get_knobs().trace) {
        // GPU time of the compute against the host time between computes of the shape: the difference is the
        // time the device waited for the host (a gate's wake-up, or host work between graphs)
        GGML_LOG_WARN("xqueue-trace: %s tokens=%lld segments=%d gpu_us=%.0f longest_us=%.0f splittable_us=%.0f "
                      "estimate_us=%.0f recut=%d period_us=%.0f tail_us=%.0f replayed=%d captured=%d direct=%d\n",
                      ctx.name.c_str(), (long long) plan->ne1, sg.pending_n, 1000.0 * total_ms, longest_us,
                      splittable_us, plan->estimate_us, recut, plan->period_us, plan->tail_us, sg.pending_launch[0],
                      sg.pending_launch[1], sg.pending_launch[2]);
    }
    if (plan->tuner.sample(splittable_us, recut, budget)) {
        GGML_LOG_DEBUG("%s: %s: %d segments, cut anew (longest splittable %.0f us, budget %.0f us, %d at the "
                       "corrected costs)\n", __func__, ctx.name.c_str(), plan->tuner.n_seg, splittable_us, budget, recut);
        plan->replan = true;
    }
}

// ggml_cuda_xqueue_compute_segments() runs cgraph as its plan's segments, one gate each.
static void ggml_cuda_xqueue_compute_segments(ggml_backend_cuda_context & ctx, ggml_cgraph * cgraph,
                                              ggml_cuda_xqueue_part_fn part) {
    ggml_cuda_xqueue_state & s = ctx.xqueue;
    if (s.segments == nullptr) {
        s.segments = new ggml_cuda_xqueue_segments;
    }
    ggml_cuda_xqueue_segments & sg = *s.segments;
    ggml_cuda_xqueue_collect(ctx, sg);
    static std::atomic<bool> said_no_graphs{false};
#ifdef USE_CUDA_GRAPH
    static const bool graphs_disabled = getenv("GGML_CUDA_DISABLE_GRAPHS") != nullptr;
    const bool graphs = !graphs_disabled && ggml_cuda_info().devices[ctx.device].cc >= GGML_CUDA_CC_VOLTA;
#else
    const bool graphs = false;
#endif
    if (!graphs && !said_no_graphs.exchange(true)) {
        GGML_LOG_WARN("%s: no CUDA graphs (built without them, disabled, or the GPU is older than Volta): "
                      "preemptible contexts launch their segments directly, one gate each\n", __func__);
    }

    const ggml_cuda_xqueue_plan_key key = { cgraph->nodes[0], cgraph->n_nodes, cgraph->nodes[0]->ne[1] };
    ggml_cuda_xqueue_plan & plan = sg.plans[key];
    const double budget = (double) ggml_xqueue_get_knobs().segment_us;
    std::vector<double> cost; // the model's costs of this compute, when it is cut or measured
    if (plan.replan) {
        cost = ggml_xqueue_costs(cgraph);
        if (plan.scale.empty()) { // a new shape: the class's measured/modelled ratio until its own is measured
            plan.ne1         = key.ne1;
            plan.token_class = ggml_cuda_xqueue_token_class(key.ne1);
            plan.scale.assign(cost.size(), ggml_cuda_xqueue_correction(sg.ratios[plan.token_class]));
            plan.norms = ggml_xqueue_norms(cgraph);
        }
        const std::vector<double> scaled = ggml_xqueue_scaled(cost, plan.scale);
        plan.estimate_us = 0.0;
        for (double c : scaled) {
            plan.estimate_us += c;
        }
        plan.starts       = ggml_xqueue_cuts(scaled, plan.norms, ggml_xqueue_target(budget));
        plan.splittable   = ggml_xqueue_splittable(cost, plan.starts);
        plan.tuner.n_seg  = (int) plan.starts.size();
        plan.replan       = false;
        plan.version++;
        plan.computes = 0;
    }
    const int n = (int) plan.starts.size();
    const ggml_xqueue_knobs & knobs = ggml_xqueue_get_knobs();
    if (knobs.hold_device) {
        // Level 2: launched ahead up to GGML_XQUEUE_AHEAD segments, and to about ggml_xqueue_ahead_nodes nodes
        // (a segment launched directly is a kernel per node; a held stream's launch queue must not fill up)
        s.held_on_device = s.group.set_level(ggml_xqueue_level_ahead(knobs.ahead, cgraph->n_nodes, n));
    }
    // GGML_XQUEUE_TAIL_US (off: no work); at Level 2 the gates do not hold the host back, there is no tail to keep
    const bool tail = knobs.tail_us > 0 && key.ne1 >= ggml_xqueue_tail_tokens && !s.held_on_device;
    if (sg.exit_plan != nullptr) { // the host time since the last segmented compute returned corrects its tail
        const double host_us =
            std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - sg.exit_time).count();
        ggml_xqueue_tail_adapt(sg.exit_plan->tail_us, host_us, sg.exit_queued_us, (double) knobs.tail_us);
        sg.exit_plan = nullptr;
    }
    const double seg_us = plan.seg_us > 0.0 ? plan.seg_us : budget;
    const int    tail_n = tail ? ggml_xqueue_tail_segments(plan.tail_us, seg_us, knobs.window, n) : 0;
    if (knobs.trace) { // the host's period between computes of this shape, for the trace only
        const auto now = std::chrono::steady_clock::now();
        if (plan.computes > 0) {
            plan.period_us = std::chrono::duration<double, std::micro>(now - plan.last_start).count();
        }
        plan.last_start = now;
    }

    // time the third to sixth compute after a re-plan, then every 16th: the first two launch a segment that
    // will replay a CUDA graph directly (upstream's warm-up) and then capture it, which is not its time
    const bool measure = sg.pending == nullptr && plan.computes >= 2 && (plan.computes < 6 || plan.computes % 16 == 0);
    plan.computes++;
    cudaStream_t stream = ctx.stream();
    if (measure) {
        if (cost.empty()) {
            cost = ggml_xqueue_costs(cgraph);
        }
        sg.pending_cost = std::move(cost);
        while ((int) sg.events.size() < n + 1) {
            cudaEvent_t ev = nullptr;
            CUDA_CHECK(cudaEventCreate(&ev));
            sg.events.push_back(ev);
        }
        CUDA_CHECK(cudaEventRecord(sg.events[0], stream));
    }
    bool captured = false;
    int  launched[3] = { 0, 0, 0 }; // of a measured compute: segments replayed, captured, launched directly
    for (int k = 0; k < n; ++k) {
        const int i0 = plan.starts[k];
        const int i1 = k + 1 < n ? plan.starts[k + 1] : cgraph->n_nodes;
        ggml_cgraph view = ggml_graph_view(cgraph, i0, i1);
        view.uid = ggml_cuda_xqueue_segment_uid(cgraph->uid, plan.version, k);
#ifdef USE_CUDA_GRAPH
        ggml_cuda_graph * graph = measure ? ctx.cuda_graph(view.nodes[0]) : nullptr;
        const bool warm_before = graph != nullptr && graph->warmup_complete;
        const bool inst_before = graph != nullptr && graph->instance != nullptr;
#endif
        if (k == n - tail_n) { // the tail: the last tail_n segments pass their gates at once
            s.group.set_window(knobs.window + tail_n, 1);
        }
        s.epoch++; // the segment's first gate admits it, later ones return at once
        part(&ctx, &view);
        s.group.unit_launched(); // a preemption from here to the next gate is seen to drain by the core
#ifdef USE_CUDA_GRAPH
        if (graph != nullptr) {
            const bool cap = (!warm_before && graph->warmup_complete) || (!inst_before && graph->instance != nullptr);
            captured = captured || cap;
            launched[cap ? 1 : graph->warmup_complete && graph->instance != nullptr ? 0 : 2]++;
        }
#else
        launched[2] += measure;
#endif
        if (measure) {
            CUDA_CHECK(cudaEventRecord(sg.events[k + 1], stream));
        }
    }
    if (tail) { // the host time until the next segmented compute corrects this shape's tail
        sg.exit_plan      = &plan;
        sg.exit_time      = std::chrono::steady_clock::now();
        sg.exit_queued_us = ggml_xqueue_tail_queued_us(tail_n, seg_us, knobs.window);
    }
    if (measure) {
        sg.pending         = &plan;
        sg.pending_version = plan.version;
        sg.pending_n       = n;
        sg.pending_valid   = !captured;
        std::copy(launched, launched + 3, sg.pending_launch);
    }
}

void ggml_cuda_xqueue_destroy(ggml_backend_cuda_context & ctx) {
    ggml_cuda_xqueue_state & s = ctx.xqueue;
    s.group.destroy_all();
    memset(s.xq, 0, sizeof(s.xq));
    if (s.segments != nullptr) {
        for (cudaEvent_t ev : s.segments->events) {
            (void) cudaEventDestroy(ev);
        }
        for (cudaEvent_t ev : s.segments->whole_events) {
            if (ev != nullptr) {
                (void) cudaEventDestroy(ev);
            }
        }
        delete s.segments;
        s.segments = nullptr;
    }
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

// ggml_cuda_xqueue_preemptible() tells whether another queue may preempt the context of s now, from one
// scheduler snapshot: under HPF a live queue of higher priority; under WRR or an app-managed scheduler
// always (time slices, or the program suspends queues); under NONE never.
static bool ggml_cuda_xqueue_preemptible_now(ggml_cuda_xqueue_state & s);

// ggml_cuda_xqueue_preemptible() is ggml_cuda_xqueue_preemptible_now(), read again only when the scheduler's
// generation changed (a queue created or destroyed, a hint, a policy switch): no snapshot per compute.
static bool ggml_cuda_xqueue_preemptible(ggml_cuda_xqueue_state & s) {
    const uint64_t gen = XSchedGeneration();
    if (gen == 0 || gen != s.threat_generation) {
        s.threat_preemptible = ggml_cuda_xqueue_preemptible_now(s);
        s.threat_generation  = gen;
    }
    return s.threat_preemptible;
}

static bool ggml_cuda_xqueue_preemptible_now(ggml_cuda_xqueue_state & s) {
    s.threat_policy = kPolicyNone;
    if (s.group.empty()) {
        return false; // no XQueue (platform refused): nothing to preempt, upstream behaviour
    }
    XSchedSnapshotInfo info = {};
    size_t n = 0;
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (XSchedSnapshot(&info, s.snapshot_rows.data(), s.snapshot_rows.size(), &n) != kXSchedSuccess) {
            return true; // cannot tell: stay preemptible
        }
        if (n >= info.n_queues) {
            break;
        }
        s.snapshot_rows.resize(info.n_queues + 8); // more queues than rows: grow and read again
    }
    if (n < info.n_queues) {
        return true;
    }
    s.threat_policy = info.policy;
    if (info.scheduler == kSchedulerGlobal) {
        // joined to xschedd: a more important queue of another process makes this context preemptible; the
        // queues of this process are checked below as under the local scheduler
        int32_t others = 0;
        if (XSchedGlobalMaxPriority(&others) == kXSchedSuccess && others > s.group.get_priority()) {
            return true;
        }
    } else if (info.scheduler != kSchedulerLocal) {
        return true; // app-managed: the program may suspend any queue at any time
    }
    if (info.policy == kPolicyNone) {
        return false;
    }
    if (info.policy != kPolicyHighestPriorityFirst) {
        return true;
    }
    const int32_t own = s.group.get_priority();
    for (size_t i = 0; i < n; ++i) {
        if (s.snapshot_rows[i].priority > own && !s.group.owns(s.snapshot_rows[i].handle)) {
            return true;
        }
    }
    return false;
}

static const char * ggml_cuda_xqueue_launch_name(ggml_cuda_xqueue_launch l) {
    switch (l) {
        case GGML_CUDA_XQUEUE_LAUNCH_WHOLE:   return "whole graph, one gate";
        case GGML_CUDA_XQUEUE_LAUNCH_SEGMENT: return "segments, one gate each";
        case GGML_CUDA_XQUEUE_LAUNCH_NODE:    return "one gate per node, no CUDA graphs";
    }
    return "?";
}

// ggml_cuda_xqueue_wanted_hw_priority() is the CUDA stream priority the context's streams should have now:
// its priority's (hw_priority) with GGML_XQUEUE_STREAM_PRIORITY=on, or with auto under the policy NONE (from
// the last snapshot); the default priority otherwise.
static int ggml_cuda_xqueue_wanted_hw_priority(ggml_cuda_xqueue_state & s) {
    switch (ggml_xqueue_get_knobs().stream_priority) {
        case GGML_XQUEUE_STREAM_PRIORITY_ON:   return s.hw_priority.load(std::memory_order_relaxed);
        case GGML_XQUEUE_STREAM_PRIORITY_OFF:  return 0;
        case GGML_XQUEUE_STREAM_PRIORITY_AUTO: break;
    }
    return s.threat_policy == kPolicyNone ? s.hw_priority.load(std::memory_order_relaxed) : 0;
}

void ggml_cuda_xqueue_compute(ggml_backend_cuda_context & ctx, ggml_cgraph * cgraph, ggml_cuda_xqueue_part_fn part) {
    ggml_cuda_xqueue_state & s = ctx.xqueue;

    ctx.stream(ctx.device, 0); // stream 0 and its XQueue exist before the first gate
    const bool threat      = ggml_cuda_xqueue_preemptible(s); // also reads the policy (cached per generation)
    const bool preemptible = cgraph->n_nodes > 0 && threat;
    const int hw = ggml_cuda_xqueue_wanted_hw_priority(s);
    if (hw != s.applied_hw_priority) {
        // recreates the streams and their XQueues (a new scheduler generation: the next compute reads again)
        ggml_cuda_xqueue_apply_hw_priority(ctx, hw);
        s.applied_hw_priority = hw;
    }

    const ggml_xqueue_knobs & knobs = ggml_xqueue_get_knobs();
    ggml_cuda_xqueue_launch launch = GGML_CUDA_XQUEUE_LAUNCH_WHOLE;
    if (preemptible) {
        switch (knobs.preempt) {
            case GGML_XQUEUE_PREEMPT_SEGMENT: launch = GGML_CUDA_XQUEUE_LAUNCH_SEGMENT; break;
            case GGML_XQUEUE_PREEMPT_NODE:    launch = GGML_CUDA_XQUEUE_LAUNCH_NODE;    break;
            case GGML_XQUEUE_PREEMPT_GRAPH:   launch = GGML_CUDA_XQUEUE_LAUNCH_WHOLE;   break;
        }
        if (launch == GGML_CUDA_XQUEUE_LAUNCH_SEGMENT && !ctx.stream_context().concurrent_events.empty()) {
            // GGML_CUDA_GRAPH_OPT=1 forks streams inside the graph: a segment must not split a fork
            static std::atomic<bool> warned{false};
            if (!warned.exchange(true)) {
                GGML_LOG_WARN("%s: concurrent streams (GGML_CUDA_GRAPH_OPT) cannot be segmented: preemptible "
                              "contexts pass one gate per node without CUDA graphs\n", __func__);
            }
            launch = GGML_CUDA_XQUEUE_LAUNCH_NODE;
        }
    }
    if (launch != s.launch) {
        GGML_LOG_DEBUG("%s: %s: %s\n", __func__, ctx.name.c_str(), ggml_cuda_xqueue_launch_name(launch));
        s.launch = launch;
    }
    // two segments in flight by default: one running, one queued behind it
    s.group.set_window(launch == GGML_CUDA_XQUEUE_LAUNCH_SEGMENT ? knobs.window : 0, launch == GGML_CUDA_XQUEUE_LAUNCH_SEGMENT ? 1 : 0);
    // segments held on the device (Level 2, GGML_XQUEUE_HOLD=device, off by default: run 9 hung at the first
    // prefill preemption): set per compute by ggml_cuda_xqueue_compute_segments, Level 1 otherwise
    if (launch != GGML_CUDA_XQUEUE_LAUNCH_SEGMENT || !knobs.hold_device) {
        s.held_on_device = s.group.set_level(0);
    }
    s.graphs_allowed = launch != GGML_CUDA_XQUEUE_LAUNCH_NODE;
    s.coarse         = launch != GGML_CUDA_XQUEUE_LAUNCH_NODE;

    if (launch == GGML_CUDA_XQUEUE_LAUNCH_SEGMENT) {
        ggml_cuda_xqueue_compute_segments(ctx, cgraph, part);
    } else {
        if (s.segments != nullptr) {
            s.segments->exit_plan = nullptr; // no tail to correct across a compute launched otherwise
        }
        const bool trace_whole = knobs.trace && launch == GGML_CUDA_XQUEUE_LAUNCH_WHOLE && cgraph->n_nodes > 0;
        if (trace_whole) {
            ggml_cuda_xqueue_trace_whole(ctx, cgraph, true);
        }
        s.epoch++;
        part(&ctx, cgraph);
        if (trace_whole) {
            ggml_cuda_xqueue_trace_whole(ctx, cgraph, false);
        }
        if (launch != GGML_CUDA_XQUEUE_LAUNCH_WHOLE || ggml_cuda_xqueue_preemptible(s)) {
            s.group.unit_launched();
        }
    }
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
    ggml_backend_cuda_context * ctx = ggml_cuda_xqueue_ctx(backend);
    if (!active) {
        // work launched since the last synchronize (e.g. a prompt whose last batch had no output) would keep
        // the queues Ready after the scope closes, holding lower priorities back: wait for it and say so
        ggml_cuda_xqueue_state & s = ctx->xqueue;
        for (int d = 0; d < GGML_CUDA_MAX_DEVICES; ++d) {
            for (int i = 0; i < GGML_CUDA_MAX_STREAMS; ++i) {
                if (ctx->streams[d][i] != nullptr && s.xq[d][i] != 0) {
                    CUDA_CHECK(cudaStreamSynchronize(ctx->streams[d][i]));
                    ggml_xqueue_synchronized(s.xq[d][i]);
                }
            }
        }
    }
    ctx->xqueue.group.set_active(active);
}

void ggml_backend_cuda_xqueue_set_gates_released(ggml_backend_t backend, bool released) {
    ggml_cuda_xqueue_ctx(backend)->xqueue.group.set_gates_released(released);
}

void ggml_backend_cuda_xqueue_set_queue_name(ggml_backend_t backend, const char * name) {
    ggml_cuda_xqueue_ctx(backend)->xqueue.group.set_prefix(name);
}

#endif // GGML_USE_XQUEUE
