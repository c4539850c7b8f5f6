// hpf_test.cpp: highest-priority-first, activity scopes, changes under load.
#include "units.h"

using namespace xtest;

// UseHpf() selects HPF for the test (tests in one process share the scheduler).
static void UseHpf() { XHintSetScheduler(kSchedulerLocal, kPolicyHighestPriorityFirst); }

// A high queue's first gate suspends the low queue before it returns: the low
// queue executes at most `threshold` more units (those already in flight) and
// admits none until the high queue is Idle again.
TEST(HpfSuspendsLowWithinThreshold) {
    UseHpf();
    Unit lu, hu;
    HostXQueue low, high;
    const int64_t threshold = 4;
    CHECK_OK(XQueueSetLaunchConfig(low.xq, threshold, 2));
    CHECK_OK(XHintPriority(low.xq, 0));
    CHECK_OK(XHintPriority(high.xq, 10));
    lu.cost_us.store(300);
    hu.cost_us.store(100);
    for (int round = 0; round < 5; ++round) {
        Submitter s(&low, &lu);
        REQUIRE(WaitFor([&] { return lu.executed.load() >= 10; }));
        CHECK_OK(high.Launch(&hu));  // Ready edge: low is suspended synchronously
        uint64_t executed_at_ready = lu.executed.load();
        uint64_t gated_at_ready = Row(low.xq).units_launched;
        CHECK(Row(low.xq).suspended == 1);
        for (int i = 0; i < 30; ++i) CHECK_OK(high.Launch(&hu));
        HwQueueSynchronize(high.hwq);
        // Everything the high queue did happened while low stayed suspended.
        CHECK(Row(low.xq).units_launched == gated_at_ready);
        CHECK(Row(low.xq).suspended == 1);
        REQUIRE(WaitFor([&] { return lu.executed.load() == gated_at_ready; }));
        CHECK(lu.executed.load() - executed_at_ready <= static_cast<uint64_t>(threshold));
        XQueueSynchronized(high.xq);  // Idle edge: low resumes
        CHECK(Row(low.xq).suspended == 0);
        CHECK(WaitFor([&] { return Row(low.xq).units_launched > gated_at_ready + 3; }));
        s.Stop();
    }
    CHECK(Row(low.xq).suspended_us > 0);
    CHECK(hu.executed.load() == 5 * 31);
}

// An activity scope counts as Ready: the low queue stays suspended between the
// high queue's launches and resumes when the scope closes.
TEST(HpfActivityScopeHoldsLowBack) {
    UseHpf();
    Unit lu, hu;
    HostXQueue low, high;
    CHECK_OK(XHintPriority(high.xq, 5));
    lu.cost_us.store(100);
    Submitter s(&low, &lu);
    REQUIRE(WaitFor([&] { return lu.executed.load() >= 5; }));
    CHECK_OK(XQueueBeginActive(high.xq));
    CHECK(Row(low.xq).suspended == 1);
    uint64_t gated = Row(low.xq).units_launched;
    for (int step = 0; step < 5; ++step) {  // decode-like steps with host work in between
        for (int i = 0; i < 5; ++i) CHECK_OK(high.Launch(&hu));
        high.Drain();
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        CHECK(Row(low.xq).suspended == 1);
    }
    CHECK(Row(low.xq).units_launched == gated);
    CHECK_OK(XQueueEndActive(high.xq));
    CHECK(Row(low.xq).suspended == 0);
    CHECK(WaitFor([&] { return Row(low.xq).units_launched > gated; }));
    s.Stop();
}

// Equal priorities run together; an idle high queue does not hold back.
TEST(HpfTiesAndIdleHigh) {
    UseHpf();
    Unit ua, ub;
    HostXQueue a, b, idle_high;
    CHECK_OK(XHintPriority(idle_high.xq, 100));
    ua.cost_us.store(50);
    ub.cost_us.store(50);
    Submitter sa(&a, &ua), sb(&b, &ub);
    CHECK(WaitFor([&] { return ua.executed.load() > 50 && ub.executed.load() > 50; }));
    CHECK(Row(a.xq).suspended == 0 && Row(b.xq).suspended == 0);
    sa.Stop();
    sb.Stop();
}

