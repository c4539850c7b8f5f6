// ggml-xqueue-plan.h: cutting a ggml graph into segments of bounded GPU time, so that a context that can be
// preempted keeps CUDA graphs (one graph per segment) and is still preempted within a bounded time (one gate
// per segment). Nothing here calls CUDA: the planning is tested on the CPU (tests/test_segment_plan.py).
//
// A segment is a run of consecutive graph nodes. The plan of a graph is its number of segments; the cuts
// are placed at equal estimated cost (ggml_xqueue_node_cost, a model of a node's GPU time), preferring the
// start of a normalisation (a sublayer) near each ideal cut. The tuner (ggml_xqueue_tuner) corrects the
// number of segments from the measured GPU time of the segments, so the model only needs the right
// proportions: a segment that keeps measuring over the budget adds segments, a plan whose segments all
// stay well under it loses some.
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

// ggml_xqueue_cuts() returns the first node of each segment (starting with 0) when g is cut into n_seg
// segments of about equal estimated cost. A cut goes before a compute node; within 15 % of a segment's
// share around the ideal point, the start of an RMS_NORM or NORM wins (the start of a sublayer: upstream's
// fusions begin there, so no fused group is split). Fewer segments come back when g has fewer compute nodes.
static inline std::vector<int> ggml_xqueue_cuts(ggml_cgraph * g, const std::vector<double> & cost, int n_seg) {
    const int n = ggml_graph_n_nodes(g);
    std::vector<double> prefix(n + 1, 0.0); // prefix[i] = cost of the nodes before i
    for (int i = 0; i < n; ++i) {
        prefix[i + 1] = prefix[i] + cost[i];
    }
    const double total = prefix[n];
    std::vector<int> starts = { 0 };
    if (n_seg <= 1 || total <= 0.0) {
        return starts;
    }
    const double share = total / n_seg;
    int j = 1;
    for (int k = 1; k < n_seg; ++k) {
        const double target = share * k;
        const double window = 0.15 * share;
        while (j < n && prefix[j] < target - window) {
            ++j;
        }
        int best = -1;
        int best_norm = -1;
        double d_best = INFINITY;
        double d_norm = INFINITY;
        for (int m = j; m < n && prefix[m] <= target + window; ++m) {
            if (cost[m] <= 0.0) {
                continue;
            }
            const double d = std::fabs(prefix[m] - target);
            if (d < d_best) {
                d_best = d;
                best   = m;
            }
            const ggml_op op = ggml_graph_node(g, m)->op;
            if ((op == GGML_OP_RMS_NORM || op == GGML_OP_NORM) && d < d_norm) {
                d_norm    = d;
                best_norm = m;
            }
        }
        if (best < 0) { // no compute node near the ideal point (one long node spans it): the next one after it
            best = j;
            while (best < n && (prefix[best] < target || cost[best] <= 0.0)) {
                ++best;
            }
        }
        const int cut = best_norm >= 0 ? best_norm : best;
        if (cut > starts.back() && cut < n) {
            starts.push_back(cut);
        }
    }
    return starts;
}

// ggml_xqueue_initial_segments() is the number of segments of a graph of estimated cost total_us before
// anything was measured: enough for each to stay at 85 % of the budget.
static inline int ggml_xqueue_initial_segments(double total_us, double budget_us) {
    return std::max(1, (int) std::ceil(total_us / (0.85 * budget_us)));
}

// ggml_xqueue_tuner keeps the number of segments of one graph right for the budget, from two figures of
// each measured compute (a sample): its longest segment that more cuts could shorten (more than one compute
// node) and its longest segment of all. Decisions use the last three samples: two whose splittable longest
// exceeds 115 % of the budget raise the count (a second look, because a sample taken next to a more
// important context's work runs slower); three whose longest of all stay under 50 % lower it. A single node
// longer than the budget cannot be cut, so it neither raises the count nor lets it fall around it. The new
// count aims at 85 % of the budget for the segments as measured (equal shares scale with 1 / count), at
// most max_seg.
struct ggml_xqueue_tuner {
    int    n_seg   = 1;
    int    max_seg = 1 << 20;
    double splittable[3] = { 0.0, 0.0, 0.0 };
    double longest[3]    = { 0.0, 0.0, 0.0 };
    int    n_recent = 0;

    // sample() takes one compute's figures; returns true when n_seg changed.
    bool sample(double longest_splittable_us, double longest_us, double budget_us) {
        for (int i = 2; i > 0; --i) {
            splittable[i] = splittable[i - 1];
            longest[i]    = longest[i - 1];
        }
        splittable[0] = longest_splittable_us;
        longest[0]    = longest_us;
        n_recent      = std::min(3, n_recent + 1);
        double lo = splittable[0];
        double hi = longest[0];
        for (int i = 1; i < n_recent; ++i) {
            lo = std::min(lo, splittable[i]);
            hi = std::max(hi, longest[i]);
        }
        int want = n_seg;
        if (n_recent >= 2 && lo > 1.15 * budget_us) {
            want = std::min(max_seg, (int) std::ceil(n_seg * lo / (0.85 * budget_us)));
        } else if (n_recent >= 3 && hi < 0.5 * budget_us && n_seg > 1) {
            want = std::max(1, (int) std::ceil(n_seg * hi / (0.85 * budget_us)));
        }
        if (want == n_seg) {
            return false;
        }
        n_seg    = want;
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

// ggml_xqueue_compute_nodes() counts the nodes that launch work.
static inline int ggml_xqueue_compute_nodes(const std::vector<double> & cost) {
    int n = 0;
    for (double c : cost) {
        n += c > 0.0;
    }
    return n;
}
