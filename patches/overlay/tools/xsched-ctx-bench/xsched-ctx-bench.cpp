// xsched-ctx-bench: two llama contexts on one model in one process, each
// decoding (or prefilling long prompts) in its own thread, with the priority,
// WRR weight and policy given on the command line. Measures each context's
// tokens/s over a fixed duration, alone and concurrently; prints a table and
// writes JSON. Builds against vanilla llama.cpp too (then without priorities).
//
//   xsched-ctx-bench -m MODEL --scenario hpf-decode [--duration 10] [--json out.json]
//
// Scenarios (each sets defaults that later flags override):
//   hpf-decode   HPF; A (prio 1) decodes; B (prio 0) decodes.   phases: solo-A solo-B concurrent
//   hpf-prefill  HPF; A (prio 1) decodes; B (prio 0) prefills --prompt tokens back to back.
//   harvest      HPF; A (prio 1) decodes in bursts (--burst-on/--burst-off s); B (prio 0) decodes.
//                B's rate while A is idle is compared with B alone.
//   wrr          WRR; A and B (weights --a-weight/--b-weight, default 1:1) decode.
//   overhead     one context A decodes (or --a-mode prefill) alone.  phases: solo-A
#include "llama.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

using bench_clock = std::chrono::steady_clock;

enum class mode { idle, decode, prefill, burst };

struct ctx_cfg {
    std::string name;
    int32_t     priority = 0;
    int32_t     weight   = 1;
    mode        m        = mode::decode;
};

struct options {
    std::string model;
    std::string scenario = "hpf-decode";
    std::string policy   = "HPF";
    std::string json;
    std::string phases;            // comma list; empty = the scenario's
    int         ngl       = 99;
    int         threads   = 4;
    double      duration  = 10.0;  // seconds per phase
    double      burst_on  = 1.0;
    double      burst_off = 1.0;
    int         prompt    = 6144;  // prefill length
    int         decode_len = 1024; // decoded tokens before the KV cache is cleared
    int         n_batch   = 2048;
    int         n_ubatch  = 512;
    bool        active    = true;  // activity scope around each busy phase
    bool        verbose   = false; // all llama/ggml log messages (e.g. the CUDA-graph decisions)
    int         n_ctx_count = 2;
    ctx_cfg     a{ "A", 1, 1, mode::decode };
    ctx_cfg     b{ "B", 0, 1, mode::decode };
};

[[noreturn]] static void die(const std::string & msg) {
    fprintf(stderr, "error: %s\n", msg.c_str());
    exit(2);
}

static const char * mode_name(mode m) {
    switch (m) {
        case mode::idle:    return "idle";
        case mode::decode:  return "decode";
        case mode::prefill: return "prefill";
        case mode::burst:   return "burst";
    }
    return "?";
}

static mode parse_mode(const std::string & s) {
    if (s == "idle")    return mode::idle;
    if (s == "decode")  return mode::decode;
    if (s == "prefill") return mode::prefill;
    if (s == "burst")   return mode::burst;
    die("mode '" + s + "': expected idle, decode, prefill or burst");
}

static double parse_num(const std::string & flag, const char * v, double lo, double hi) {
    char * end = nullptr;
    const double x = strtod(v, &end);
    if (end == v || *end != '\0' || x < lo || x > hi) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%s %s: expected a number in [%g, %g]", flag.c_str(), v, lo, hi);
        die(msg);
    }
    return x;
}

static void apply_scenario(options & o) {
    const std::string & s = o.scenario;
    if (s == "hpf-decode") {
        o.policy = "HPF"; o.a = { "A", 1, 1, mode::decode }; o.b = { "B", 0, 1, mode::decode };
    } else if (s == "hpf-prefill") {
        o.policy = "HPF"; o.a = { "A", 1, 1, mode::decode }; o.b = { "B", 0, 1, mode::prefill };
    } else if (s == "harvest") {
        o.policy = "HPF"; o.a = { "A", 1, 1, mode::burst };  o.b = { "B", 0, 1, mode::decode };
    } else if (s == "wrr") {
        o.policy = "WRR"; o.a = { "A", 0, 1, mode::decode }; o.b = { "B", 0, 1, mode::decode };
    } else if (s == "overhead") {
        o.n_ctx_count = 1; o.a = { "A", 0, 1, mode::decode };
    } else {
        die("scenario '" + s + "': expected hpf-decode, hpf-prefill, harvest, wrr or overhead");
    }
}

