// xsched_bench.cu: GPU microbenchmark of the xsched core on one CUDA device.
//
// (a) Preemption latency. A low-priority thread keeps the GPU full with
//     back-to-back spin kernels (grid = every resident block slot of the GPU,
//     so nothing else can start until a low kernel's blocks drain). At random
//     moments (1-5 ms apart) the main thread submits one short high-priority
//     kernel. Latency = host time from "high unit submitted" (just before its
//     XQueueGate, or before the launch when ungated) to "its kernel started",
//     observed by the host spinning on a flag in mapped pinned memory that the
//     kernel's first thread writes (+ __threadfence_system) as its first action.
//     Both ends are read with the same host clock, so no GPU/host clock
//     conversion is needed; the figure includes the launch call and the PCIe
//     write (a few microseconds), i.e. it is an upper bound.
//     Configurations: plain streams; CUDA stream priorities; xsched gate (HPF,
//     low threshold T) with and without stream priorities.
// (a2) Burst completion. Same load; the high side submits 20 back-to-back
//     full-grid 10 us kernels (like one decode step) and the figure is the time
//     from the first submit to stream completion, against the same burst alone.
//     The hardware interleaves streams at kernel boundaries, so without the
//     gate every high kernel waits behind about one low kernel.
// (b) Gating overhead. One stream, N back-to-back spin kernels of length L:
//     ungated vs. XQueueGate before every launch for several thresholds
//     (batch = T/2), median of 3 runs; also the launching thread's CPU use.
//
// Usage: xsched_bench [--quick] [--overhead-only] [--samples N] [--json PATH]
#include <cuda_runtime.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "xsched/xsched.h"

