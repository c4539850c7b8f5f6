// segment_plan_test.cpp: the segment planning of the patched ggml (ggml-xqueue-plan.h) and the GGML_XQUEUE_*
// knobs (ggml-xqueue.h), on the CPU. Built and run by tests/test_segment_plan.py against the patched CPU
// build's ggml; `segment_plan_test knobs` only parses the environment and prints the result.
#include "ggml.h"
#include "ggml-xqueue-plan.h"
#include "ggml-xqueue.h"

#include <cstdio>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

static int failures = 0;
#define CHECK(cond)                                                               \
    do {                                                                          \
        if (!(cond)) {                                                            \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            ++failures;                                                           \
        }                                                                         \
    } while (0)

// Model is a llama-shaped decode or prefill graph (no data: a no_alloc context) with n_layer blocks.
struct Model {
    ggml_context * ctx = nullptr;
    ggml_cgraph *  gf  = nullptr;
    ~Model() { ggml_free(ctx); }
};

static void build(Model & m, int n_layer, int n_embd, int n_ff, int n_tokens, int n_kv) {
    ggml_init_params ip = { 256 * 1024 * 1024, nullptr, true };
    m.ctx = ggml_init(ip);
    ggml_context * c = m.ctx;
    const int head_dim = 128;
    const int n_head   = n_embd / head_dim;
    const int n_head_kv = std::max(1, n_head / 4);
    ggml_tensor * x = ggml_new_tensor_2d(c, GGML_TYPE_F32, n_embd, n_tokens);
    ggml_set_input(x);
    ggml_tensor * k_cache = ggml_new_tensor_3d(c, GGML_TYPE_F16, head_dim, n_kv, n_head_kv);
    ggml_tensor * v_cache = ggml_new_tensor_3d(c, GGML_TYPE_F16, head_dim, n_kv, n_head_kv);
    for (int il = 0; il < n_layer; ++il) {
        ggml_tensor * wn  = ggml_new_tensor_1d(c, GGML_TYPE_F32, n_embd);
        ggml_tensor * wq  = ggml_new_tensor_2d(c, GGML_TYPE_Q8_0, n_embd, n_embd);
        ggml_tensor * wo  = ggml_new_tensor_2d(c, GGML_TYPE_Q8_0, n_embd, n_embd);
        ggml_tensor * wg  = ggml_new_tensor_2d(c, GGML_TYPE_Q8_0, n_embd, n_ff);
        ggml_tensor * wu  = ggml_new_tensor_2d(c, GGML_TYPE_Q8_0, n_embd, n_ff);
        ggml_tensor * wd  = ggml_new_tensor_2d(c, GGML_TYPE_Q8_0, n_ff, n_embd);
        ggml_tensor * h = ggml_mul(c, ggml_rms_norm(c, x, 1e-6f), wn);
        ggml_tensor * q = ggml_reshape_3d(c, ggml_mul_mat(c, wq, h), head_dim, n_head, n_tokens);
        q = ggml_permute(c, q, 0, 2, 1, 3);
        ggml_tensor * a = ggml_flash_attn_ext(c, q, k_cache, v_cache, nullptr, 1.0f, 0.0f, 0.0f);
        a = ggml_reshape_2d(c, a, n_embd, n_tokens);
        x = ggml_add(c, x, ggml_mul_mat(c, wo, a));
        ggml_tensor * f = ggml_mul(c, ggml_rms_norm(c, x, 1e-6f), wn);
        f = ggml_mul(c, ggml_silu(c, ggml_mul_mat(c, wg, f)), ggml_mul_mat(c, wu, f));
        x = ggml_add(c, x, ggml_mul_mat(c, wd, f));
    }
    ggml_tensor * out = ggml_mul_mat(c, ggml_new_tensor_2d(c, GGML_TYPE_Q8_0, n_embd, 151936), x);
    m.gf = ggml_new_graph_custom(c, 16384, false);
    ggml_build_forward_expand(m.gf, out);
    for (int i = 0; i < ggml_graph_n_nodes(m.gf); ++i) {
        ggml_graph_node(m.gf, i)->flags |= GGML_TENSOR_FLAG_COMPUTE; // as ggml-backend marks them
    }
}

static double sum(const std::vector<double> & c, int a, int b) {
    double s = 0.0;
    for (int i = a; i < b; ++i) {
        s += c[i];
    }
    return s;
}