static void usage() {
    printf("usage: xsched-ctx-bench -m MODEL [--scenario hpf-decode|hpf-prefill|harvest|wrr|overhead]\n"
           "  [--policy HPF|WRR|NONE] [--duration S] [--phases solo-A,solo-B,concurrent] [--json FILE]\n"
           "  [--a-prio P] [--a-weight W] [--a-mode idle|decode|prefill|burst] (same for --b-*)\n"
           "  [-ngl N] [-t THREADS] [--prompt N] [--decode-len N] [-b N_BATCH] [-ub N_UBATCH]\n"
           "  [--burst-on S] [--burst-off S] [--no-active] [--contexts 1|2] [-v]\n");
}

static options parse_args(int argc, char ** argv) {
    options o;
    // the scenario sets defaults first, whatever its position
    for (int i = 1; i + 1 < argc; ++i) {
        if (strcmp(argv[i], "--scenario") == 0) {
            o.scenario = argv[i + 1];
        }
    }
    apply_scenario(o);
    for (int i = 1; i < argc; ++i) {
        const std::string f = argv[i];
        if (f == "-h" || f == "--help") { usage(); exit(0); }
        if (f == "--no-active") { o.active = false; continue; }
        if (f == "-v" || f == "--verbose") { o.verbose = true; continue; }
        if (i + 1 >= argc) die(f + ": missing value (or unknown flag)");
        const char * v = argv[++i];
        if      (f == "-m" || f == "--model") o.model = v;
        else if (f == "--scenario")   { /* done above */ }
        else if (f == "--policy")     o.policy = v;
        else if (f == "--json")       o.json = v;
        else if (f == "--phases")     o.phases = v;
        else if (f == "-ngl")         o.ngl = (int) parse_num(f, v, 0, 1000);
        else if (f == "-t")           o.threads = (int) parse_num(f, v, 1, 512);
        else if (f == "--duration")   o.duration = parse_num(f, v, 0.1, 3600);
        else if (f == "--burst-on")   o.burst_on = parse_num(f, v, 0.05, 600);
        else if (f == "--burst-off")  o.burst_off = parse_num(f, v, 0.05, 600);
        else if (f == "--prompt")     o.prompt = (int) parse_num(f, v, 1, 1 << 20);
        else if (f == "--decode-len") o.decode_len = (int) parse_num(f, v, 1, 1 << 20);
        else if (f == "-b")           o.n_batch = (int) parse_num(f, v, 1, 1 << 20);
        else if (f == "-ub")          o.n_ubatch = (int) parse_num(f, v, 1, 1 << 20);
        else if (f == "--contexts")   o.n_ctx_count = (int) parse_num(f, v, 1, 2);
        else if (f == "--a-prio")     o.a.priority = (int32_t) parse_num(f, v, -255, 255);
        else if (f == "--b-prio")     o.b.priority = (int32_t) parse_num(f, v, -255, 255);
        else if (f == "--a-weight")   o.a.weight = (int32_t) parse_num(f, v, 1, 1000);
        else if (f == "--b-weight")   o.b.weight = (int32_t) parse_num(f, v, 1, 1000);
        else if (f == "--a-mode")     o.a.m = parse_mode(v);
        else if (f == "--b-mode")     o.b.m = parse_mode(v);
        else die("unknown flag " + f);
    }
    if (o.model.empty()) die("-m MODEL is required");
    if (o.policy != "HPF" && o.policy != "WRR" && o.policy != "NONE") die("--policy " + o.policy + ": expected HPF, WRR or NONE");
    if (o.phases.empty()) {
        o.phases = o.n_ctx_count == 1 ? "solo-A" : (o.scenario == "harvest" ? "solo-B,concurrent" : "solo-A,solo-B,concurrent");
    }
    return o;
}

