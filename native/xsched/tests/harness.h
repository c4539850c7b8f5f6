// harness.h: a dependency-free test harness (TEST, CHECK, a shared fixture).
#ifndef XSCHED_TESTS_HARNESS_H_
#define XSCHED_TESTS_HARNESS_H_

#include <dirent.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "xsched/xsched.h"

namespace xtest {

// TestCase is one registered test.
struct TestCase {
    const char *name;
    void (*fn)();
};

// Registry() lists the tests of this executable.
inline std::vector<TestCase> &Registry() {
    static std::vector<TestCase> r;
    return r;
}

// failures counts failed checks of the current test.
inline int &Failures() {
    static int f = 0;
    return f;
}

// Registrar adds a test at static-initialisation time.
struct Registrar {
    Registrar(const char *name, void (*fn)()) { Registry().push_back({name, fn}); }
};

// ThreadCount() returns the number of threads of this process.
inline int ThreadCount() {
    int n = 0;
    if (DIR *d = opendir("/proc/self/task")) {
        while (dirent *e = readdir(d)) {
            if (e->d_name[0] != '.') ++n;
        }
        closedir(d);
    }
    return n;
}

// WaitFor() polls pred every millisecond until true or timeout_ms passes (a
// generous guard against hangs, not a timing assertion). Returns pred().
inline bool WaitFor(const std::function<bool()> &pred, int timeout_ms = 20000) {
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

// SpinUs() busy-waits for us microseconds of wall time (simulated unit cost).
inline void SpinUs(int us) {
    auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
    while (std::chrono::steady_clock::now() < end) {
    }
}

// LiveQueues() returns the number of live XQueues from the snapshot API.
inline size_t LiveQueues() {
    XSchedSnapshotInfo info;
    size_t written = 0;
    if (XSchedSnapshot(&info, nullptr, 0, &written) != kXSchedSuccess) return static_cast<size_t>(-1);
    return info.n_queues;
}

// Row() returns the snapshot row of xq (zeroed if absent).
inline XQueueInfo Row(XQueueHandle xq) {
    XQueueInfo rows[64];
    XSchedSnapshotInfo info;
    size_t n = 0;
    XQueueInfo out;
    std::memset(&out, 0, sizeof(out));
    if (XSchedSnapshot(&info, rows, 64, &n) != kXSchedSuccess) return out;
    for (size_t i = 0; i < n; ++i) {
        if (rows[i].handle == xq) out = rows[i];
    }
    return out;
}

}  // namespace xtest

#define XT_CAT2(a, b) a##b
#define XT_CAT(a, b) XT_CAT2(a, b)
// TEST(name) defines and registers a test function.
#define TEST(name)                                              \
    static void name();                                         \
    static ::xtest::Registrar XT_CAT(reg_, name)(#name, &name); \
    static void name()
// CHECK(cond) records a failure (and continues) when cond is false.
#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            ++::xtest::Failures();                                                        \
        }                                                                                 \
    } while (0)
// CHECK_OK(expr) checks that an XResult expression is kXSchedSuccess.
#define CHECK_EQ_RES(expr, want)                                                                                 \
    do {                                                                                                         \
        XResult r_ = (expr);                                                                                     \
        if (r_ != (want)) {                                                                                      \
            std::fprintf(stderr, "%s:%d: %s returned %s, want %s\n", __FILE__, __LINE__, #expr, XResultName(r_), \
                         XResultName(want));                                                                     \
            ++::xtest::Failures();                                                                               \
        }                                                                                                        \
    } while (0)
#define CHECK_OK(expr) CHECK_EQ_RES(expr, kXSchedSuccess)
// REQUIRE(cond) fails and leaves the test at once.
#define REQUIRE(cond)                                                                       \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            std::fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
            ++::xtest::Failures();                                                          \
            return;                                                                         \
        }                                                                                   \
    } while (0)

// XT_MAIN runs every test (or the one named in argv[1]) and checks that no
// queue and no thread outlived it.
#define XT_MAIN() \
    int main(int argc, char **argv) { return ::xtest::RunAll(argc, argv); }

namespace xtest {

// WarmUp() creates and destroys one queue so that lazily started runtime
// threads (e.g. ThreadSanitizer's) exist before thread counts are taken.
inline void WarmUp() {
    HwQueueHandle hwq = 0;
    XQueueHandle xq = 0;
    if (HostQueueCreate(&hwq) == kXSchedSuccess) {
        if (XQueueCreate(&xq, hwq, kPreemptLevelBlock, kQueueCreateFlagBlockingSubmit) == kXSchedSuccess) {
            XQueueGate(xq);
            XQueueSynchronized(xq);
            XQueueDestroy(xq);
        }
        HwQueueDestroy(hwq);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

// RunAll() runs every test (or the one named in argv[1]) and checks that no
// queue and no thread outlived it.
inline int RunAll(int argc, char **argv) {
    int failed = 0;
    WarmUp();
    for (auto &t : Registry()) {
        if (argc > 1 && std::strcmp(argv[1], t.name) != 0) continue;
        Failures() = 0;
        const int base_threads = ThreadCount();
        auto t0 = std::chrono::steady_clock::now();
        t.fn();
        if (LiveQueues() != 0) {
            std::fprintf(stderr, "%s: XQueues leaked\n", t.name);
            ++Failures();
        }
        if (!WaitFor([&] { return ThreadCount() <= base_threads; }, 5000)) {
            std::fprintf(stderr, "%s: threads leaked (%d > %d)\n", t.name, ThreadCount(), base_threads);
            ++Failures();
        }
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("%s %s (%.2f s)\n", Failures() ? "FAIL" : "ok  ", t.name, s);
        std::fflush(stdout);
        if (Failures()) ++failed;
    }
    return failed ? 1 : 0;
}

}  // namespace xtest

#endif  // XSCHED_TESTS_HARNESS_H_
