// ggml-xqueue-plan.h: cutting a ggml graph into segments of bounded GPU time, so that a context that can be
// preempted keeps CUDA graphs (one graph per segment) and is still preempted within a bounded time (one gate
// per segment). Nothing here calls CUDA: the planning is tested on the CPU (tests/test_segment_plan.py).
//
// A segment is a run of consecutive graph nodes. A plan cuts a graph greedily into segments of at most a
// target cost each (85 % of the budget), where the cost of a node is a model of its GPU time
// (ggml_xqueue_node_cost) times a per-node factor corrected from the measured GPU time of the segments
// (ggml_xqueue_rescale), preferring the start of a normalisation (a sublayer) as a cut. The model only has to
// be right at the first computes of a graph; the tuner (ggml_xqueue_tuner) cuts anew when a segment keeps
// measuring over the budget or when the corrected costs would need clearly fewer segments.
#pragma once

#include "ggml.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

// ggml_xqueue_is_compute_node() tells whether the CUDA backend launches work for node (not a view, a
// reshape or a node it skips).
static inline bool ggml_xqueue_is_compute_node(const ggml_tensor * t) {
    if (ggml_is_empty(t) || (t->flags & GGML_TENSOR_FLAG_COMPUTE) == 0) {
        return false;
    }
    switch (t->op) {
        case GGML_OP_NONE:
        case GGML_OP_RESHAPE:
        case GGML_OP_TRANSPOSE:
        case GGML_OP_VIEW:
        case GGML_OP_PERMUTE:
            return false;
        default:
            return true;
    }
}

// ggml_xqueue_node_cost() estimates the GPU time of node in microseconds on a Hopper-class GPU: a fixed
// per-kernel cost plus the larger of its memory traffic over the bandwidth and its arithmetic over the
// matrix rate. 0 for a node that launches nothing.
static inline double ggml_xqueue_node_cost(const ggml_tensor * t) {
    constexpr double kernel_us      = 2.5;   // launch gap and tail of one kernel inside a CUDA graph
    constexpr double bytes_per_us   = 3.0e6; // ~3 TB/s
    constexpr double flops_per_us   = 4.0e8; // ~400 TFLOP/s (quantized matrix kernels)
    if (!ggml_xqueue_is_compute_node(t)) {
        return 0.0;
    }
    double bytes = (double) ggml_nbytes(t);
    for (int j = 0; j < GGML_MAX_SRC; ++j) {
        if (t->src[j] != nullptr) {
            bytes += (double) ggml_nbytes(t->src[j]);
        }
    }
    double flops = (double) ggml_nelements(t);
    const ggml_tensor * a = t->src[0];
    const ggml_tensor * b = t->src[1];
    switch (t->op) {
        case GGML_OP_MUL_MAT:
            // a: [K, M, ...] weights, b: [K, N, B2, B3] activations
            flops = 2.0 * (double) a->ne[0] * (double) a->ne[1] * (double) b->ne[1] * (double) b->ne[2] * (double) b->ne[3];
            break;
        case GGML_OP_MUL_MAT_ID: {
            // a: [K, M, n_expert], ids: [n_used, n_tokens]; only the used experts' weights are read
            const ggml_tensor * ids = t->src[2];
            const double used = ids != nullptr ? (double) ids->ne[0] * (double) ids->ne[1] : 1.0;
            flops = 2.0 * (double) a->ne[0] * (double) a->ne[1] * used;
            const double expert_bytes = (double) ggml_nbytes(a) / (double) std::max<int64_t>(1, a->ne[2]);
            bytes += std::min((double) ggml_nbytes(a), expert_bytes * used) - (double) ggml_nbytes(a);
            break;
        }
        case GGML_OP_FLASH_ATTN_EXT:
            // q: [D, n_q, H, B], k: [D, n_kv, H_kv, B]
            flops = 4.0 * (double) a->ne[0] * (double) a->ne[1] * (double) a->ne[2] * (double) a->ne[3] * (double) b->ne[1];
            break;
        default:
            break;
    }
    return kernel_us + std::max(bytes / bytes_per_us, flops / flops_per_us);
}

