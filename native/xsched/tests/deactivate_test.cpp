// deactivate_test.cpp: Level 2 (XQueueSetLevel, kPreemptLevelDeactivate) on the host platform, whose queues
// emulate device barriers: a suspended queue's gates do not block, its units wait behind barriers that the
// core holds, the unit that runs ends and no later one starts; the resume, an abort, a return to Level 1 and a
// destroy release them; the preemption record measures the device's stop, not the launching thread.
#include "units.h"

using namespace xtest;

namespace {

void UseHpf() { XHintSetScheduler(kSchedulerLocal, kPolicyHighestPriorityFirst); }

// Launch2() gates, launches and reports one unit as launched (what a Level-2 caller does).
XResult Launch2(HostXQueue &q, Unit *u) {
    XResult r = XQueueGate(q.xq);
    if (r != kXSchedSuccess) return r;
    r = HostQueueLaunch(q.hwq, &RunUnit, u);
    if (r != kXSchedSuccess) return r;
    return XQueueUnitLaunched(q.xq);
}

// Sleep() waits ms milliseconds.
void Sleep(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// Held is a low queue at Level 2 under a high queue, with `first` units of cost_us launched before the
// high queue's Ready edge.
struct Held {
    Unit lu;
    HostXQueue low, high;
    explicit Held(int first, int cost_us, int64_t ahead = 64) {
        UseHpf();
        XHintPriority(low.xq, 0);
        XHintPriority(high.xq, 10);
        lu.cost_us.store(cost_us);
        CHECK_OK(XQueueSetLevel(low.xq, kPreemptLevelDeactivate, ahead));
        for (int i = 0; i < first; ++i) CHECK_OK(Launch2(low, &lu));
        Sleep(5);  // the executor is inside the first unit
        CHECK_OK(XQueueBeginActive(high.xq));
    }
};

}  // namespace

// Suspended at Level 2, the low queue's gates return at once (the launching thread runs on) while nothing
// after the running unit starts; the record measures the end of that unit; the resume runs everything.
TEST(SuspendedGatesReturnUnitsHeld) {
    Held h(3, 30000);
    XQueueInfo r = Row(h.low.xq);
    CHECK(r.suspended == 1);
    CHECK(r.preempt.count == 1);
    for (int i = 0; i < 5; ++i) CHECK_OK(Launch2(h.low, &h.lu));  // returns: a Level-1 gate would block here
    CHECK(Row(h.low.xq).units_launched == 8);
    REQUIRE(WaitFor([&] { return Row(h.low.xq).preempt.measured == 1; }));
    Sleep(100);  // three units' worth of time: none starts while held
    CHECK(h.lu.executed.load() <= 1);
    r = Row(h.low.xq);
    CHECK(r.preempt.max_us < 60000);  // the rest of the running unit, not the two queued behind it
    CHECK_OK(XQueueEndActive(h.high.xq));
    REQUIRE(WaitFor([&] { return h.lu.executed.load() == 8; }));
    h.low.Drain();
}

// An abort releases what is held (the launching thread's waits end), while the queue stays suspended.
TEST(AbortReleasesHeldUnits) {
    Held h(4, 30000);
    CHECK(Row(h.low.xq).suspended == 1);
    Sleep(30);
    CHECK(h.lu.executed.load() <= 1);
    CHECK_OK(XQueueAbort(h.low.xq, 1));
    REQUIRE(WaitFor([&] { return h.lu.executed.load() == 4; }));
    CHECK(Row(h.low.xq).suspended == 1);
    CHECK_OK(XQueueAbort(h.low.xq, 0));
    CHECK_OK(XQueueEndActive(h.high.xq));
    h.low.Drain();
}

// Back to Level 1, the held units run and a suspended gate blocks again.
TEST(LevelOneReleasesAndBlocks) {
    Held h(3, 30000);
    Sleep(30);
    CHECK(h.lu.executed.load() <= 1);
    CHECK_OK(XQueueSetLevel(h.low.xq, kPreemptLevelBlock, 0));
    REQUIRE(WaitFor([&] { return h.lu.executed.load() == 3; }));
    std::atomic<bool> returned{false};
    std::thread t([&] {
        CHECK_OK(h.low.Launch(&h.lu));
        returned.store(true);
    });
    Sleep(50);
    CHECK(!returned.load());  // suspended at Level 1: the gate waits for the resume
    CHECK_OK(XQueueEndActive(h.high.xq));
    t.join();
    CHECK(returned.load());
    h.low.Drain();
}

// Level 2's in-flight limit: with `ahead` units launched and none known complete, a gate blocks until the
// resume lets them complete.
TEST(AheadLimitBlocksWhileHeld) {
    Held h(1, 30000, 4);
    REQUIRE(WaitFor([&] { return Row(h.low.xq).preempt.measured == 1; }));  // the first unit ended
    for (int i = 0; i < 4; ++i) CHECK_OK(Launch2(h.low, &h.lu));            // four held, none complete
    std::atomic<bool> returned{false};
    std::thread t([&] {
        CHECK_OK(Launch2(h.low, &h.lu));
        returned.store(true);
    });
    Sleep(60);
    CHECK(!returned.load());
    CHECK(h.lu.executed.load() == 1);
    CHECK_OK(XQueueEndActive(h.high.xq));
    t.join();
    REQUIRE(WaitFor([&] { return h.lu.executed.load() == 6; }));
    h.low.Drain();
}

// A queue destroyed while its units are held does not hang: the destroy releases them, and they run.
TEST(DestroyReleasesHeldUnits) {
    Unit lu;
    lu.cost_us.store(2000);
    {
        UseHpf();
        HostXQueue high;
        {
            HostXQueue low;  // destroyed first, while high keeps it suspended
            XHintPriority(low.xq, 0);
            XHintPriority(high.xq, 10);
            CHECK_OK(XQueueSetLevel(low.xq, kPreemptLevelDeactivate, 64));
            for (int i = 0; i < 3; ++i) CHECK_OK(Launch2(low, &lu));
            CHECK_OK(XQueueBeginActive(high.xq));
            CHECK(Row(low.xq).suspended == 1);
        }
        CHECK(lu.executed.load() == 3);  // the destroy waited for them, released
        CHECK_OK(XQueueEndActive(high.xq));
    }
}

// Bad levels and limits; Level 2 with nothing suspended behaves as Level 1 did (everything runs).
TEST(SetLevelArguments) {
    Unit u;
    HostXQueue q;
    CHECK(XQueueSetLevel(q.xq, kPreemptLevelInterrupt, 8) == kXSchedErrorNotSupported);
    CHECK(XQueueSetLevel(q.xq, static_cast<XPreemptLevel>(7), 8) == kXSchedErrorInvalidValue);
    CHECK(XQueueSetLevel(q.xq, kPreemptLevelDeactivate, 0) == kXSchedErrorInvalidValue);
    CHECK(XQueueSetLevel(q.xq, kPreemptLevelDeactivate, 65537) == kXSchedErrorInvalidValue);
    CHECK(XQueueSetLevel(0, kPreemptLevelDeactivate, 8) != kXSchedSuccess);
    CHECK_OK(XQueueSetLevel(q.xq, kPreemptLevelDeactivate, 8));
    for (int i = 0; i < 20; ++i) CHECK_OK(Launch2(q, &u));
    q.Drain();
    CHECK(u.executed.load() == 20);
}

XT_MAIN()
