// xqueue_test.cpp: gate, progressive launching, scopes, abort, destroy, async submit.
#include "units.h"

using namespace xtest;

TEST(GateAndSynchronize) {
    Unit u;
    HostXQueue q;
    REQUIRE(q.xq != 0);
    XQueueState s = kQueueStateUnknown;
    CHECK_OK(XQueueQuery(q.xq, &s));
    CHECK(s == kQueueStateIdle);
    for (int i = 0; i < 100; ++i) CHECK_OK(q.Launch(&u));
    CHECK_OK(XQueueQuery(q.xq, &s));
    CHECK(s == kQueueStateReady);
    q.Drain();
    CHECK_OK(XQueueQuery(q.xq, &s));
    CHECK(s == kQueueStateIdle);
    CHECK(u.executed.load() == 100);
    XQueueInfo row = Row(q.xq);
    CHECK(row.units_launched == 100);
    CHECK(row.in_flight == 0);
    int64_t n = 0;
    CHECK_OK(XQueueProfileHwCommandCount(q.xq, &n));
    CHECK(n == 100);
}

TEST(CreateIsIdempotentAndBound) {
    HostXQueue q;
    XQueueHandle again = 0, got = 0;
    CHECK_OK(XQueueCreate(&again, q.hwq, kPreemptLevelBlock, kQueueCreateFlagBlockingSubmit));
    CHECK(again == q.xq);
    CHECK_OK(XQueueGet(&got, q.hwq));
    CHECK(got == q.xq);
    CHECK_EQ_RES(HwQueueDestroy(q.hwq), kXSchedErrorNotAllowed);
    CHECK(LiveQueues() == 1);
}

// The gate never lets more than `threshold` units be launched and incomplete,
// whatever the unit costs, and the launch config can change under load.
TEST(ThresholdBatchAccounting) {
    const int64_t configs[][2] = {{4, 2}, {1, 1}, {16, 8}, {5, 5}, {3, 1}};
    for (auto &c : configs) {
        Unit u;
        HostXQueue q;
        CHECK_OK(XQueueSetLaunchConfig(q.xq, c[0], c[1]));
        XQueueInfo row = Row(q.xq);
        CHECK(row.threshold == c[0] && row.batch_size == c[1]);
        int64_t t = 0, b = 0;
        CHECK_OK(XQueueGetLaunchConfig(q.xq, &t, &b));
        CHECK(t == c[0] && b == c[1]);
        uint64_t worst = 0;
        for (int i = 1; i <= 600; ++i) {
            u.cost_us.store(i % 7 == 0 ? 300 : (i % 3) * 20);
            CHECK_OK(XQueueGate(q.xq));
            uint64_t in_flight = static_cast<uint64_t>(i) - u.executed.load();
            if (in_flight > worst) worst = in_flight;
            HostQueueLaunch(q.hwq, &RunUnit, &u);
        }
        CHECK(worst <= static_cast<uint64_t>(c[0]));
        CHECK(worst >= 1);
        q.Drain();
        CHECK(u.executed.load() == 600);
    }
}