// Priority and policy changes under load apply at once and never deadlock.
TEST(PriorityAndPolicyChangesUnderLoad) {
    UseHpf();
    Unit ua, ub;
    HostXQueue a, b;
    ua.cost_us.store(30);
    ub.cost_us.store(30);
    Submitter sa(&a, &ua), sb(&b, &ub);
    REQUIRE(WaitFor([&] { return ua.executed.load() > 10 && ub.executed.load() > 10; }));
    for (int i = 0; i < 40; ++i) {
        bool a_high = i % 2 == 0;
        CHECK_OK(XHintPriority(a.xq, a_high ? 3 : -3));
        // Both queues are Ready (their submitters never stop), so the lower one is held back.
        CHECK(Row(a_high ? b.xq : a.xq).suspended == 1);
        CHECK(Row(a_high ? a.xq : b.xq).suspended == 0);
        uint64_t before = (a_high ? ua : ub).executed.load();
        CHECK(WaitFor([&] { return (a_high ? ua : ub).executed.load() > before + 2; }));
        CHECK_OK(XHintWeight(a.xq, 1 + i % 5));
    }
    CHECK_OK(XHintPriority(a.xq, 0));  // equal priorities: HPF runs both
    const XPolicyType cycle[] = {kPolicyWeightedRoundRobin, kPolicyNone, kPolicyHighestPriorityFirst, kPolicyNone,
                                 kPolicyWeightedRoundRobin};
    for (XPolicyType p : cycle) {
        CHECK_OK(XHintSetScheduler(kSchedulerLocal, p));
        uint64_t ba = ua.executed.load(), bb = ub.executed.load();
        // Under every policy both queues make progress eventually (WRR alternates).
        CHECK(WaitFor([&] { return ua.executed.load() > ba + 2 && ub.executed.load() > bb + 2; }));
        if (p == kPolicyNone) CHECK(Row(a.xq).suspended == 0 && Row(b.xq).suspended == 0);
    }
    CHECK_OK(XHintSetScheduler(kSchedulerAppManaged, kPolicyUnknown));
    CHECK(Row(a.xq).suspended == 0 && Row(b.xq).suspended == 0);
    XSchedSnapshotInfo info;
    size_t n;
    CHECK_OK(XSchedSnapshot(&info, nullptr, 0, &n));
    CHECK(info.scheduler == kSchedulerAppManaged);
    CHECK_OK(XHintSetScheduler(kSchedulerLocal, kPolicyHighestPriorityFirst));
    // Destroying the high queue under load releases the low one.
    CHECK_OK(XHintPriority(a.xq, 50));
    CHECK(Row(b.xq).suspended == 1);
    sa.Stop();
    CHECK_OK(XQueueDestroy(a.xq));
    a.xq = 0;
    CHECK(Row(b.xq).suspended == 0);
    uint64_t bb = ub.executed.load();
    CHECK(WaitFor([&] { return ub.executed.load() > bb + 2; }));
    sb.Stop();
}

// Many queues created and destroyed from several threads while others gate.
TEST(ConcurrentCreateDestroy) {
    UseHpf();
    Unit ub;
    HostXQueue base;
    CHECK_OK(XHintPriority(base.xq, -5));  // always Ready: must not starve the others
    ub.cost_us.store(20);
    Submitter sb(&base, &ub);
    std::vector<std::thread> ts;
    for (int t = 0; t < 3; ++t) {
        ts.emplace_back([t] {
            for (int i = 0; i < 20; ++i) {
                Unit u;
                HostXQueue q;
                XHintPriority(q.xq, (i + t) % 3 - 1);
                for (int k = 0; k < 10; ++k) q.Launch(&u);
                if (i % 2) q.Drain();
            }
        });
    }
    for (auto &t : ts) t.join();
    sb.Stop();
    CHECK(LiveQueues() == 1);
}

XT_MAIN()