// ggml_xqueue_costs() returns the estimated cost of every node of g.
static inline std::vector<double> ggml_xqueue_costs(ggml_cgraph * g) {
    const int n = ggml_graph_n_nodes(g);
    std::vector<double> c(n);
    for (int i = 0; i < n; ++i) {
        c[i] = ggml_xqueue_node_cost(ggml_graph_node(g, i));
    }
    return c;
}

// ggml_xqueue_norms() marks the nodes of g that start a normalisation (RMS_NORM, NORM): the start of a
// sublayer, where upstream's fusions begin.
static inline std::vector<uint8_t> ggml_xqueue_norms(ggml_cgraph * g) {
    const int n = ggml_graph_n_nodes(g);
    std::vector<uint8_t> out(n);
    for (int i = 0; i < n; ++i) {
        const ggml_op op = ggml_graph_node(g, i)->op;
        out[i] = op == GGML_OP_RMS_NORM || op == GGML_OP_NORM;
    }
    return out;
}

// ggml_xqueue_cuts() returns the first node of each segment (starting with 0) when the nodes of costs cost are
// cut greedily into segments of at most target cost each: a segment grows node by node and is cut before the
// compute node that would take it over target. If a norm start (norms, ggml_xqueue_norms) lies in the segment
// after at least 60 % of target, the cut goes there instead, so that no fused group is split. A node costlier
// than target is a segment of its own. Nodes that launch nothing (cost 0) stay with the node before them.
static inline std::vector<int> ggml_xqueue_cuts(const std::vector<double> & cost, const std::vector<uint8_t> & norms,
                                                double target) {
    const int n = (int) cost.size();
    std::vector<double> prefix(n + 1, 0.0); // prefix[i] = cost of the nodes before i
    for (int i = 0; i < n; ++i) {
        prefix[i + 1] = prefix[i] + cost[i];
    }
    std::vector<int> starts = { 0 };
    int first = -1; // the first compute node of the current segment
    int norm  = -1; // the last norm start of the current segment after its first compute node
    for (int i = 0; i < n; ++i) {
        if (cost[i] <= 0.0) {
            continue;
        }
        while (first >= 0 && first < i && prefix[i + 1] - prefix[starts.back()] > target) {
            int cut = i;
            if (norm > first && prefix[norm] - prefix[starts.back()] >= 0.6 * target) {
                cut = norm;
            }
            starts.push_back(cut);
            first = cut;
            norm  = -1;
        }
        if (first < 0) {
            first = i;
        }
        if (i > first && i < (int) norms.size() && norms[i]) {
            norm = i;
        }
    }
    return starts;
}

// ggml_xqueue_scaled() is cost[i] * scale[i] for every node (scale: the plan's measured corrections).
static inline std::vector<double> ggml_xqueue_scaled(const std::vector<double> & cost, const std::vector<double> & scale) {
    std::vector<double> out(cost.size());
    for (size_t i = 0; i < cost.size(); ++i) {
        out[i] = cost[i] * (i < scale.size() ? scale[i] : 1.0);
    }
    return out;
}

