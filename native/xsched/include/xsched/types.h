/* xsched/types.h: handles, result codes and constants of the xsched C API.
 *
 * The names follow XSched (OSDI'25) so that programs written for it build
 * against this library. Every fallible call returns an XResult; 0 is success. */
#ifndef XSCHED_TYPES_H_
#define XSCHED_TYPES_H_

#include <stdint.h>

#if defined(_WIN32)
#define XSCHED_API __declspec(dllexport)
#else
#define XSCHED_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* XQueueHandle names a preemptible queue; 0 is never a valid handle. */
typedef uint64_t XQueueHandle;
/* HwQueueHandle names a platform queue (a host queue, a CUDA stream). */
typedef uint64_t HwQueueHandle;
/* HwCommandHandle names a command created and not yet submitted. */
typedef uint64_t HwCommandHandle;

/* XResult is the result of every fallible call. The table in xsched.cpp
 * (XResultName / XResultMessage) is the one source of names and messages. */
typedef enum {
    kXSchedSuccess = 0,
    kXSchedErrorHardware = 1,     /* the platform (e.g. the CUDA runtime) failed */
    kXSchedErrorInvalidValue = 2, /* an argument is out of range or null */
    kXSchedErrorNotFound = 3,     /* the handle names no live object */
    kXSchedErrorNotAllowed = 4,   /* the object's state forbids the call */
    kXSchedErrorNotSupported = 5, /* not built in, or not on this platform */
    kXSchedErrorBadResponse = 6,  /* kept for XSched compatibility */
    kXSchedErrorAborted = 7,      /* the gate was released by XQueueAbort */
    kXSchedErrorUnknown = 999,
} XResult;

/* XQueueState: Idle = nothing launched is incomplete and no activity scope is
 * open; Ready = the queue has (or is about to have) work. */
typedef enum {
    kQueueStateUnknown = 0,
    kQueueStateIdle = 1,
    kQueueStateReady = 2,
} XQueueState;

/* XPreemptLevel: Block (Level 1: stop launching) and Deactivate (Level 2: launched units held on the device
 * behind barriers, XQueueSetLevel) are implemented; Interrupt is not. */
typedef enum {
    kPreemptLevelUnknown = 0,
    kPreemptLevelBlock = 1,
    kPreemptLevelDeactivate = 2,
    kPreemptLevelInterrupt = 3,
    kPreemptLevelMax = 4,
} XPreemptLevel;

/* Create flags. BlockingSubmit: the queue is used through XQueueGate from the
 * submitting thread (no launch worker). */
#define kQueueCreateFlagNone ((int64_t)0)
#define kQueueCreateFlagBlockingSubmit ((int64_t)0x1)

/* Suspend / resume flags (XSched's values; SyncHwQueue waits for in-flight work). */
#define kQueueSuspendFlagNone ((int64_t)0)
#define kQueueSuspendFlagSyncHwQueue ((int64_t)0x1)
#define kQueueResumeFlagNone ((int64_t)0)

typedef enum {
    kSchedulerUnknown = 0,
    kSchedulerAppManaged = 1, /* no scheduler thread: the program suspends/resumes */
    kSchedulerLocal = 2,      /* in-process scheduler thread */
    kSchedulerGlobal = 3,     /* the process is joined to the global scheduler daemon (xschedd) */
} XSchedulerType;

typedef enum {
    kPolicyUnknown = 0,
    kPolicyHighestPriorityFirst = 1, /* "HPF" */
    kPolicyWeightedRoundRobin = 100, /* "WRR" (not in XSched's numbering) */
    kPolicyNone = 101,               /* "NONE": never suspend */
} XPolicyType;

/* Priority: bigger = more important. */
#define PRIORITY_MIN ((int32_t)-255)
#define PRIORITY_MAX ((int32_t)255)
#define PRIORITY_DEFAULT ((int32_t)0)
/* Weight: WRR share among queues of the same turn order. */
#define WEIGHT_MIN ((int32_t)1)
#define WEIGHT_MAX ((int32_t)1000)
#define WEIGHT_DEFAULT ((int32_t)1)

/* LaunchCallback launches one unit of work onto hwq; data is the caller's. */
typedef XResult (*LaunchCallback)(HwQueueHandle hwq, void *data);

#ifdef __cplusplus
}
#endif
#endif /* XSCHED_TYPES_H_ */