static void test_costs() {
    Model m;
    build(m, 4, 4096, 12288, 1, 512);
    const std::vector<double> c = ggml_xqueue_costs(m.gf);
    double mm = 0.0, norm = 0.0, view = -1.0;
    for (int i = 0; i < ggml_graph_n_nodes(m.gf); ++i) {
        const ggml_tensor * t = ggml_graph_node(m.gf, i);
        if (t->op == GGML_OP_MUL_MAT && t->src[0]->ne[1] == 12288) mm = c[i];
        if (t->op == GGML_OP_RMS_NORM) norm = c[i];
        if (t->op == GGML_OP_RESHAPE || t->op == GGML_OP_PERMUTE) view = c[i];
    }
    CHECK(view == 0.0);               // views launch nothing
    CHECK(norm > 0.0 && mm > 5 * norm); // a 4096x12288 Q8_0 matrix (~53 MB) against a 4096-float norm (a kernel each)
    CHECK(mm > 10.0 && mm < 100.0);   // ~53 MB at ~3 TB/s: some 18 us
    // prefill: 512 tokens make the same matrix arithmetic-bound and much longer
    Model p;
    build(p, 4, 4096, 12288, 512, 512);
    const std::vector<double> cp = ggml_xqueue_costs(p.gf);
    double mmp = 0.0;
    for (int i = 0; i < ggml_graph_n_nodes(p.gf); ++i) {
        const ggml_tensor * t = ggml_graph_node(p.gf, i);
        if (t->op == GGML_OP_MUL_MAT && t->src[0]->ne[1] == 12288) mmp = cp[i];
    }
    CHECK(mmp > 3 * mm);
}

static bool is_norm_at(const std::vector<uint8_t> & norms, int i) {
    return i < (int) norms.size() && norms[i];
}

static void test_cuts() {
    Model m;
    build(m, 36, 4096, 12288, 1, 1024);
    ggml_cgraph * g = m.gf;
    const int n = ggml_graph_n_nodes(g);
    const std::vector<double> c = ggml_xqueue_costs(g);
    const std::vector<uint8_t> norms = ggml_xqueue_norms(g);
    const double total = sum(c, 0, n);
    double longest_node = 0.0;
    for (double x : c) longest_node = std::max(longest_node, x);
    CHECK(norms.size() == (size_t) n);
    for (double parts : { 1.0, 2.0, 3.0, 5.0, 12.0, 36.0, 100.0 }) {
        const double target = total / parts;
        const std::vector<int> s = ggml_xqueue_cuts(c, norms, target);
        CHECK(!s.empty() && s[0] == 0);
        CHECK((double) s.size() >= parts - 1e-9);          // no segment can be over target, so at least total/target
        CHECK((double) s.size() <= 2.0 * parts + 1.0);     // greedy cuts waste at most the 40 % before a norm
        for (size_t k = 1; k < s.size(); ++k) {
            CHECK(s[k] > s[k - 1] && s[k] < n);
            CHECK(c[s[k]] > 0.0); // a cut goes before a compute node
        }
        const std::vector<bool> split = ggml_xqueue_splittable(c, s);
        for (size_t k = 0; k < s.size(); ++k) {
            const int end = k + 1 < s.size() ? s[k + 1] : n;
            // a segment of several compute nodes stays within target; only a single node may exceed it
            CHECK(!split[k] || sum(c, s[k], end) <= target * (1 + 1e-9));
        }
        if (parts == 12.0) {
            int at_norm = 0;
            for (size_t k = 1; k < s.size(); ++k) at_norm += is_norm_at(norms, s[k]);
            CHECK(at_norm == (int) s.size() - 1); // 36 blocks, a third of the graph each: every cut at a norm
        }
    }
    // a node costlier than the target is a segment of its own
    {
        std::vector<double> x = { 1, 1, 50, 1, 1, 0, 1 };
        std::vector<uint8_t> nn(x.size(), 0);
        const std::vector<int> s = ggml_xqueue_cuts(x, nn, 10.0);
        CHECK(s == std::vector<int>({ 0, 2, 3 }));
        CHECK(ggml_xqueue_cuts(x, nn, 1000.0) == std::vector<int>({ 0 }));
        // at most one segment per compute node, and never a cut before a node that launches nothing
        CHECK(ggml_xqueue_cuts(x, nn, 0.5) == std::vector<int>({ 0, 1, 2, 3, 4, 6 }));
    }
    // the cut moves back to a norm start that lies after 60 % of the target
    {
        std::vector<double> x = { 3, 3, 3, 3, 3 };
        std::vector<uint8_t> nn = { 0, 0, 1, 0, 0 };
        CHECK(ggml_xqueue_cuts(x, nn, 10.0) == std::vector<int>({ 0, 2 }));  // 6 of 10 before the norm: cut there
        std::vector<uint8_t> early = { 0, 1, 0, 0, 0 };
        CHECK(ggml_xqueue_cuts(x, early, 10.0) == std::vector<int>({ 0, 3 })); // 3 of 10: too early, cut at the limit
    }
    CHECK(ggml_xqueue_target(400.0) == 340.0);
}