namespace {

using Clock = std::chrono::steady_clock;

#define CK(call)                                                                                  \
    do {                                                                                          \
        cudaError_t e_ = (call);                                                                  \
        if (e_ != cudaSuccess) {                                                                  \
            std::fprintf(stderr, "xsched_bench: %s failed: %s\n", #call, cudaGetErrorString(e_)); \
            std::exit(1);                                                                         \
        }                                                                                         \
    } while (0)
#define XK(call)                                                                           \
    do {                                                                                   \
        XResult r_ = (call);                                                               \
        if (r_ != kXSchedSuccess) {                                                        \
            std::fprintf(stderr, "xsched_bench: %s failed: %s\n", #call, XResultName(r_)); \
            std::exit(1);                                                                  \
        }                                                                                  \
    } while (0)

__device__ __forceinline__ unsigned long long GlobalTimerNs() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// SpinKernel runs for ns nanoseconds in every block; if flag is set, the first
// thread of block 0 raises it first (kernel-start signal for the host).
__global__ void SpinKernel(unsigned long long ns, volatile unsigned int *flag) {
    unsigned long long t0 = GlobalTimerNs();
    if (flag != nullptr && blockIdx.x == 0 && threadIdx.x == 0) {
        *flag = 1;
        __threadfence_system();
    }
    while (GlobalTimerNs() - t0 < ns) {
    }
}

constexpr int kThreads = 256;

double Us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

double Pct(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    size_t i = static_cast<size_t>(p / 100.0 * (v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
}

double ThreadCpuUs() {
    rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec;
}

// GatedStream is a stream with its HwQueue and XQueue (or a plain stream).
struct GatedStream {
    cudaStream_t s = nullptr;
    HwQueueHandle hwq = 0;
    XQueueHandle xq = 0;
    GatedStream(int prio, bool gated, int threshold) {
        CK(cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, prio));
        if (gated) {
            XK(CudaQueueCreate(&hwq, s));
            XK(XQueueCreate(&xq, hwq, kPreemptLevelBlock, kQueueCreateFlagBlockingSubmit));
            XK(XQueueSetLaunchConfig(xq, threshold, std::max(1, threshold / 2)));
        }
    }
    ~GatedStream() {
        CK(cudaStreamSynchronize(s));
        if (xq) XK(XQueueDestroy(xq));
        if (hwq) XK(HwQueueDestroy(hwq));
        CK(cudaStreamDestroy(s));
    }
    void Launch(dim3 grid, unsigned long long ns, volatile unsigned int *flag) {
        SpinKernel<<<grid, kThreads, 0, s>>>(ns, flag);
    }
};

struct LatencyResult {
    std::string config;
    int burst;  // 0: first-kernel start latency; K: completion time of K high kernels
    int kernel_us;
    int threshold;  // 0 = ungated
    bool stream_prio;
    std::vector<double> lat_us;
};

struct OverheadResult {
    int kernel_us;
    int threshold;  // 0 = ungated
    std::string sync;
    double wall_ms;
    double overhead_pct;
    double cpu_pct;
    int n;
};

int g_full_grid = 0;

// MeasureLatency() measures, under a saturating low queue (unless !with_low),
// either the high unit's start latency (burst == 0) or the completion time of a
// burst of `burst` back-to-back full-grid 10 us high kernels (a decode step).
LatencyResult MeasureLatency(const char *name, int kernel_us, bool gated, int threshold, bool stream_prio, int samples,
                             int burst = 0, bool with_low = true) {
    int least = 0, greatest = 0;
    CK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    GatedStream low(least, gated, threshold);
    GatedStream high(stream_prio ? greatest : least, gated, threshold);
    if (gated) {
        XK(XHintPriority(low.xq, 0));
        XK(XHintPriority(high.xq, 10));
    }
    unsigned int *flag_h = nullptr;
    unsigned int *flag_d = nullptr;
    CK(cudaHostAlloc(&flag_h, sizeof(unsigned int), cudaHostAllocMapped));
    CK(cudaHostGetDevicePointer(&flag_d, flag_h, 0));
    volatile unsigned int *flag = flag_h;

    std::atomic<bool> stop{false};
    const unsigned long long low_ns = kernel_us * 1000ull;
    std::thread low_thread([&] {
        CK(cudaSetDevice(0));
        while (with_low && !stop.load(std::memory_order_relaxed)) {
            if (gated && XQueueGate(low.xq) != kXSchedSuccess) continue;
            low.Launch(dim3(g_full_grid), low_ns, nullptr);
        }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the GPU is busy now

    LatencyResult res{name, burst, kernel_us, gated ? threshold : 0, stream_prio, {}};
    std::mt19937 rng(12345);
    std::uniform_int_distribution<int> gap_us(1000, 5000);
    for (int i = 0; i < samples; ++i) {
        std::this_thread::sleep_for(std::chrono::microseconds(gap_us(rng)));
        *flag = 0;
        auto t0 = Clock::now();
        if (burst == 0) {
            if (gated) XK(XQueueGate(high.xq));
            high.Launch(dim3(1), 10000ull, flag_d);
            while (*flag == 0) {
            }
        } else {
            for (int k = 0; k < burst; ++k) {
                if (gated) XK(XQueueGate(high.xq));
                high.Launch(dim3(g_full_grid), 10000ull, nullptr);
            }
            CK(cudaStreamSynchronize(high.s));
        }
        auto t1 = Clock::now();
        res.lat_us.push_back(Us(t1 - t0));
        CK(cudaStreamSynchronize(high.s));
        if (gated) XK(XQueueSynchronized(high.xq));  // Idle edge: the low queue resumes
    }
    stop.store(true);
    if (gated) XK(XQueueAbort(low.xq, 1));
    low_thread.join();
    CK(cudaStreamSynchronize(low.s));
    if (gated) {
        XK(XQueueSynchronized(low.xq));
        XK(XQueueAbort(low.xq, 0));
    }
    CK(cudaFreeHost(flag_h));
    return res;
}

// RunStream launches n kernels of ns on one stream (gated if xq) and returns wall ms.
double RunStream(GatedStream &g, int n, unsigned long long ns, double *cpu_pct) {
    CK(cudaStreamSynchronize(g.s));
    double c0 = ThreadCpuUs();
    auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) {
        if (g.xq) XK(XQueueGate(g.xq));
        g.Launch(dim3(g_full_grid), ns, nullptr);
    }
    CK(cudaStreamSynchronize(g.s));
    auto t1 = Clock::now();
    if (g.xq) XK(XQueueSynchronized(g.xq));
    double wall_us = Us(t1 - t0);
    *cpu_pct = 100.0 * (ThreadCpuUs() - c0) / wall_us;
    return wall_us / 1000.0;
}

std::vector<OverheadResult> MeasureOverhead(int kernel_us, const std::vector<int> &thresholds, bool quick) {
    std::vector<OverheadResult> out;
    const unsigned long long ns = kernel_us * 1000ull;
    const int n = std::max(500, (quick ? 150000 : 500000) / kernel_us);  // ~0.15 / 0.5 s of kernels
    auto median3 = [&](GatedStream &g, double *cpu) {
        std::vector<double> w;
        std::vector<double> c;
        for (int r = 0; r < 3; ++r) {
            double cp;
            w.push_back(RunStream(g, n, ns, &cp));
            c.push_back(cp);
        }
        *cpu = Pct(c, 50);
        return Pct(w, 50);
    };
    double base_cpu;
    double base;
    {
        GatedStream g(0, false, 0);
        RunStream(g, n / 10, ns, &base_cpu);  // warm-up
        base = median3(g, &base_cpu);
    }
    out.push_back({kernel_us, 0, "-", base, 0.0, base_cpu, n});
    for (const char *sync : {"POLL", "BLOCK"}) {
        setenv("XSCHED_CUDA_SYNC", sync, 1);
        for (int t : thresholds) {
            if (std::strcmp(sync, "BLOCK") == 0 && t != 16) continue;  // BLOCK only at the default
            GatedStream g(0, true, t);
            double cpu;
            double w = median3(g, &cpu);
            out.push_back({kernel_us, t, sync, w, 100.0 * (w / base - 1.0), cpu, n});
        }
    }
    unsetenv("XSCHED_CUDA_SYNC");
    return out;
}

}  // namespace

int main(int argc, char **argv) {
    bool quick = false;
    bool overhead_only = false;
    int samples = 200;
    std::string json_path = "xsched_bench.json";
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--quick")) {
            quick = true;
            samples = 60;
        } else if (!std::strcmp(argv[i], "--overhead-only")) {
            overhead_only = true;
        } else if (!std::strcmp(argv[i], "--samples") && i + 1 < argc) {
            samples = std::atoi(argv[++i]);
        } else if (!std::strcmp(argv[i], "--json") && i + 1 < argc) {
            json_path = argv[++i];
        } else {
            std::fprintf(stderr, "usage: xsched_bench [--quick] [--overhead-only] [--samples N] [--json PATH]\n");
            return 2;
        }
    }
    char msg[256];
    if (XSchedCheckEnv(msg, sizeof(msg)) != kXSchedSuccess) {
        std::fprintf(stderr, "xsched_bench: %s\n", msg);
        return 2;
    }
    if (!XSchedCudaAvailable()) {
        std::fprintf(stderr, "xsched_bench: libxsched was built without the CUDA platform\n");
        return 1;
    }
    CK(cudaSetDevice(0));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    int per_sm = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, SpinKernel, kThreads, 0));
    g_full_grid = prop.multiProcessorCount * per_sm;
    std::printf("device: %s, %d SMs, %d blocks/SM of %d threads -> low grid %d blocks\n", prop.name,
                prop.multiProcessorCount, per_sm, kThreads, g_full_grid);
    CK(cudaFree(nullptr));