// worker: one context's thread in one phase
struct worker {
    llama_context *         ctx = nullptr;
    const ctx_cfg *         cfg = nullptr;
    mode                    m   = mode::idle;
    std::vector<llama_token> tokens;    // random prompt / decode tokens
    // results
    int64_t                 n_tokens = 0;
    double                  seconds  = 0;
    std::vector<std::pair<double, int>> done; // (time since phase start, tokens) per step
};

static void clear_kv(llama_context * ctx) {
    llama_memory_clear(llama_get_memory(ctx), true);
}

// decode_step() decodes n tokens starting at tok (one llama_decode per n_batch) and waits for the result.
static bool decode_step(llama_context * ctx, const llama_token * tok, int n, int n_batch) {
    for (int i = 0; i < n; i += n_batch) {
        const int k = std::min(n_batch, n - i);
        if (llama_decode(ctx, llama_batch_get_one(const_cast<llama_token *>(tok + i), k)) != 0) {
            return false;
        }
    }
    llama_synchronize(ctx);
    return true;
}

static void set_active(llama_context * ctx, bool on, bool enabled) {
#ifdef LLAMA_HAS_PRIORITY
    if (enabled) {
        llama_set_active(ctx, on);
    }
#else
    (void) ctx; (void) on; (void) enabled;
#endif
}

static void run_worker(worker & w, const options & o, bench_clock::time_point t0, std::atomic<int> & failed) {
    const double dur = o.duration;
    const auto   now = [&] { return std::chrono::duration<double>(bench_clock::now() - t0).count(); };
    int pos = 0; // tokens in the KV cache
    bool busy = false;
    while (true) {
        const double t = now();
        if (t >= dur) break;
        bool on = w.m == mode::decode || w.m == mode::prefill;
        if (w.m == mode::burst) {
            on = std::fmod(t, o.burst_on + o.burst_off) < o.burst_on;
        }
        if (on != busy) {
            set_active(w.ctx, on, o.active);
            busy = on;
        }
        if (!on) {
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
            continue;
        }
        int n = 1;
        bool ok;
        if (w.m == mode::prefill) {
            clear_kv(w.ctx);
            n  = o.prompt;
            ok = decode_step(w.ctx, w.tokens.data(), n, o.n_batch);
        } else {
            if (pos == 0 || pos >= o.decode_len) {
                clear_kv(w.ctx);
                ok  = decode_step(w.ctx, w.tokens.data(), 16, o.n_batch); // a short prompt, not counted
                pos = 16;
                if (!ok) break;
            }
            ok = decode_step(w.ctx, &w.tokens[pos % w.tokens.size()], 1, o.n_batch);
            pos++;
        }
        if (!ok) { failed = 1; break; }
        w.n_tokens += n;
        w.done.emplace_back(now(), n);
    }
    if (busy) set_active(w.ctx, false, o.active);
    w.seconds = now();
}

struct phase_result {
    std::string name;
    std::vector<worker> w;
};

static void warm_up(llama_context * ctx, const std::vector<llama_token> & toks, const options & o) {
    clear_kv(ctx);
    decode_step(ctx, toks.data(), 16, o.n_batch);
    for (int i = 0; i < 4; ++i) decode_step(ctx, &toks[16 + i], 1, o.n_batch);
    clear_kv(ctx);
}

// harvest_rate() is B's tokens/s inside A's idle windows (skipping 50 ms after A goes idle).
static double harvest_rate(const worker & b, const options & o) {
    const double period = o.burst_on + o.burst_off;
    double window = 0;
    for (double t = 0; t < b.seconds; t += period) {
        const double s = t + o.burst_on + 0.05;
        const double e = std::min(t + period, b.seconds);
        if (e > s) window += e - s;
    }
    int64_t n = 0;
    for (const auto & d : b.done) {
        const double ph = std::fmod(d.first, period);
        if (ph >= o.burst_on + 0.05) n += d.second;
    }
    return window > 0 ? n / window : 0;
}