// A held executor makes the gate block exactly at the threshold.
TEST(GateBlocksAtThreshold) {
    Unit u;
    HostXQueue q;
    CHECK_OK(XQueueSetLaunchConfig(q.xq, 4, 2));
    std::atomic<bool> hold{true};
    u.hold = &hold;
    for (int i = 0; i < 4; ++i) CHECK_OK(q.Launch(&u));
    std::atomic<bool> done{false};
    std::thread t([&] {
        CHECK_OK(q.Launch(&u));
        done.store(true);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    CHECK(!done.load());  // 4 in flight: the fifth waits for the first marker
    hold.store(false);
    t.join();
    CHECK(done.load());
    q.Drain();
    CHECK(u.executed.load() == 5);
    CHECK(Row(q.xq).gate_blocked_us > 0);
}

TEST(ActivityScopesNest) {
    Unit u;
    HostXQueue q;
    XQueueState s;
    CHECK_EQ_RES(XQueueEndActive(q.xq), kXSchedErrorNotAllowed);
    CHECK_OK(XQueueBeginActive(q.xq));
    CHECK_OK(XQueueBeginActive(q.xq));
    CHECK_OK(XQueueQuery(q.xq, &s));
    CHECK(s == kQueueStateReady);
    CHECK(Row(q.xq).active_scopes == 2);
    CHECK_OK(q.Launch(&u));
    q.Drain();  // Synchronized inside a scope: stays Ready
    CHECK_OK(XQueueQuery(q.xq, &s));
    CHECK(s == kQueueStateReady);
    CHECK_OK(XQueueEndActive(q.xq));
    CHECK_OK(XQueueQuery(q.xq, &s));
    CHECK(s == kQueueStateReady);
    CHECK_OK(XQueueEndActive(q.xq));
    CHECK_OK(XQueueQuery(q.xq, &s));
    CHECK(s == kQueueStateIdle);
    CHECK_EQ_RES(XQueueEndActive(q.xq), kXSchedErrorNotAllowed);
    // A scope closed with work still unsynchronized stays Ready until Synchronized.
    CHECK_OK(XQueueBeginActive(q.xq));
    CHECK_OK(q.Launch(&u));
    CHECK_OK(XQueueEndActive(q.xq));
    CHECK_OK(XQueueQuery(q.xq, &s));
    CHECK(s == kQueueStateReady);
    q.Drain();
    CHECK_OK(XQueueQuery(q.xq, &s));
    CHECK(s == kQueueStateIdle);
}

TEST(AbortWhileSuspended) {
    HostXQueue q;
    CHECK_OK(XQueueSuspend(q.xq, kQueueSuspendFlagNone));
    std::atomic<int> res{-1};
    std::thread t([&] { res.store(XQueueGate(q.xq)); });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(res.load() == -1);
    CHECK_OK(XQueueAbort(q.xq, 1));
    t.join();
    CHECK(res.load() == kXSchedErrorAborted);
    CHECK_EQ_RES(XQueueGate(q.xq), kXSchedErrorAborted);  // at once while aborted
    CHECK_OK(XQueueAbort(q.xq, 0));
    CHECK_OK(XQueueResume(q.xq, kQueueResumeFlagNone));
    CHECK_OK(XQueueGate(q.xq));
    CHECK_OK(XQueueSynchronized(q.xq));
}

TEST(AbortWhileWaitingForThreshold) {
    Unit u;
    HostXQueue q;
    CHECK_OK(XQueueSetLaunchConfig(q.xq, 2, 1));
    std::atomic<bool> hold{true};
    u.hold = &hold;
    CHECK_OK(q.Launch(&u));
    CHECK_OK(q.Launch(&u));
    std::atomic<int> res{-1};
    std::thread t([&] { res.store(XQueueGate(q.xq)); });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(res.load() == -1);
    CHECK_OK(XQueueAbort(q.xq, 1));
    t.join();
    CHECK(res.load() == kXSchedErrorAborted);
    hold.store(false);
    CHECK_OK(XQueueAbort(q.xq, 0));
    q.Drain();
}

TEST(DestroyWhileSuspendedWithBlockedGate) {
    HwQueueHandle hwq = 0;
    XQueueHandle xq = 0;
    CHECK_OK(HostQueueCreate(&hwq));
    CHECK_OK(XQueueCreate(&xq, hwq, kPreemptLevelBlock, kQueueCreateFlagBlockingSubmit));
    CHECK_OK(XQueueSuspend(xq, kQueueSuspendFlagNone));
    std::atomic<int> res{-1};
    std::thread t([&] { res.store(XQueueGate(xq)); });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK_OK(XQueueDestroy(xq));
    t.join();
    CHECK(res.load() == kXSchedErrorNotFound);
    CHECK_EQ_RES(XQueueGate(xq), kXSchedErrorNotFound);
    CHECK_EQ_RES(XQueueDestroy(xq), kXSchedErrorNotFound);
    CHECK_OK(HwQueueDestroy(hwq));
    CHECK_EQ_RES(HwQueueDestroy(hwq), kXSchedErrorNotFound);
}

TEST(UserSuspendAccounting) {
    HostXQueue q;
    CHECK_OK(XQueueSuspend(q.xq, kQueueSuspendFlagSyncHwQueue));
    CHECK_OK(XQueueSuspend(q.xq, kQueueSuspendFlagNone));  // idempotent
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    XQueueInfo row = Row(q.xq);
    CHECK(row.suspended == 1);
    CHECK(row.suspended_us >= 1000);
    CHECK_OK(XQueueResume(q.xq, kQueueResumeFlagNone));
    CHECK_OK(XQueueResume(q.xq, kQueueResumeFlagNone));
    CHECK(Row(q.xq).suspended == 0);
}

// LaunchUnit is an async command: it launches one simulated unit on hwq.
static XResult LaunchUnit(HwQueueHandle hwq, void *data) { return HostQueueLaunch(hwq, &RunUnit, data); }

TEST(AsyncSubmitAndWaitAll) {
    Unit u;
    HostXQueue q(kQueueCreateFlagNone);
    REQUIRE(q.xq != 0);
    CHECK_OK(XQueueSetLaunchConfig(q.xq, 4, 2));
    u.cost_us.store(20);
    for (int i = 0; i < 300; ++i) {
        HwCommandHandle c = 0;
        CHECK_OK(HwCommandCreateCallback(&c, &LaunchUnit, &u));
        CHECK_OK(XQueueSubmit(q.xq, c));
        CHECK_EQ_RES(XQueueSubmit(q.xq, c), kXSchedErrorNotFound);  // ownership passed
    }
    CHECK_OK(XQueueWaitAll(q.xq));
    CHECK(u.executed.load() == 300);
    XQueueState s;
    CHECK_OK(XQueueQuery(q.xq, &s));
    CHECK(s == kQueueStateIdle);
    // WaitAll waits while the queue is suspended.
    CHECK_OK(XQueueSuspend(q.xq, kQueueSuspendFlagNone));
    HwCommandHandle c = 0;
    CHECK_OK(HwCommandCreateCallback(&c, &LaunchUnit, &u));
    CHECK_OK(XQueueSubmit(q.xq, c));
    std::atomic<bool> waited{false};
    std::thread t([&] {
        CHECK_OK(XQueueWaitAll(q.xq));
        waited.store(true);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(!waited.load());
    CHECK_OK(XQueueResume(q.xq, kQueueResumeFlagNone));
    t.join();
    CHECK(u.executed.load() == 301);
    // Destroy launches what is still pending, even while suspended.
    CHECK_OK(XQueueSuspend(q.xq, kQueueSuspendFlagNone));
    for (int i = 0; i < 10; ++i) {
        CHECK_OK(HwCommandCreateCallback(&c, &LaunchUnit, &u));
        CHECK_OK(XQueueSubmit(q.xq, c));
    }
    CHECK_OK(XQueueDestroy(q.xq));
    q.xq = 0;
    CHECK(u.executed.load() == 311);
}

TEST(SubmitOnBlockingQueueNotAllowed) {
    Unit u;
    HostXQueue q;
    HwCommandHandle c = 0;
    CHECK_OK(HwCommandCreateCallback(&c, &LaunchUnit, &u));
    CHECK_EQ_RES(XQueueSubmit(q.xq, c), kXSchedErrorNotAllowed);
    CHECK_OK(HwCommandDestroy(c));  // still ours after the refusal
    CHECK_EQ_RES(HwCommandDestroy(c), kXSchedErrorNotFound);
    CHECK_OK(XQueueWaitAll(q.xq));  // nothing submitted: returns at once
}

// DestroyFromCallback is the state of commands that try to destroy the queues running them.
struct DestroyFromCallback {
    XQueueHandle xq = 0;
    HwQueueHandle hwq = 0;
    std::atomic<int> xq_result{-1};
    std::atomic<int> hwq_result{-1};
};

// DestroyOwnQueues is an async command (it runs on the launch worker) that destroys its own XQueue and HwQueue.
static XResult DestroyOwnQueues(HwQueueHandle, void *data) {
    auto *d = static_cast<DestroyFromCallback *>(data);
    d->xq_result.store(XQueueDestroy(d->xq));
    d->hwq_result.store(HwQueueDestroy(d->hwq));
    return kXSchedSuccess;
}

// A command's callback cannot destroy the queue that runs it (the worker would go on in freed memory, found
// by the review under AddressSanitizer): NotAllowed, and the queue keeps working; a host callback cannot
// destroy its own host queue either. The sanitizer run of scripts/sanitize-core.sh covers the memory side.
TEST(DestroyFromOwnCallbackNotAllowed) {
    Unit u;
    DestroyFromCallback d;
    HostXQueue q(kQueueCreateFlagNone);
    REQUIRE(q.xq != 0);
    d.xq = q.xq;
    d.hwq = q.hwq;
    HwCommandHandle c = 0;
    CHECK_OK(HwCommandCreateCallback(&c, &DestroyOwnQueues, &d));
    CHECK_OK(XQueueSubmit(q.xq, c));
    CHECK_OK(XQueueWaitAll(q.xq));
    CHECK(d.xq_result.load() == kXSchedErrorNotAllowed);
    CHECK(d.hwq_result.load() == kXSchedErrorNotAllowed);  // still bound to the XQueue
    CHECK_OK(HwCommandCreateCallback(&c, &LaunchUnit, &u));
    CHECK_OK(XQueueSubmit(q.xq, c));
    CHECK_OK(XQueueWaitAll(q.xq));
    CHECK(u.executed.load() == 1);

    // on the host executor (a blocking-submit queue's launched unit)
    HostXQueue b;
    DestroyFromCallback e;
    e.xq = b.xq;
    e.hwq = b.hwq;
    CHECK_OK(XQueueGate(b.xq));
    CHECK_OK(HostQueueLaunch(b.hwq, &DestroyOwnQueues, &e));
    b.Drain();
    CHECK(e.xq_result.load() == kXSchedErrorNotAllowed);
    CHECK(e.hwq_result.load() == kXSchedErrorNotAllowed);
    HwQueueHandle lone = 0;
    CHECK_OK(HostQueueCreate(&lone));
    DestroyFromCallback f;
    f.hwq = lone;
    f.xq = 0;
    CHECK_OK(HostQueueLaunch(lone, &DestroyOwnQueues, &f));
    CHECK_OK(HwQueueSynchronize(lone));
    CHECK(f.xq_result.load() == kXSchedErrorInvalidValue);
    CHECK(f.hwq_result.load() == kXSchedErrorNotAllowed);  // unbound, but its own executor
    CHECK_OK(HwQueueDestroy(lone));
}

XT_MAIN()
