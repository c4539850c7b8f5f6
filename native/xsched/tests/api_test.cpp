// api_test.cpp: bad input returns error codes; environment validation; names.
#include <cstdlib>

#include "units.h"

using namespace xtest;

TEST(NullAndForeignHandles) {
    const XQueueHandle foreign = 0x1234567ull;
    XQueueState s;
    int64_t n;
    CHECK_EQ_RES(XQueueGate(0), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XQueueGate(foreign), kXSchedErrorNotFound);
    CHECK_EQ_RES(XQueueSynchronized(foreign), kXSchedErrorNotFound);
    CHECK_EQ_RES(XQueueBeginActive(foreign), kXSchedErrorNotFound);
    CHECK_EQ_RES(XQueueEndActive(0), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XQueueAbort(foreign, 1), kXSchedErrorNotFound);
    CHECK_EQ_RES(XQueueDestroy(0), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XQueueDestroy(foreign), kXSchedErrorNotFound);
    CHECK_EQ_RES(XQueueQuery(foreign, &s), kXSchedErrorNotFound);
    CHECK_EQ_RES(XQueueQuery(foreign, nullptr), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XQueueSuspend(foreign, 0), kXSchedErrorNotFound);
    CHECK_EQ_RES(XQueueResume(foreign, 0), kXSchedErrorNotFound);
    CHECK_EQ_RES(XQueueSetLaunchConfig(foreign, 4, 2), kXSchedErrorNotFound);
    int64_t th = 0, ba = 0;
    CHECK_EQ_RES(XQueueGetLaunchConfig(foreign, &th, &ba), kXSchedErrorNotFound);
    CHECK_EQ_RES(XQueueGetLaunchConfig(foreign, nullptr, &ba), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XQueueSetName(foreign, "x"), kXSchedErrorNotFound);
    CHECK_EQ_RES(XQueueWaitAll(foreign), kXSchedErrorNotFound);
    CHECK_EQ_RES(XQueueProfileHwCommandCount(foreign, &n), kXSchedErrorNotFound);
    CHECK_EQ_RES(XHintPriority(foreign, 1), kXSchedErrorNotFound);
    CHECK_EQ_RES(XHintWeight(0, 1), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XQueueSubmit(foreign, 0), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XQueueSubmit(foreign, 7), kXSchedErrorNotFound);
    CHECK_EQ_RES(HwCommandDestroy(foreign), kXSchedErrorNotFound);
    CHECK_EQ_RES(HwCommandCreateCallback(nullptr, &RunUnit, nullptr), kXSchedErrorInvalidValue);
    HwCommandHandle c;
    CHECK_EQ_RES(HwCommandCreateCallback(&c, nullptr, nullptr), kXSchedErrorInvalidValue);
    XQueueHandle xq;
    HwQueueHandle hwq;
    CHECK_EQ_RES(XQueueCreate(nullptr, 1, kPreemptLevelBlock, 0), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XQueueCreate(&xq, 0, kPreemptLevelBlock, 0), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XQueueCreate(&xq, foreign, kPreemptLevelBlock, 0), kXSchedErrorNotFound);
    CHECK_EQ_RES(XQueueGet(&xq, foreign), kXSchedErrorNotFound);
    CHECK_EQ_RES(HwQueueDestroy(foreign), kXSchedErrorNotFound);
    CHECK_EQ_RES(HwQueueSynchronize(0), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(HostQueueCreate(nullptr), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(HostQueueLaunch(foreign, &RunUnit, nullptr), kXSchedErrorNotFound);
    CHECK_EQ_RES(CudaQueueGet(&hwq, nullptr),
                 XSchedCudaAvailable() ? kXSchedErrorInvalidValue : kXSchedErrorNotSupported);
    // An XQueue handle is not a HwQueue handle and vice versa.
    HostXQueue q;
    CHECK_EQ_RES(XQueueGate(q.hwq), kXSchedErrorNotFound);
    CHECK_EQ_RES(HwQueueSynchronize(q.xq), kXSchedErrorNotFound);
    CHECK_EQ_RES(XQueueDestroy(q.hwq), kXSchedErrorNotFound);
}

TEST(OutOfRangeValues) {
    HostXQueue q;
    XQueueHandle xq;
    CHECK_EQ_RES(XQueueCreate(&xq, q.hwq, kPreemptLevelDeactivate, 0), kXSchedErrorNotSupported);
    CHECK_EQ_RES(XQueueCreate(&xq, q.hwq, 0, 0), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XQueueCreate(&xq, q.hwq, 9, 0), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XQueueCreate(&xq, q.hwq, kPreemptLevelBlock, 0x100), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XHintPriority(q.xq, PRIORITY_MAX + 1), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XHintPriority(q.xq, PRIORITY_MIN - 1), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XHintPriority(q.xq, -256), kXSchedErrorInvalidValue);
    CHECK_OK(XHintPriority(q.xq, PRIORITY_MAX));
    CHECK_OK(XHintPriority(q.xq, PRIORITY_MIN));
    CHECK_EQ_RES(XHintWeight(q.xq, 0), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XHintWeight(q.xq, WEIGHT_MAX + 1), kXSchedErrorInvalidValue);
    CHECK_OK(XHintWeight(q.xq, 3));
    CHECK_EQ_RES(XHintTimeslice(99), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XHintTimeslice(10000001), kXSchedErrorInvalidValue);
    // batch > threshold is refused and changes nothing; <= 0 keeps a value.
    CHECK_OK(XQueueSetLaunchConfig(q.xq, 8, 4));
    CHECK_EQ_RES(XQueueSetLaunchConfig(q.xq, 4, 8), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XQueueSetLaunchConfig(q.xq, 2, 0), kXSchedErrorInvalidValue);  // batch 4 > threshold 2
    CHECK_EQ_RES(XQueueSetLaunchConfig(q.xq, 100000, 1), kXSchedErrorInvalidValue);
    CHECK_OK(XQueueSetLaunchConfig(q.xq, -1, 2));
    XQueueInfo row = Row(q.xq);
    CHECK(row.threshold == 8 && row.batch_size == 2);
    CHECK_EQ_RES(XQueueSuspend(q.xq, 0x40), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XQueueResume(q.xq, 0x1), kXSchedErrorNotSupported);
    CHECK_EQ_RES(XQueueResume(q.xq, 0x40), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XQueueSetName(q.xq, nullptr), kXSchedErrorInvalidValue);
    CHECK_OK(XQueueSetName(q.xq, "a-very-long-name-that-is-longer-than-sixty-three-bytes-0123456789abcdef"));
    row = Row(q.xq);
    CHECK(std::strlen(row.name) == 63);
    CHECK_EQ_RES(XHintSetScheduler(kSchedulerLocal, kPolicyUnknown), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XHintSetScheduler(kSchedulerLocal, static_cast<XPolicyType>(77)), kXSchedErrorInvalidValue);
    // no global scheduler configured (XSCHED_SCHEDULER unset, no XHintSetGlobalScheduler)
    CHECK_EQ_RES(XHintSetScheduler(kSchedulerGlobal, kPolicyHighestPriorityFirst), kXSchedErrorNotAllowed);
    CHECK_EQ_RES(XHintSetGlobalScheduler("relative/xschedd.sock"), kXSchedErrorInvalidValue);
    int32_t top = 0;
    CHECK_EQ_RES(XSchedGlobalMaxPriority(&top), kXSchedErrorNotFound);
    CHECK_EQ_RES(XSchedGlobalMaxPriority(nullptr), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XHintSetScheduler(static_cast<XSchedulerType>(9), kPolicyHighestPriorityFirst),
                 kXSchedErrorInvalidValue);
    XSchedSnapshotInfo info;
    size_t written;
    CHECK_EQ_RES(XSchedSnapshot(nullptr, nullptr, 0, &written), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XSchedSnapshot(&info, nullptr, 3, &written), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XSchedSnapshot(&info, nullptr, 0, nullptr), kXSchedErrorInvalidValue);
    CHECK_OK(XSchedSnapshot(&info, nullptr, 0, &written));
    CHECK(written == 0 && info.n_queues == 1);
}

TEST(NamesAndPolicies) {
    CHECK(std::strcmp(XResultName(kXSchedErrorNotFound), "kXSchedErrorNotFound") == 0);
    CHECK(std::strcmp(XResultName(static_cast<XResult>(12345)), "kXSchedErrorUnknown") == 0);
    CHECK(std::strlen(XResultMessage(kXSchedErrorAborted)) > 0);
    XPolicyType p = kPolicyUnknown;
    CHECK_OK(XPolicyFromName("hpf", &p));
    CHECK(p == kPolicyHighestPriorityFirst);
    CHECK_OK(XPolicyFromName("Wrr", &p));
    CHECK(p == kPolicyWeightedRoundRobin);
    CHECK_OK(XPolicyFromName("NONE", &p));
    CHECK(p == kPolicyNone);
    CHECK_EQ_RES(XPolicyFromName("fifo", &p), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XPolicyFromName(nullptr, &p), kXSchedErrorInvalidValue);
    CHECK(std::strcmp(XPolicyName(kPolicyWeightedRoundRobin), "WRR") == 0);
    CHECK(std::strcmp(XPolicyName(kPolicyUnknown), "UNKNOWN") == 0);
}

// CheckEnvCase() sets one variable, checks XSchedCheckEnv and XQueueCreate, unsets it.
static void CheckEnvCase(const char *var, const char *value, bool ok) {
    setenv(var, value, 1);
    char msg[256] = "unset";
    XResult r = XSchedCheckEnv(msg, sizeof(msg));
    HwQueueHandle hwq = 0;
    XQueueHandle xq = 0;
    CHECK_OK(HostQueueCreate(&hwq));
    XResult rc = XQueueCreate(&xq, hwq, kPreemptLevelBlock, kQueueCreateFlagBlockingSubmit);
    if (ok) {
        CHECK(r == kXSchedSuccess && msg[0] == '\0');
        CHECK(rc == kXSchedSuccess);
    } else {
        CHECK(r == kXSchedErrorInvalidValue);
        CHECK(std::strstr(msg, var) != nullptr && std::strchr(msg, '\n') == nullptr);
        CHECK(rc == kXSchedErrorInvalidValue);
    }
    if (rc == kXSchedSuccess) CHECK_OK(XQueueDestroy(xq));
    CHECK_OK(HwQueueDestroy(hwq));
    unsetenv(var);
}

TEST(EnvironmentValidation) {
    CheckEnvCase("XSCHED_POLICY", "fifo", false);
    CheckEnvCase("XSCHED_POLICY", "wRr", true);
    CheckEnvCase("XSCHED_TIMESLICE_US", "50", false);
    CheckEnvCase("XSCHED_TIMESLICE_US", "5ms", false);
    CheckEnvCase("XSCHED_TIMESLICE_US", "2000", true);
    CheckEnvCase("XSCHED_THRESHOLD", "-3", false);
    CheckEnvCase("XSCHED_THRESHOLD", "0", false);
    CheckEnvCase("XSCHED_THRESHOLD", "4", true);
    CheckEnvCase("XSCHED_BATCH", "abc", false);
    CheckEnvCase("XSCHED_BATCH", "32", false);  // > default threshold 16
    CheckEnvCase("XSCHED_CUDA_SYNC", "spin", false);
    CheckEnvCase("XSCHED_CUDA_SYNC", "block", true);
    CheckEnvCase("XSCHED_SCHEDULER", "xschedd.sock", false);                         // not absolute
    CheckEnvCase("XSCHED_SCHEDULER", ("/" + std::string(120, 'x')).c_str(), false);  // longer than sun_path
    // Launch config of new queues comes from the environment.
    setenv("XSCHED_THRESHOLD", "6", 1);
    {
        HostXQueue q;
        XQueueInfo row = Row(q.xq);
        CHECK(row.threshold == 6 && row.batch_size == 3);
    }
    setenv("XSCHED_BATCH", "2", 1);
    {
        HostXQueue q;
        XQueueInfo row = Row(q.xq);
        CHECK(row.threshold == 6 && row.batch_size == 2);
    }
    unsetenv("XSCHED_THRESHOLD");
    unsetenv("XSCHED_BATCH");
    HostXQueue q;
    XQueueInfo row = Row(q.xq);
    CHECK(row.threshold == 16 && row.batch_size == 8);
}

// Run by CTest with XSCHED_POLICY=wrr: the start policy comes from the environment.
TEST(EnvPolicyAtStart) {
    const char *want = std::getenv("XT_EXPECT_POLICY");
    HostXQueue q;
    XSchedSnapshotInfo info;
    size_t written;
    CHECK_OK(XSchedSnapshot(&info, nullptr, 0, &written));
    CHECK(info.scheduler == kSchedulerLocal);
    CHECK(std::strcmp(XPolicyName(info.policy), want ? want : "HPF") == 0);
}

// Run by CTest with XSCHED_POLICY=fifo: nothing is created, the message names the variable.
TEST(EnvBadPolicyFailsCreate) {
    char msg[256];
    if (XSchedCheckEnv(msg, sizeof(msg)) == kXSchedSuccess) return;  // run without a bad variable
    HwQueueHandle hwq;
    XQueueHandle xq;
    CHECK_OK(HostQueueCreate(&hwq));
    CHECK_EQ_RES(XQueueCreate(&xq, hwq, kPreemptLevelBlock, 0), kXSchedErrorInvalidValue);
    CHECK_EQ_RES(XHintTimeslice(1000), kXSchedErrorInvalidValue);
    CHECK(std::strstr(msg, "XSCHED_POLICY") != nullptr);
    CHECK_OK(HwQueueDestroy(hwq));
}

TEST(HwQueueLifecycle) {
    HwQueueHandle hwq;
    XQueueHandle xq;
    CHECK_OK(HostQueueCreate(&hwq));
    CHECK_OK(XQueueCreate(&xq, hwq, kPreemptLevelBlock, 0));
    CHECK_EQ_RES(HwQueueDestroy(hwq), kXSchedErrorNotAllowed);
    CHECK_OK(XQueueDestroy(xq));
    XQueueHandle got;
    CHECK_EQ_RES(XQueueGet(&got, hwq), kXSchedErrorNotFound);
    // A new XQueue can be bound after the old one is gone; handles are never reused.
    XQueueHandle xq2;
    CHECK_OK(XQueueCreate(&xq2, hwq, kPreemptLevelBlock, 0));
    CHECK(xq2 != xq);
    CHECK_OK(XQueueDestroy(xq2));
    CHECK_OK(HwQueueDestroy(hwq));
}

// The generation changes with every change that can change who may preempt whom, and only then.
TEST(GenerationCountsRelevantChanges) {
    uint64_t g0 = XSchedGeneration();
    HostXQueue q;
    uint64_t g1 = XSchedGeneration();
    CHECK(g1 != g0);
    CHECK_OK(XQueueGate(q.xq));
    q.Drain();
    CHECK(XSchedGeneration() == g1);  // work does not change it
    CHECK_OK(XHintPriority(q.xq, 7));
    uint64_t g2 = XSchedGeneration();
    CHECK(g2 != g1);
    CHECK_OK(XHintGroup(q.xq, 42));
    uint64_t g3 = XSchedGeneration();
    CHECK(g3 != g2);
    CHECK_OK(XHintSetScheduler(kSchedulerLocal, kPolicyWeightedRoundRobin));
    uint64_t g4 = XSchedGeneration();
    CHECK(g4 != g3);
    CHECK_OK(XHintSetScheduler(kSchedulerLocal, kPolicyHighestPriorityFirst));
    {
        HostXQueue other;
        CHECK(XSchedGeneration() != g4);
    }
}

XT_MAIN()
