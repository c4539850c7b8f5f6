// preempt_test.cpp: the preemption record (XPreemptStats): what counts as a preemption, when its latency is
// measured, and that the latency covers the work that was in flight.
#include "units.h"

using namespace xtest;

namespace {

// UseHpf() selects HPF for the test (tests in one process share the scheduler).
void UseHpf() { XHintSetScheduler(kSchedulerLocal, kPolicyHighestPriorityFirst); }

// BucketSum() is the number of latencies in the histogram of p.
uint64_t BucketSum(const XPreemptStats &p) {
    uint64_t n = 0;
    for (uint64_t b : p.buckets) n += b;
    return n;
}

// BucketOf() is the histogram bucket that holds a latency of us microseconds.
size_t BucketOf(uint64_t us) {
    const uint64_t bounds[] = XSCHED_PREEMPT_BOUNDS_US;
    size_t i = 0;
    while (i < XSCHED_PREEMPT_BUCKETS - 1 && us > bounds[i]) ++i;
    return i;
}

}  // namespace

// The low queue has three 40 ms units in flight when the high queue raises its Ready edge; the low queue's
// next gate blocks (suspended), sees them complete and records one latency that covers them: at least the
// ~80 ms of work that had not run yet, and only one sample, in the right bucket.
TEST(PreemptionLatencyCoversInFlightWork) {
    UseHpf();
    Unit lu, hu;
    HostXQueue low, high;
    CHECK_OK(XHintPriority(low.xq, 0));
    CHECK_OK(XHintPriority(high.xq, 10));
    lu.cost_us.store(40000);
    for (int i = 0; i < 3; ++i) CHECK_OK(low.Launch(&lu));
    CHECK_OK(XQueueBeginActive(high.xq));  // Ready edge: low is preempted with 3 units in flight
    XQueueInfo r = Row(low.xq);
    CHECK(r.suspended == 1);
    CHECK(r.preempt.count == 1);
    CHECK(r.preempt.measured == 0);
    std::thread t([&] { CHECK_OK(low.Launch(&lu)); });  // blocks: drains, then waits for the resume
    REQUIRE(WaitFor([&] { return Row(low.xq).preempt.measured == 1; }));
    CHECK(lu.executed.load() == 3);  // it was measured after the three units, not before
    r = Row(low.xq);
    CHECK(r.preempt.max_us >= 75000);  // the two untouched units and most of the first one
    CHECK(r.preempt.max_us < 20000000);
    CHECK(r.preempt.sum_us == r.preempt.max_us);
    CHECK(BucketSum(r.preempt) == 1);
    CHECK(r.preempt.buckets[BucketOf(r.preempt.max_us)] == 1);
    CHECK(r.units_launched == 3);  // the fourth unit is still held back
    CHECK_OK(XQueueEndActive(high.xq));
    t.join();
    low.Drain();
    CHECK(Row(high.xq).preempt.count == 0);  // nothing preempted the high queue
}

// A suspension of a queue that has nothing in flight is not a preemption; a drain seen when the launching
// thread reports XQueueSynchronized is measured; one the queue was resumed before seeing is counted only.
TEST(PreemptionCountedMeasuredOrNot) {
    UseHpf();
    Unit lu, hu;
    HostXQueue low, high;
    CHECK_OK(XHintPriority(low.xq, 0));
    CHECK_OK(XHintPriority(high.xq, 10));
    lu.cost_us.store(2000);
    CHECK_OK(low.Launch(&lu));
    low.Drain();  // everything known complete
    CHECK_OK(XQueueBeginActive(high.xq));
    CHECK(Row(low.xq).suspended == 1);
    CHECK(Row(low.xq).preempt.count == 0);
    CHECK_OK(XQueueEndActive(high.xq));

    // in flight, seen through the synchronization
    lu.cost_us.store(20000);
    CHECK_OK(low.Launch(&lu));
    CHECK_OK(XQueueBeginActive(high.xq));
    low.Drain();
    XQueueInfo r = Row(low.xq);
    CHECK(r.preempt.count == 1);
    CHECK(r.preempt.measured == 1);
    CHECK(r.preempt.max_us >= 10000);
    CHECK_OK(XQueueEndActive(high.xq));

    // in flight, resumed before the launching thread looked: counted, not measured
    CHECK_OK(low.Launch(&lu));
    CHECK_OK(XQueueBeginActive(high.xq));
    CHECK_OK(XQueueEndActive(high.xq));
    r = Row(low.xq);
    CHECK(r.preempt.count == 2);
    CHECK(r.preempt.measured == 1);
    CHECK(BucketSum(r.preempt) == 1);
    low.Drain();
    CHECK(Row(low.xq).preempt.measured == 1);  // a drain seen after the resume is no preemption latency
}