static void test_rescale() {
    const std::vector<double> cost = { 10, 10, 0, 20, 5 };
    const std::vector<int> starts = { 0, 2, 4 };
    {   // damping 1: each segment's nodes take its measured / predicted ratio
        std::vector<double> scale(cost.size(), 2.0);
        ggml_xqueue_rescale(scale, cost, starts, { 80.0, 40.0, 10.0 }, 1.0);
        CHECK(scale[0] == 4.0 && scale[1] == 4.0);   // predicted 40, measured 80
        CHECK(scale[2] == 2.0 && scale[3] == 2.0);   // predicted 40, measured 40
        CHECK(scale[4] == 2.0);                      // predicted 10, measured 10
        const std::vector<double> sc = ggml_xqueue_scaled(cost, scale);
        CHECK(sum(sc, 0, 2) == 80.0);
    }
    {   // damping 0.5: halfway in logarithms; a ratio beyond 16 is clamped
        std::vector<double> scale(cost.size(), 1.0);
        ggml_xqueue_rescale(scale, cost, starts, { 80.0, 1e9, 0.0 }, 0.5);
        CHECK(std::fabs(scale[0] - 2.0) < 1e-12);    // sqrt(80 / 20)
        CHECK(std::fabs(scale[3] - 4.0) < 1e-12);    // sqrt(16)
        CHECK(scale[4] == 1.0);                      // nothing measured: left
    }
}

// test_convergence() lets the plan learn a GPU whose node times differ from the model by a hidden factor per
// kind of node (0.5x to 5x): after the corrections, every segment of several nodes measures within the budget
// and the count is near the fewest possible.
static void test_convergence() {
    for (int tokens : { 1, 512 }) {
        Model m;
        build(m, 28, 1024, 3072, tokens, 4096);
        const std::vector<double> c = ggml_xqueue_costs(m.gf);
        const std::vector<uint8_t> norms = ggml_xqueue_norms(m.gf);
        const int n = (int) c.size();
        std::vector<double> truth(n);
        for (int i = 0; i < n; ++i) {
            const ggml_op op = ggml_graph_node(m.gf, i)->op;
            const double f = op == GGML_OP_FLASH_ATTN_EXT ? 5.0 : op == GGML_OP_MUL_MAT ? 0.5 : 2.0;
            truth[i] = c[i] * f;
        }
        const double budget = 400.0;
        const double target = ggml_xqueue_target(budget);
        std::vector<double> scale(n, 4.0); // the first guess
        std::vector<int> starts = ggml_xqueue_cuts(ggml_xqueue_scaled(c, scale), norms, target);
        ggml_xqueue_tuner t;
        t.n_seg = (int) starts.size();
        int replans = 0;
        for (int sample = 0; sample < 40; ++sample) {
            std::vector<double> measured(starts.size());
            double longest_split = 0.0;
            const std::vector<bool> split = ggml_xqueue_splittable(c, starts);
            for (size_t k = 0; k < starts.size(); ++k) {
                const int end = k + 1 < starts.size() ? starts[k + 1] : n;
                measured[k] = sum(truth, starts[k], end);
                if (split[k]) longest_split = std::max(longest_split, measured[k]);
            }
            ggml_xqueue_rescale(scale, c, starts, measured, sample == 0 ? 1.0 : 0.5);
            const int recut = (int) ggml_xqueue_cuts(ggml_xqueue_scaled(c, scale), norms, target).size();
            if (t.sample(longest_split, recut, budget)) {
                starts = ggml_xqueue_cuts(ggml_xqueue_scaled(c, scale), norms, target);
                t.n_seg = (int) starts.size();
                ++replans;
            }
        }
        const std::vector<bool> split = ggml_xqueue_splittable(c, starts);
        double true_total = 0.0;
        for (double x : truth) true_total += x;
        for (size_t k = 0; k < starts.size(); ++k) {
            const int end = k + 1 < starts.size() ? starts[k + 1] : n;
            CHECK(!split[k] || sum(truth, starts[k], end) <= 1.15 * budget);
        }
        const double fewest = true_total / budget;
        CHECK((double) starts.size() >= fewest);
        CHECK((double) starts.size() <= 2.0 * fewest + 2.0);
        CHECK(replans >= 1 && replans <= 6); // the 4x first guess is cut anew, then the plan settles
        std::printf("convergence tokens=%d: %zu segments (true total %.0f us), %d re-plans\n", tokens, starts.size(),
                    true_total, replans);
    }
}