    const std::vector<int> lengths = {10, 50, 100};
    std::vector<LatencyResult> lat;
    for (int L : overhead_only ? std::vector<int>{} : lengths) {
        lat.push_back(MeasureLatency("plain streams", L, false, 0, false, samples));
        lat.push_back(MeasureLatency("stream priorities", L, false, 0, true, samples));
        for (int t : {16, 4}) {
            lat.push_back(MeasureLatency("xsched gate", L, true, t, false, samples));
            lat.push_back(MeasureLatency("xsched gate + stream prio", L, true, t, true, samples));
        }
    }
    constexpr int kBurst = 20;
    std::vector<LatencyResult> bursts;
    for (int L : overhead_only ? std::vector<int>{} : lengths) {
        bursts.push_back(MeasureLatency("alone (no low queue)", L, false, 0, false, samples / 2, kBurst, false));
        bursts.push_back(MeasureLatency("plain streams", L, false, 0, false, samples / 2, kBurst));
        bursts.push_back(MeasureLatency("stream priorities", L, false, 0, true, samples / 2, kBurst));
        for (int t : {16, 4}) {
            bursts.push_back(MeasureLatency("xsched gate", L, true, t, false, samples / 2, kBurst));
            bursts.push_back(MeasureLatency("xsched gate + stream prio", L, true, t, true, samples / 2, kBurst));
        }
    }
    std::vector<OverheadResult> ovh;
    for (int L : lengths) {
        auto r = MeasureOverhead(L, {2, 4, 8, 16, 32}, quick);
        ovh.insert(ovh.end(), r.begin(), r.end());
    }

