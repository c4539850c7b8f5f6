// cpu_bench.cpp: the cost of the gate on the CPU (host queue), local or joined to a global scheduler
// (XSCHED_SCHEDULER=PATH), and the round trip of a Ready edge. C API only, so the same source measures any
// build of libxsched (docs/scheduler.md, "Measurements").
//
//   xsched_cpu_bench [--gates N] [--runs R] [--edges E]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "xsched/xsched.h"

namespace {

using Clock = std::chrono::steady_clock;

XResult Noop(HwQueueHandle, void *) { return kXSchedSuccess; }

// GatesPerSecond() gates n units; `launch` also launches a no-op unit on the host queue per gate (default
// launch config), otherwise nothing is launched and the queue reports Synchronized every 4096 gates.
double GatesPerSecond(XQueueHandle xq, HwQueueHandle hwq, long n, bool launch) {
    auto t0 = Clock::now();
    for (long i = 0; i < n; ++i) {
        XQueueGate(xq);
        if (launch) {
            HostQueueLaunch(hwq, &Noop, nullptr);
        } else if ((i & 4095) == 4095) {
            XQueueSynchronized(xq);
        }
    }
    if (launch) HwQueueSynchronize(hwq);
    XQueueSynchronized(xq);
    return n / std::chrono::duration<double>(Clock::now() - t0).count();
}

double Median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char **argv) {
    long gates = 2000000;
    int runs = 7, edges = 2000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--gates")) gates = std::atol(argv[i + 1]);
        if (!std::strcmp(argv[i], "--runs")) runs = std::atoi(argv[i + 1]);
        if (!std::strcmp(argv[i], "--edges")) edges = std::atoi(argv[i + 1]);
    }
    HwQueueHandle hwq = 0;
    XQueueHandle xq = 0;
    if (HostQueueCreate(&hwq) != kXSchedSuccess ||
        XQueueCreate(&xq, hwq, kPreemptLevelBlock, kQueueCreateFlagBlockingSubmit) != kXSchedSuccess) {
        std::fprintf(stderr, "cpu_bench: cannot create a host queue\n");
        return 1;
    }
    XSchedSnapshotInfo info;
    size_t n = 0;
    XSchedSnapshot(&info, nullptr, 0, &n);
    const char *mode = info.scheduler == kSchedulerGlobal ? "joined" : "local";
    XQueueBeginActive(xq);  // Ready for the whole measurement: no edges inside the loops
    std::vector<double> bare, launched;
    int64_t t = 0, b = 0;
    XQueueGetLaunchConfig(xq, &t, &b);
    for (int r = 0; r < runs; ++r) {
        XQueueSetLaunchConfig(xq, 65536, 65536);
        bare.push_back(GatesPerSecond(xq, hwq, gates, false));
        XQueueSetLaunchConfig(xq, t, b);
        launched.push_back(GatesPerSecond(xq, hwq, gates / 4, true));
    }
    XQueueEndActive(xq);
    std::vector<double> us;
    for (int i = 0; i < edges; ++i) {  // Ready edges (an activity scope opens), each decided before it returns
        auto t0 = Clock::now();
        XQueueBeginActive(xq);
        us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        XQueueEndActive(xq);
    }
    std::sort(us.begin(), us.end());
    std::printf("{\"mode\": \"%s\", \"gates_per_s\": %.0f, \"gates_per_s_runs\": [", mode, Median(bare));
    for (size_t i = 0; i < bare.size(); ++i) std::printf("%s%.0f", i ? ", " : "", bare[i]);
    std::printf("], \"gate_ns\": %.1f, \"gate_launch_per_s\": %.0f, \"gate_launch_ns\": %.1f, "
                "\"ready_edge_us\": {\"n\": %zu, \"p50\": %.1f, \"p99\": %.1f, \"max\": %.1f}}\n",
                1e9 / Median(bare), Median(launched), 1e9 / Median(launched), us.size(), us[us.size() / 2],
                us[us.size() * 99 / 100], us.back());
    XQueueDestroy(xq);
    HwQueueDestroy(hwq);
    return 0;
}
