// segment_plan_test.cpp: the segment planning of the patched ggml (ggml-xqueue-plan.h) and the GGML_XQUEUE_*
// knobs (ggml-xqueue.h), on the CPU. Built and run by tests/test_segment_plan.py against the patched CPU
// build's ggml; `segment_plan_test knobs` only parses the environment and prints the result.
#include "ggml.h"
#include "ggml-xqueue-plan.h"
#include "ggml-xqueue.h"

#include <cstdio>
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

static void test_cuts() {
    Model m;
    build(m, 36, 4096, 12288, 1, 1024);
    ggml_cgraph * g = m.gf;
    const int n = ggml_graph_n_nodes(g);
    const std::vector<double> c = ggml_xqueue_costs(g);
    const double total = sum(c, 0, n);
    double longest_node = 0.0;
    for (double x : c) longest_node = std::max(longest_node, x);
    for (int n_seg : { 1, 2, 3, 5, 12, 36, 100 }) {
        const std::vector<int> s = ggml_xqueue_cuts(g, c, n_seg);
        CHECK(!s.empty() && s[0] == 0);
        CHECK((int) s.size() <= n_seg);
        CHECK((int) s.size() >= std::min(n_seg, 2)); // this graph has enough nodes for every count up to 100
        for (size_t k = 1; k < s.size(); ++k) {
            CHECK(s[k] > s[k - 1] && s[k] < n);
            CHECK(c[s[k]] > 0.0); // a cut goes before a compute node
        }
        const double share = total / n_seg;
        for (size_t k = 0; k < s.size(); ++k) {
            const int end = k + 1 < s.size() ? s[k + 1] : n;
            // each segment is near its share: off by at most the window (15 %) on each side and one node
            CHECK(sum(c, s[k], end) <= share * 1.3 + 2 * longest_node);
        }
        if (n_seg == 12) {
            int at_norm = 0;
            for (size_t k = 1; k < s.size(); ++k) at_norm += ggml_graph_node(g, s[k])->op == GGML_OP_RMS_NORM;
            CHECK(at_norm == (int) s.size() - 1); // 36 blocks in 12 segments: a norm is always near the ideal cut
        }
    }
    const std::vector<bool> split = ggml_xqueue_splittable(c, ggml_xqueue_cuts(g, c, 5));
    CHECK(split.size() == 5);
    for (bool b : split) CHECK(b);
    // one segment per compute node at most
    const int compute = ggml_xqueue_compute_nodes(c);
    CHECK((int) ggml_xqueue_cuts(g, c, 100000).size() <= compute);
    CHECK(ggml_xqueue_initial_segments(4000.0, 400.0) == 12);
    CHECK(ggml_xqueue_initial_segments(10.0, 400.0) == 1);
}

static void test_tuner() {
    const double B = 400.0;
    {   // two samples over 115 % raise the count to aim at 85 %
        ggml_xqueue_tuner t;
        t.n_seg = 4;
        CHECK(!t.sample(600, 600, B)); // one look only
        CHECK(t.sample(680, 680, B));
        CHECK(t.n_seg == 8);           // ceil(4 * 600 / 340)
    }
    {   // one slow sample between fast ones (interference) changes nothing
        ggml_xqueue_tuner t;
        t.n_seg = 6;
        CHECK(!t.sample(300, 300, B));
        CHECK(!t.sample(900, 900, B));
        CHECK(!t.sample(310, 310, B));
        CHECK(t.n_seg == 6);
    }
    {   // three samples under half the budget lower it
        ggml_xqueue_tuner t;
        t.n_seg = 10;
        CHECK(!t.sample(100, 100, B));
        CHECK(!t.sample(120, 120, B));
        CHECK(t.sample(110, 110, B));
        CHECK(t.n_seg == 4); // ceil(10 * 120 / 340)
        CHECK(t.n_recent == 0);
    }
    {   // a single node over the budget neither raises the count nor lets it fall
        ggml_xqueue_tuner t;
        t.n_seg = 3;
        for (int i = 0; i < 6; ++i) CHECK(!t.sample(150, 900, B));
        CHECK(t.n_seg == 3);
    }
    {   // never more than max_seg
        ggml_xqueue_tuner t;
        t.n_seg = 2;
        t.max_seg = 5;
        t.sample(4000, 4000, B);
        CHECK(t.sample(4000, 4000, B));
        CHECK(t.n_seg == 5);
    }
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
        std::printf("preempt=%s segment_us=%lld stream_priority=%d window=%lld trace=%d\n", preempt_name(k.preempt),
                    (long long) k.segment_us, k.stream_priority ? 1 : 0, (long long) k.window, k.trace ? 1 : 0);
        return 0;
    }
    test_costs();
    test_cuts();
    test_tuner();
    std::printf("%s: %d failures\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