    std::printf("\n(a) preemption latency, high unit submitted -> its kernel started (us)\n");
    std::printf("%-28s %6s %5s %6s %9s %9s %9s %9s\n", "config", "kern", "T", "n", "P50", "P90", "P99", "max");
    for (auto &r : lat) {
        std::printf("%-28s %4dus %5d %6zu %9.1f %9.1f %9.1f %9.1f\n", r.config.c_str(), r.kernel_us, r.threshold,
                    r.lat_us.size(), Pct(r.lat_us, 50), Pct(r.lat_us, 90), Pct(r.lat_us, 99), Pct(r.lat_us, 100));
    }
    std::printf("\n(a2) high burst of %d full-grid 10 us kernels: submit of the first -> all complete (us);\n"
                "     kern = length of the LOW queue's kernels\n",
                kBurst);
    std::printf("%-28s %6s %5s %6s %9s %9s %9s %9s\n", "config", "kern", "T", "n", "P50", "P90", "P99", "max");
    for (auto &r : bursts) {
        std::printf("%-28s %4dus %5d %6zu %9.1f %9.1f %9.1f %9.1f\n", r.config.c_str(), r.kernel_us, r.threshold,
                    r.lat_us.size(), Pct(r.lat_us, 50), Pct(r.lat_us, 90), Pct(r.lat_us, 99), Pct(r.lat_us, 100));
    }
    std::printf("\n(b) gating overhead, one stream, back-to-back kernels (T=0: ungated)\n");
    std::printf("%6s %5s %6s %7s %10s %10s %8s\n", "kern", "T", "sync", "n", "wall ms", "overhead", "cpu");
    for (auto &o : ovh) {
        std::printf("%4dus %5d %6s %7d %10.2f %9.2f%% %7.1f%%\n", o.kernel_us, o.threshold, o.sync.c_str(), o.n,
                    o.wall_ms, o.overhead_pct, o.cpu_pct);
    }

    FILE *f = std::fopen(json_path.c_str(), "w");
    if (f == nullptr) {
        std::fprintf(stderr, "xsched_bench: cannot write %s\n", json_path.c_str());
        return 1;
    }
    std::fprintf(f, "{\n  \"device\": \"%s\",\n  \"full_grid_blocks\": %d,\n  \"latency\": [\n", prop.name,
                 g_full_grid);
    for (size_t i = 0; i < lat.size(); ++i) {
        auto &r = lat[i];
        std::fprintf(f,
                     "    {\"config\": \"%s\", \"kernel_us\": %d, \"threshold\": %d, \"stream_prio\": %s, \"n\": %zu, "
                     "\"p50_us\": %.2f, \"p90_us\": %.2f, \"p99_us\": %.2f, \"max_us\": %.2f}%s\n",
                     r.config.c_str(), r.kernel_us, r.threshold, r.stream_prio ? "true" : "false", r.lat_us.size(),
                     Pct(r.lat_us, 50), Pct(r.lat_us, 90), Pct(r.lat_us, 99), Pct(r.lat_us, 100),
                     i + 1 < lat.size() ? "," : "");
    }
    std::fprintf(f, "  ],\n  \"burst\": [\n");
    for (size_t i = 0; i < bursts.size(); ++i) {
        auto &r = bursts[i];
        std::fprintf(f,
                     "    {\"config\": \"%s\", \"burst\": %d, \"low_kernel_us\": %d, \"threshold\": %d, "
                     "\"stream_prio\": %s, \"n\": %zu, \"p50_us\": %.2f, \"p90_us\": %.2f, \"p99_us\": %.2f, "
                     "\"max_us\": %.2f}%s\n",
                     r.config.c_str(), r.burst, r.kernel_us, r.threshold, r.stream_prio ? "true" : "false",
                     r.lat_us.size(), Pct(r.lat_us, 50), Pct(r.lat_us, 90), Pct(r.lat_us, 99), Pct(r.lat_us, 100),
                     i + 1 < bursts.size() ? "," : "");
    }
    std::fprintf(f, "  ],\n  \"overhead\": [\n");
    for (size_t i = 0; i < ovh.size(); ++i) {
        auto &o = ovh[i];
        std::fprintf(f,
                     "    {\"kernel_us\": %d, \"threshold\": %d, \"sync\": \"%s\", \"n\": %d, \"wall_ms\": %.3f, "
                     "\"overhead_pct\": %.3f, \"cpu_pct\": %.1f}%s\n",
                     o.kernel_us, o.threshold, o.sync.c_str(), o.n, o.wall_ms, o.overhead_pct, o.cpu_pct,
                     i + 1 < ovh.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
    std::printf("\nwrote %s\n", json_path.c_str());
    return 0;
}