int main(int argc, char ** argv) {
    options o = parse_args(argc, argv);
    setenv("XSCHED_POLICY", o.policy.c_str(), 1); // read by the core when the first queue is created

    static bool verbose = false;
    verbose = o.verbose;
    llama_log_set([](ggml_log_level level, const char * text, void *) {
        if (verbose || level >= GGML_LOG_LEVEL_WARN) fputs(text, stderr);
    }, nullptr);
    llama_backend_init();

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = o.ngl;
    llama_model * model = llama_model_load_from_file(o.model.c_str(), mp);
    if (!model) die("cannot load model " + o.model);
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

    const ctx_cfg * cfgs[2] = { &o.a, &o.b };
    std::vector<llama_context *> ctxs;
    std::vector<std::vector<llama_token>> toks;
    std::mt19937 rng(42);
    const int n_tok = std::max(o.prompt, o.decode_len) + 32;
    for (int i = 0; i < o.n_ctx_count; ++i) {
        llama_context_params cp = llama_context_default_params();
        cp.n_ctx           = (uint32_t) n_tok + 64;
        cp.n_batch         = (uint32_t) o.n_batch;
        cp.n_ubatch        = (uint32_t) o.n_ubatch;
        cp.n_seq_max       = 1;
        cp.n_threads       = o.threads;
        cp.n_threads_batch = o.threads;
        cp.no_perf         = true;
        llama_context * ctx = llama_init_from_model(model, cp);
        if (!ctx) die("cannot create context " + cfgs[i]->name);
#ifdef LLAMA_HAS_PRIORITY
        const int32_t n = llama_set_priority(ctx, cfgs[i]->priority, cfgs[i]->weight);
        llama_set_queue_name(ctx, cfgs[i]->name.c_str());
        fprintf(stderr, "context %s: priority %d weight %d on %d backend(s) with queues\n",
                cfgs[i]->name.c_str(), cfgs[i]->priority, cfgs[i]->weight, n);
#endif
        std::vector<llama_token> t(n_tok);
        for (auto & x : t) x = (llama_token) (rng() % (uint32_t) n_vocab);
        warm_up(ctx, t, o);
        ctxs.push_back(ctx);
        toks.push_back(std::move(t));
    }

    std::vector<phase_result> results;
    std::atomic<int> failed{0};
    size_t start = 0;
    while (start <= o.phases.size()) {
        size_t end = o.phases.find(',', start);
        if (end == std::string::npos) end = o.phases.size();
        const std::string ph = o.phases.substr(start, end - start);
        start = end + 1;
        if (ph.empty()) continue;
        bool run[2] = { false, false };
        if      (ph == "solo-A")     run[0] = true;
        else if (ph == "solo-B")     run[1] = true;
        else if (ph == "concurrent") run[0] = run[1] = true;
        else die("phase '" + ph + "': expected solo-A, solo-B or concurrent");
        if (run[1] && o.n_ctx_count < 2) die("phase " + ph + " needs --contexts 2");

        phase_result r;
        r.name = ph;
        r.w.resize(o.n_ctx_count);
        for (int i = 0; i < o.n_ctx_count; ++i) {
            r.w[i].ctx = ctxs[i];
            r.w[i].cfg = cfgs[i];
            r.w[i].m = run[i] ? cfgs[i]->m : mode::idle;
            r.w[i].tokens = toks[i];
        }
        fprintf(stderr, "phase %s: %.1f s\n", ph.c_str(), o.duration);
        const auto t0 = bench_clock::now();
        std::vector<std::thread> th;
        for (auto & w : r.w) {
            if (w.m != mode::idle) th.emplace_back(run_worker, std::ref(w), std::cref(o), t0, std::ref(failed));
        }
        for (auto & t : th) t.join();
        if (failed) die("llama_decode failed in phase " + ph);
        results.push_back(std::move(r));
    }

    // table
    auto tps = [](const worker & w) { return w.seconds > 0 ? w.n_tokens / w.seconds : 0.0; };
    printf("policy %s, scenario %s, model %s, priority API %s\n", o.policy.c_str(), o.scenario.c_str(), o.model.c_str(),
#ifdef LLAMA_HAS_PRIORITY
           "yes"
#else
           "no (vanilla build)"
#endif
    );
    printf("%-12s %-4s %5s %6s %-8s %9s %8s %10s\n", "phase", "ctx", "prio", "weight", "mode", "tokens", "seconds", "tok/s");
    double solo[2] = { 0, 0 }, conc[2] = { 0, 0 };
    for (const auto & r : results) {
        for (size_t i = 0; i < r.w.size(); ++i) {
            const worker & w = r.w[i];
            if (w.m == mode::idle) continue;
            printf("%-12s %-4s %5d %6d %-8s %9lld %8.2f %10.2f\n", r.name.c_str(), w.cfg->name.c_str(), w.cfg->priority,
                   w.cfg->weight, mode_name(w.m), (long long) w.n_tokens, w.seconds, tps(w));
            (r.name == "concurrent" ? conc : solo)[i] = tps(w);
        }
    }
    std::vector<std::pair<std::string, double>> ratios;
    if (solo[0] > 0 && conc[0] > 0) ratios.emplace_back("A_concurrent_over_solo", conc[0] / solo[0]);
    if (solo[1] > 0 && conc[1] > 0) ratios.emplace_back("B_concurrent_over_solo", conc[1] / solo[1]);
    if (conc[0] > 0 && conc[1] > 0) ratios.emplace_back("A_over_B_concurrent", conc[0] / conc[1]);
    if (o.a.m == mode::burst && solo[1] > 0) {
        for (const auto & r : results) {
            if (r.name == "concurrent" && r.w.size() > 1) ratios.emplace_back("B_while_A_idle_over_solo", harvest_rate(r.w[1], o) / solo[1]);
        }
    }
    for (const auto & x : ratios) printf("%-26s %.3f\n", x.first.c_str(), x.second);

    if (!o.json.empty()) {
        const std::string tmp = o.json + ".tmp";
        FILE * f = fopen(tmp.c_str(), "w");
        if (!f) die("cannot write " + o.json);
        fprintf(f, "{\n  \"scenario\": \"%s\", \"policy\": \"%s\", \"model\": \"%s\", \"priority_api\": %s,\n",
                o.scenario.c_str(), o.policy.c_str(), o.model.c_str(),
#ifdef LLAMA_HAS_PRIORITY
                "true"
#else
                "false"
#endif
        );
        fprintf(f, "  \"duration_s\": %.3f, \"threads\": %d, \"ngl\": %d, \"prompt\": %d, \"active_scopes\": %s,\n",
                o.duration, o.threads, o.ngl, o.prompt, o.active ? "true" : "false");
        fprintf(f, "  \"phases\": [\n");
        for (size_t p = 0; p < results.size(); ++p) {
            fprintf(f, "    {\"name\": \"%s\", \"contexts\": [", results[p].name.c_str());
            bool first = true;
            for (const auto & w : results[p].w) {
                if (w.m == mode::idle) continue;
                fprintf(f, "%s{\"name\": \"%s\", \"priority\": %d, \"weight\": %d, \"mode\": \"%s\", \"tokens\": %lld, \"seconds\": %.4f, \"tokens_per_s\": %.3f}",
                        first ? "" : ", ", w.cfg->name.c_str(), w.cfg->priority, w.cfg->weight, mode_name(w.m),
                        (long long) w.n_tokens, w.seconds, tps(w));
                first = false;
            }
            fprintf(f, "]}%s\n", p + 1 < results.size() ? "," : "");
        }
        fprintf(f, "  ],\n  \"ratios\": {");
        for (size_t i = 0; i < ratios.size(); ++i) {
            fprintf(f, "%s\"%s\": %.4f", i ? ", " : "", ratios[i].first.c_str(), ratios[i].second);
        }
        fprintf(f, "}\n}\n");
        fclose(f);
        if (rename(tmp.c_str(), o.json.c_str()) != 0) die("cannot write " + o.json);
    }

    for (auto * c : ctxs) llama_free(c);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