static void test_tuner() {
    const double B = 400.0;
    {   // two samples over 115 % cut anew
        ggml_xqueue_tuner t;
        t.n_seg = 4;
        CHECK(!t.sample(600, 4, B)); // one look only
        CHECK(t.sample(680, 8, B));
        CHECK(t.n_recent == 0);
    }
    {   // one slow sample between fast ones (interference) changes nothing
        ggml_xqueue_tuner t;
        t.n_seg = 6;
        CHECK(!t.sample(300, 6, B));
        CHECK(!t.sample(900, 6, B));
        CHECK(!t.sample(310, 6, B));
    }
    {   // three samples that would need at most 80 % of the segments cut anew
        ggml_xqueue_tuner t;
        t.n_seg = 10;
        CHECK(!t.sample(100, 4, B));
        CHECK(!t.sample(120, 8, B));
        CHECK(t.sample(110, 5, B));
    }
    {   // ... but not when one of them would need more than 80 %
        ggml_xqueue_tuner t;
        t.n_seg = 10;
        CHECK(!t.sample(100, 4, B));
        CHECK(!t.sample(120, 9, B));
        CHECK(!t.sample(110, 5, B));
    }
    {   // a single node over the budget (not splittable: longest splittable under it) triggers nothing
        ggml_xqueue_tuner t;
        t.n_seg = 3;
        for (int i = 0; i < 6; ++i) CHECK(!t.sample(150, 3, B));
    }
}

// The tail (ggml_xqueue_tail_*): how many last segments pass at once, and the correction from the host's gaps.
static void test_level_ahead() {
    // decode of a 0.6B shape: 985 nodes in 5 segments (197 each, launched directly at first): the floor of 2
    CHECK(ggml_xqueue_level_ahead(64, 985, 5) == 2);
    // prefill of an 8B shape: ~1265 nodes in 115 segments (11 each): 23 segments, about 256 kernels
    CHECK(ggml_xqueue_level_ahead(64, 1265, 115) == 23);
    // small segments: the cap (GGML_XQUEUE_AHEAD) binds
    CHECK(ggml_xqueue_level_ahead(64, 1000, 1000) == 64);
    CHECK(ggml_xqueue_level_ahead(8, 1000, 1000) == 8);
    // degenerate plans
    CHECK(ggml_xqueue_level_ahead(64, 10, 0) == 25);
    CHECK(ggml_xqueue_level_ahead(1, 1000, 1000) == 1);  // GGML_XQUEUE_AHEAD=1 is kept
}