// A gate that waits for a drain lets go when the queue is resumed, aborted or destroyed, like any other
// suspended gate.
TEST(DrainWaitEndsOnResumeAbortDestroy) {
    UseHpf();
    std::atomic<bool> hold{true};
    Unit lu, hu;
    lu.hold = &hold;  // the low queue's unit does not complete until released
    {
        HostXQueue low, high;
        CHECK_OK(XHintPriority(high.xq, 10));
        CHECK_OK(low.Launch(&lu));
        CHECK_OK(XQueueBeginActive(high.xq));
        std::atomic<int> result{-1};
        std::thread t([&] { result.store(low.Launch(&lu)); });
        REQUIRE(WaitFor([&] { return Row(low.xq).gate_blocked_us > 0 || Row(low.xq).suspended == 1; }));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        CHECK(result.load() == -1);
        CHECK_OK(XQueueEndActive(high.xq));  // resume: the gate admits the unit although the drain is not over
        REQUIRE(WaitFor([&] { return result.load() != -1; }));
        t.join();
        CHECK(result.load() == kXSchedSuccess);
        CHECK(Row(low.xq).preempt.count == 1 && Row(low.xq).preempt.measured == 0);

        CHECK_OK(XQueueBeginActive(high.xq));
        result.store(-1);
        std::thread t2([&] { result.store(XQueueGate(low.xq)); });
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        CHECK_OK(XQueueAbort(low.xq, 1));
        REQUIRE(WaitFor([&] { return result.load() != -1; }));
        t2.join();
        CHECK(result.load() == kXSchedErrorAborted);
        CHECK_OK(XQueueAbort(low.xq, 0));

        result.store(-1);
        std::thread t3([&] { result.store(XQueueGate(low.xq)); });  // the drain is still pending
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        CHECK(result.load() == -1);
        std::thread td([&] { CHECK_OK(XQueueDestroy(low.xq)); });  // waits for the held units after waking
        REQUIRE(WaitFor([&] { return result.load() != -1; }));     // the gate let go with the units held
        CHECK(result.load() == kXSchedErrorNotFound);
        hold.store(false);
        t3.join();
        td.join();
        low.xq = 0;
        CHECK_OK(XQueueEndActive(high.xq));
    }
}

// With XQueueUnitLaunched() after each unit, a preemption is seen to drain when the work completes, even
// though the launching thread does not come back to a gate (it is busy with host work between graphs):
// suspended between units, and suspended while a unit was being launched (handed over at UnitLaunched).
TEST(DrainSeenWithoutTheLaunchingThread) {
    UseHpf();
    Unit lu, hu;
    HostXQueue low, high;
    CHECK_OK(XHintPriority(low.xq, 0));
    CHECK_OK(XHintPriority(high.xq, 10));
    lu.cost_us.store(30000);
    CHECK_OK(low.Launch(&lu));
    CHECK_OK(XQueueUnitLaunched(low.xq));
    CHECK_OK(XQueueUnitLaunched(low.xq));  // once per unit; a second call changes nothing
    CHECK_OK(XQueueBeginActive(high.xq));  // between units: the observer waits for the marker
    REQUIRE(WaitFor([&] { return Row(low.xq).preempt.measured == 1; }));
    XQueueInfo r = Row(low.xq);
    CHECK(r.preempt.count == 1);
    CHECK(lu.executed.load() == 1);
    CHECK(r.preempt.max_us >= 15000);  // most of the unit
    CHECK(r.preempt.open_units == 0);  // the unit was reported launched before the suspension
    CHECK(r.preempt.launch_max_us == 0);
    CHECK_OK(XQueueEndActive(high.xq));
    low.Drain();

    // suspended after the gate admitted a unit, before the caller had launched it: the 20 ms the caller takes
    // to launch it are host time inside the latency, and the record says so
    CHECK_OK(XQueueGate(low.xq));
    CHECK_OK(XQueueBeginActive(high.xq));
    CHECK(Row(low.xq).preempt.count == 2);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    HostQueueLaunch(low.hwq, &RunUnit, &lu);
    CHECK(Row(low.xq).preempt.measured == 1);
    CHECK_OK(XQueueUnitLaunched(low.xq));  // hands the unit's marker to the observer
    REQUIRE(WaitFor([&] { return Row(low.xq).preempt.measured == 2; }));
    CHECK(lu.executed.load() == 2);
    r = Row(low.xq);
    CHECK(r.preempt.open_units == 1);
    CHECK(r.preempt.launch_max_us >= 20000);
    CHECK(r.preempt.launch_sum_us == r.preempt.launch_max_us);
    CHECK(r.preempt.max_us >= r.preempt.launch_max_us + 15000);  // then most of the 30 ms unit drained
    CHECK_OK(XQueueEndActive(high.xq));
    low.Drain();
    CHECK(Row(low.xq).preempt.measured == 2);  // the synchronization adds no sample
}

XT_MAIN()