// ggml_xqueue_rescale() corrects the per-node factors scale from one measured compute: segment k (nodes
// starts[k] up to the next start) took measured[k] us where the model times scale predicted est_k; its nodes'
// factors are multiplied by measured[k] / est_k, clamped to [1/16, 16], to the power damping (1: take the
// measurement as it is; 0.5: halfway, in logarithms, against noise). Segments without compute nodes are left.
static inline void ggml_xqueue_rescale(std::vector<double> & scale, const std::vector<double> & cost,
                                       const std::vector<int> & starts, const std::vector<double> & measured,
                                       double damping) {
    const int n = (int) cost.size();
    scale.resize(n, 1.0);
    for (size_t k = 0; k < starts.size() && k < measured.size(); ++k) {
        const int end = k + 1 < starts.size() ? starts[k + 1] : n;
        double est = 0.0;
        for (int i = starts[k]; i < end; ++i) {
            est += cost[i] * scale[i];
        }
        if (est <= 0.0 || measured[k] <= 0.0) {
            continue;
        }
        const double r = std::pow(std::min(16.0, std::max(1.0 / 16.0, measured[k] / est)), damping);
        for (int i = starts[k]; i < end; ++i) {
            scale[i] *= r;
        }
    }
}

// ggml_xqueue_target() is the cost a segment is cut to: 85 % of the budget, so that measured noise stays
// under the budget.
static inline double ggml_xqueue_target(double budget_us) {
    return 0.85 * budget_us;
}

// ggml_xqueue_tuner decides when a plan is cut anew, from two figures of each measured compute (a sample):
// its longest segment that more cuts could shorten (more than one compute node), and the number of segments a
// new cut at the target would give with the corrected costs. Decisions use the last three samples: two whose
// splittable longest exceeds 115 % of the budget re-plan (a second look, because a sample taken next to a more
// important context's work runs slower); three that would each need at most 80 % of the current count re-plan
// with fewer segments (every segment costs a gate and a graph launch). A single node longer than the budget
// cannot be cut: it is a segment of its own and triggers nothing.
struct ggml_xqueue_tuner {
    int    n_seg = 1; // segments of the current plan
    double splittable[3] = { 0.0, 0.0, 0.0 };
    int    recut[3]      = { 0, 0, 0 };
    int    n_recent = 0;

    // sample() takes one compute's figures; true when the plan should be cut anew (the samples start over).
    bool sample(double longest_splittable_us, int recut_segments, double budget_us) {
        for (int i = 2; i > 0; --i) {
            splittable[i] = splittable[i - 1];
            recut[i]      = recut[i - 1];
        }
        splittable[0] = longest_splittable_us;
        recut[0]      = recut_segments;
        n_recent      = std::min(3, n_recent + 1);
        double lo   = splittable[0];
        int    most = recut[0];
        for (int i = 1; i < n_recent; ++i) {
            lo   = std::min(lo, splittable[i]);
            most = std::max(most, recut[i]);
        }
        const bool over  = n_recent >= 2 && lo > 1.15 * budget_us;
        const bool fewer = n_recent >= 3 && most <= 0.8 * n_seg;
        if (!over && !fewer) {
            return false;
        }
        n_recent = 0;
        return true;
    }
};

// ggml_xqueue_splittable() tells, for each segment of starts, whether it holds more than one compute node.
static inline std::vector<bool> ggml_xqueue_splittable(const std::vector<double> & cost, const std::vector<int> & starts) {
    std::vector<bool> out(starts.size());
    for (size_t k = 0; k < starts.size(); ++k) {
        const int end = k + 1 < starts.size() ? starts[k + 1] : (int) cost.size();
        int n = 0;
        for (int i = starts[k]; i < end; ++i) {
            n += cost[i] > 0.0;
        }
        out[k] = n > 1;
    }
    return out;
}

// The tail: GPU work kept queued across the end of a compute. Between two computes the host runs llama's work
// for the next ubatch (the graph, the allocation, the inputs such as the attention mask) before it launches
// again; upstream overlaps that with the GPU work it launched ahead, a preemptible context has only its window
// of segments in flight then, and the device waits for the host. A plan keeps a tail: that much GPU time is
// launched without waiting at the end of a compute (its last segments pass their gates at once), adapted to
// the host time between computes and bounded by GGML_XQUEUE_TAIL_US, which is also the most a preemption can
// wait for it.

