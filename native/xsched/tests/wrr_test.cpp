// wrr_test.cpp: weighted round robin shares, measured in units of work.
//
// Both queues' units run on one simulated device (a virtual timeline, see
// SimDevice), so the share of units executed is the share of device time and
// CPU contention on a loaded machine does not bias it. Units cost 200 us and a
// turn is 10 ms x weight (50 units per weight); threshold 4 keeps enough work
// queued to ride over scheduling hiccups, and the at most 4 units a queue
// still has in flight when its turn ends bias a 3:1 share by < 2 %.
#include <cmath>

#include "units.h"

using namespace xtest;

// Share() runs two continuously loaded queues of weights wa:wb under WRR for
// run_ms and returns a's share of the units executed (after a warm-up).
static double Share(int wa, int wb, int run_ms) {
    CHECK_OK(XHintSetScheduler(kSchedulerLocal, kPolicyWeightedRoundRobin));
    CHECK_OK(XHintTimeslice(10000));
    SimDevice device;
    Unit ua, ub;
    ua.device = ub.device = &device;
    ua.cost_us.store(200);
    ub.cost_us.store(200);
    HostXQueue a, b;
    CHECK_OK(XQueueSetLaunchConfig(a.xq, 4, 2));
    CHECK_OK(XQueueSetLaunchConfig(b.xq, 4, 2));
    CHECK_OK(XHintWeight(a.xq, wa));
    CHECK_OK(XHintWeight(b.xq, wb));
    Submitter sa(&a, &ua), sb(&b, &ub);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    uint64_t a0 = ua.executed.load(), b0 = ub.executed.load();
    std::this_thread::sleep_for(std::chrono::milliseconds(run_ms));
    uint64_t a1 = ua.executed.load(), b1 = ub.executed.load();
    std::printf("  suspended_us a=%llu b=%llu blocked a=%llu b=%llu\n", (unsigned long long)Row(a.xq).suspended_us,
                (unsigned long long)Row(b.xq).suspended_us, (unsigned long long)Row(a.xq).gate_blocked_us,
                (unsigned long long)Row(b.xq).gate_blocked_us);
    sa.Stop();
    sb.Stop();
    double da = static_cast<double>(a1 - a0), db = static_cast<double>(b1 - b0);
    std::printf("  WRR %d:%d: %llu vs %llu units, share %.4f\n", wa, wb, static_cast<unsigned long long>(a1 - a0),
                static_cast<unsigned long long>(b1 - b0), da / (da + db));
    CHECK(da + db > 5000);  // the device was busy
    CHECK_OK(XHintTimeslice(5000));
    CHECK_OK(XHintSetScheduler(kSchedulerLocal, kPolicyHighestPriorityFirst));
    return da / (da + db);
}

TEST(WrrEqualWeightsShareEvenly) {
    double s = Share(1, 1, 3000);
    CHECK(std::fabs(s - 0.5) <= 0.05 * 0.5);
}

TEST(WrrThreeToOne) {
    double s = Share(3, 1, 4000);
    CHECK(std::fabs(s - 0.75) <= 0.05 * 0.75);
}

// A queue that goes Idle gives up its turn at once: a bursty queue does not
// stall a continuously loaded one, and both make progress.
TEST(WrrIdleQueueGivesUpTurn) {
    CHECK_OK(XHintSetScheduler(kSchedulerLocal, kPolicyWeightedRoundRobin));
    CHECK_OK(XHintTimeslice(20000));
    Unit ua, ub;
    ua.cost_us.store(50);
    ub.cost_us.store(50);
    HostXQueue a, b;
    CHECK_OK(XHintWeight(b.xq, 10));  // a 200 ms turn, given up as soon as b is Idle
    Submitter sa(&a, &ua);
    for (int burst = 0; burst < 20; ++burst) {
        uint64_t before = ua.executed.load();
        for (int i = 0; i < 3; ++i) CHECK_OK(b.Launch(&ub));
        b.Drain();  // Idle edge: the rest of b's turn goes back to a
        CHECK(Row(a.xq).suspended == 0);
        CHECK(WaitFor([&] { return ua.executed.load() > before; }));
    }
    CHECK(ub.executed.load() == 60);
    sa.Stop();
    CHECK_OK(XHintTimeslice(5000));
    CHECK_OK(XHintSetScheduler(kSchedulerLocal, kPolicyHighestPriorityFirst));
}

// A lone Ready queue is never suspended, whatever its weight.
TEST(WrrLoneQueueRuns) {
    CHECK_OK(XHintSetScheduler(kSchedulerLocal, kPolicyWeightedRoundRobin));
    Unit ua;
    HostXQueue a, idle;
    Submitter sa(&a, &ua);
    for (int i = 0; i < 20; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        CHECK(Row(a.xq).suspended == 0);
    }
    sa.Stop();
    CHECK_OK(XHintSetScheduler(kSchedulerLocal, kPolicyHighestPriorityFirst));
}