static void test_tail() {
    // no tail, or a tail the window already covers: every segment is gated
    CHECK(ggml_xqueue_tail_segments(0.0, 300.0, 2, 100) == 0);
    CHECK(ggml_xqueue_tail_segments(400.0, 300.0, 2, 100) == 0);  // 1.5 segments in flight cover 450 us
    CHECK(ggml_xqueue_tail_segments(4000.0, 0.0, 2, 100) == 0);   // no segment time: nothing to size by
    // 4 ms of 300 us segments over a window of 2: 13.3 - 1.5 -> 12 segments more
    CHECK(ggml_xqueue_tail_segments(4000.0, 300.0, 2, 100) == 12);
    CHECK(ggml_xqueue_tail_queued_us(12, 300.0, 2) >= 4000.0);
    CHECK(ggml_xqueue_tail_queued_us(11, 300.0, 2) < 4000.0);
    // never the whole compute: its first segment is gated
    CHECK(ggml_xqueue_tail_segments(4000.0, 300.0, 2, 5) == 4);
    CHECK(ggml_xqueue_tail_segments(4000.0, 300.0, 2, 1) == 0);

    const double cap = 4000.0;
    double tail = 0.0;
    // prefill: 3.5 ms of host work after each compute, 0.45 ms queued: the device waited, the tail covers the gap
    ggml_xqueue_tail_adapt(tail, 3500.0, 450.0, cap);
    CHECK(std::fabs(tail - 3500.0) < 1e-9);
    // next gap: the host waited for the queued work (3.6 ms queued, 3.8 ms gap): it shrinks by 5 %
    ggml_xqueue_tail_adapt(tail, 3800.0, 3600.0, cap);
    CHECK(tail < 3500.0 && tail > 3300.0);
    // it never grows over the bound
    ggml_xqueue_tail_adapt(tail, 6000.0, 450.0, cap);
    CHECK(std::fabs(tail - cap) < 1e-9);
    // a pause (no next work for more than 20 ms): nothing changes
    ggml_xqueue_tail_adapt(tail, 50000.0, 450.0, cap);
    CHECK(std::fabs(tail - cap) < 1e-9);
    // a small bound still follows gaps of several ms (they are host work, not pauses): 4 ms gaps, bound 1500
    double small = 0.0;
    ggml_xqueue_tail_adapt(small, 4000.0, 450.0, 1500.0);
    CHECK(std::fabs(small - 1500.0) < 1e-9);
    // decode: host gaps shorter than the window's work: a tail decays to nothing and stays there
    for (int i = 0; i < 400; ++i) {
        ggml_xqueue_tail_adapt(tail, 300.0, 700.0, cap);
    }
    CHECK(tail == 0.0);
    // the bound 0 switches the tail off
    tail = 2000.0;
    ggml_xqueue_tail_adapt(tail, 3500.0, 450.0, 0.0);
    CHECK(tail == 0.0);
    // converging on a steady 3 ms host gap (queued work is what the tail left in flight; the host waits for it
    // when it is more than its own work): the device's wait per gap ends within the margin
    tail = 0.0;
    double idle = 0.0;
    for (int i = 0; i < 60; ++i) {
        const int    m      = ggml_xqueue_tail_segments(tail, 250.0, 2, 180);
        const double queued = ggml_xqueue_tail_queued_us(m, 250.0, 2);
        const double host   = std::max(3000.0, queued) + 200.0; // the host's work, or the wait; then the copies
        idle = std::max(0.0, 3000.0 - queued);
        ggml_xqueue_tail_adapt(tail, host, queued, cap);
    }
    CHECK(idle <= 500.0);
    CHECK(tail <= cap);
}

static const char * preempt_name(ggml_xqueue_preempt p) {
    switch (p) {
        case GGML_XQUEUE_PREEMPT_SEGMENT: return "segment";
        case GGML_XQUEUE_PREEMPT_NODE:    return "node";
        case GGML_XQUEUE_PREEMPT_GRAPH:   return "graph";
    }
    return "?";
}

int main(int argc, char ** argv) {
    if (argc > 1 && std::strcmp(argv[1], "knobs") == 0) {
        const ggml_xqueue_knobs & k = ggml_xqueue_get_knobs();
        const char * sp = k.stream_priority == GGML_XQUEUE_STREAM_PRIORITY_AUTO ? "auto"
                        : k.stream_priority == GGML_XQUEUE_STREAM_PRIORITY_ON   ? "on" : "off";
        std::printf("preempt=%s segment_us=%lld stream_priority=%s window=%lld tail_us=%lld trace=%d hold=%s "
                    "ahead=%lld\n", preempt_name(k.preempt), (long long) k.segment_us, sp, (long long) k.window,
                    (long long) k.tail_us, k.trace ? 1 : 0, k.hold_device ? "device" : "host", (long long) k.ahead);
        return 0;
    }
    test_costs();
    test_cuts();
    test_rescale();
    test_convergence();
    test_tuner();
    test_tail();
    test_level_ahead();
    std::printf("%s: %d failures\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