// ggml_xqueue_tail_tokens is the smallest token count of a graph that keeps a tail: prefill ubatches, whose host
// work between computes (the attention mask above all) outlasts the window. Decode steps do not: the window
// covers their host gaps (run 7: the normal instance decodes at 0.98-1.10 of vanilla without a tail), and a tail
// there only lengthens their preemptions (run 8).
constexpr int64_t ggml_xqueue_tail_tokens = 32;

// ggml_xqueue_tail_segments() is how many of a compute's n last segments pass their gates at once so that
// about tail_us of GPU time is in flight at its end, when a segment takes seg_us and `window` segments are in
// flight anyway (the oldest of them half done); at most n - 1 (the first segment is always gated).
static inline int ggml_xqueue_tail_segments(double tail_us, double seg_us, int64_t window, int n) {
    if (tail_us <= 0.0 || seg_us <= 0.0 || n <= 1) {
        return 0;
    }
    const double extra = tail_us / seg_us - ((double) window - 0.5);
    if (extra <= 0.0) {
        return 0;
    }
    return std::min(n - 1, (int) std::ceil(extra));
}

// ggml_xqueue_tail_queued_us() is the GPU time in flight when a compute returns with m tail segments (what the
// host's work before the next compute can overlap).
static inline double ggml_xqueue_tail_queued_us(int m, double seg_us, int64_t window) {
    return ((double) window - 0.5 + (double) m) * seg_us;
}

// ggml_xqueue_tail_adapt() corrects a plan's tail from one gap: host_us passed on the host between the end of a
// compute of the plan and the start of the next compute, while queued_us of GPU time was in flight at that
// end. When the gap outlasts the queued work by more than the margin (500 us: the synchronization and the
// input copies that follow the host's work are in every gap, vanilla's too), the device waited: the tail
// becomes the whole gap (at most the bound). Otherwise the queued work covered the host: the tail shrinks by
// 5 %, so that it follows a gap that shrinks. A gap of more than 20 ms (or twice the bound) beyond the queued
// work is a pause (nothing to compute), not host work, and changes nothing. (Run 8 measured an earlier rule that
// took twice the bound alone: with a bound of 1500 us the 4 ms gaps between 8B prefill ubatches counted as
// pauses.) The tail stays within [0, cap_us].
static inline void ggml_xqueue_tail_adapt(double & tail_us, double host_us, double queued_us, double cap_us) {
    constexpr double margin_us = 500.0;
    constexpr double pause_us  = 20000.0;
    if (cap_us <= 0.0) {
        tail_us = 0.0;
        return;
    }
    if (host_us > std::max(pause_us, 2.0 * cap_us) + queued_us) {
        return;
    }
    if (host_us > queued_us + margin_us) {
        tail_us = std::min(cap_us, std::max(tail_us, host_us));
    } else {
        tail_us = std::max(0.0, 0.95 * tail_us - 1.0);
    }
}

// ggml_xqueue_ahead_nodes: at Level 2 (GGML_XQUEUE_HOLD=device), about how many nodes a context may have launched
// ahead of the device: a segment launched directly is a kernel per node, and behind a held barrier they all wait in
// the stream's launch queue, which must not fill up (a launch call would then block until the resume).
constexpr int ggml_xqueue_ahead_nodes = 256;

// ggml_xqueue_level_ahead() is Level 2's in-flight limit in segments for a graph of n_nodes nodes cut into n_seg
// segments: at most cap (GGML_XQUEUE_AHEAD), at most ggml_xqueue_ahead_nodes nodes' worth, at least 2 (or cap).
static inline int64_t ggml_xqueue_level_ahead(int64_t cap, int n_nodes, int n_seg) {
    const int64_t per_seg = std::max<int64_t>(1, n_seg > 0 ? (int64_t) n_nodes / n_seg : (int64_t) n_nodes);
    return std::max<int64_t>(std::min<int64_t>(2, cap), std::min<int64_t>(cap, ggml_xqueue_ahead_nodes / per_seg));
}