// Context is a simulated llama context: one thread runs decode steps, each a
// short CPU unit (its own queue, as the CPU backend's) followed by 8 device
// units (its GPU queue), with an activity scope open on both queues as the
// server keeps it while a request runs.
struct Context {
    Unit cpu_unit, gpu_unit;
    HostXQueue cpu, gpu;
    std::atomic<uint64_t> steps{0};
    std::atomic<bool> stop{false};
    std::thread t;
    Context(SimDevice *device, int weight, uint64_t group) {
        gpu_unit.device = device;
        gpu_unit.cost_us.store(200);
        cpu_unit.cost_us.store(20);
        for (XQueueHandle xq : {cpu.xq, gpu.xq}) {
            CHECK_OK(XQueueSetLaunchConfig(xq, 4, 2));
            CHECK_OK(XHintWeight(xq, weight));
            CHECK_OK(XHintGroup(xq, group));
            CHECK_OK(XQueueBeginActive(xq));
        }
    }
    void Start() {
        t = std::thread([this] {
            while (!stop.load()) {
                if (cpu.Launch(&cpu_unit) != kXSchedSuccess) break;
                cpu.Drain();
                for (int i = 0; i < 8; ++i) {
                    if (gpu.Launch(&gpu_unit) != kXSchedSuccess) break;
                }
                gpu.Drain();
                steps.fetch_add(1);
            }
        });
    }
    void Stop() {
        stop.store(true);
        XQueueAbort(cpu.xq, 1);
        XQueueAbort(gpu.xq, 1);
        t.join();
        for (XQueueHandle xq : {cpu.xq, gpu.xq}) {
            CHECK_OK(XQueueEndActive(xq));
            CHECK_OK(XQueueAbort(xq, 0));
        }
    }
};

struct Steps {
    double a, b;  // steps per second of contexts a and b
};

// ContextSteps() runs two simulated contexts (weights wa:wb) under WRR with a
// 10 ms quantum; `grouped` puts each context's two queues into one group.
static Steps ContextSteps(int wa, int wb, bool grouped, int run_ms) {
    CHECK_OK(XHintSetScheduler(kSchedulerLocal, kPolicyWeightedRoundRobin));
    CHECK_OK(XHintTimeslice(10000));
    SimDevice device;
    Steps out{0, 0};
    {
        Context a(&device, wa, grouped ? 1 : 0), b(&device, wb, grouped ? 2 : 0);
        a.Start();
        b.Start();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        uint64_t a0 = a.steps.load(), b0 = b.steps.load();
        std::this_thread::sleep_for(std::chrono::milliseconds(run_ms));
        uint64_t a1 = a.steps.load(), b1 = b.steps.load();
        a.Stop();
        b.Stop();
        out = Steps{(a1 - a0) * 1000.0 / run_ms, (b1 - b0) * 1000.0 / run_ms};
    }
    std::printf("  WRR %d:%d %s: %.1f vs %.1f steps/s\n", wa, wb, grouped ? "grouped" : "ungrouped", out.a, out.b);
    CHECK_OK(XHintTimeslice(5000));
    CHECK_OK(XHintSetScheduler(kSchedulerLocal, kPolicyHighestPriorityFirst));
    return out;
}

// One context's CPU and GPU queues share a turn: a decode step never waits for
// a rotation between its own queues, and the shares follow the weights.
// Ungrouped (the control), every step costs a whole round of four turns.
TEST(WrrGroupsShareOneTurn) {
    Steps g = ContextSteps(3, 1, true, 3000);
    Steps u = ContextSteps(3, 1, false, 1500);
    // a step is ~1.6 ms of device time: ~600 steps/s in all when grouped,
    // at most one step per 4 x 10 ms round (25 steps/s per context) ungrouped
    CHECK(g.a + g.b > 2 * (u.a + u.b));
    CHECK(g.a + g.b > 150);
    // the weights show (ungrouped, the defect gives about 1:1); the bound is wider than the GPU target's 0.3
    // because a step's CPU unit and thread wake-ups run on the host, which a loaded machine delays
    CHECK(std::fabs(g.a / g.b - 3.0) <= 0.6);
}

// XHintGroup() shows in the snapshot; 0 leaves the group; handle 0 is invalid.
TEST(WrrGroupHintErrors) {
    HostXQueue a;
    CHECK_OK(XHintGroup(a.xq, 7));
    CHECK(Row(a.xq).group == 7);
    CHECK_OK(XHintGroup(a.xq, 0));
    CHECK(Row(a.xq).group == 0);
    CHECK_EQ_RES(XHintGroup(0, 1), kXSchedErrorInvalidValue);
}

XT_MAIN()
