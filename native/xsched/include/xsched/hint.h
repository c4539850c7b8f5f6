/* xsched/hint.h: scheduling hints and the in-process scheduler. */
#ifndef XSCHED_HINT_H_
#define XSCHED_HINT_H_

#include <stddef.h>
#include "xsched/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* XHintPriority() sets xq's priority in [PRIORITY_MIN, PRIORITY_MAX]
 * (bigger = more important); InvalidValue outside. Thread-safe, any time. */
XSCHED_API XResult XHintPriority(XQueueHandle xq, int32_t priority);
/* XHintWeight() sets xq's WRR weight in [WEIGHT_MIN, WEIGHT_MAX]. */
XSCHED_API XResult XHintWeight(XQueueHandle xq, int32_t weight);
/* XHintGroup() puts xq into scheduling group `group` (0 = none, the default:
 * the queue is a client of its own). Queues of one nonzero group are one
 * client of the policy: WRR gives them a single shared turn, lasting quantum x
 * the largest weight among the group's Ready queues, and suspends or resumes
 * them together. One llama context's CPU and GPU queues form a group, so its
 * decode step never waits for its own other queue's turn. Thread-safe. */
XSCHED_API XResult XHintGroup(XQueueHandle xq, uint64_t group);
/* XHintTimeslice() sets the WRR quantum in microseconds ([100, 10000000]); a
 * queue's turn lasts quantum x weight. */
XSCHED_API XResult XHintTimeslice(int64_t timeslice_us);
/* XHintSetScheduler() switches the process's scheduler at run time:
 * kSchedulerLocal with a policy, kSchedulerAppManaged (policy ignored; also
 * leaves a global scheduler), or kSchedulerGlobal: join the global scheduler
 * daemon (xschedd) whose socket XSCHED_SCHEDULER or XHintSetGlobalScheduler
 * named (NotAllowed if none), with `policy` as the local policy. While the
 * process is joined, kSchedulerLocal only replaces that local policy, which
 * is in force whenever the daemon is not reachable. */
XSCHED_API XResult XHintSetScheduler(XSchedulerType type, XPolicyType policy);
/* XHintSetGlobalScheduler() makes the process join the global scheduler
 * listening at the absolute path `socket_path` whenever it has queues (NULL
 * or "" leaves it). Joining never fails the process: while the daemon is
 * absent, refuses it or stops answering (no heartbeat for 1 s), the process
 * schedules locally (one line on stderr) and retries in the background.
 * XSchedSnapshot's `scheduler` is kSchedulerGlobal while joined.
 * InvalidValue for a path that cannot name a socket. */
XSCHED_API XResult XHintSetGlobalScheduler(const char *socket_path);
/* XSchedGlobalMaxPriority() sets *priority to the highest priority of a
 * queue of another process joined to the same daemon; NotFound when there is
 * none or the process is not joined. XSchedGeneration() changes with it. */
XSCHED_API XResult XSchedGlobalMaxPriority(int32_t *priority);
/* XSchedGlobalStatus() copies the daemon's status (JSON: every process and
 * queue) into buf (NUL-terminated) and sets *needed to its size + 1;
 * InvalidValue (buf left empty) when len is too small, NotFound with a
 * one-line reason in buf when the daemon cannot be asked, NotAllowed when no
 * global scheduler is configured. A round trip on the daemon's socket. */
XSCHED_API XResult XSchedGlobalStatus(char *buf, size_t len, size_t *needed);

/* XSchedCheckEnv() validates XSCHED_POLICY, XSCHED_TIMESLICE_US,
 * XSCHED_THRESHOLD, XSCHED_BATCH, XSCHED_CUDA_SYNC and XSCHED_SCHEDULER. On error it writes a one-line message
 * naming the variable and the allowed values into msg (if msg_len > 0) and
 * returns InvalidValue. Queues created while the environment is invalid fail
 * with InvalidValue too: a bad value is never replaced by a default. */
XSCHED_API XResult XSchedCheckEnv(char *msg, size_t msg_len);
/* XPolicyFromName() parses "HPF", "WRR" or "NONE" (case-insensitive). */
XSCHED_API XResult XPolicyFromName(const char *name, XPolicyType *policy);
/* XPolicyName() returns "HPF", "WRR", "NONE", or "UNKNOWN". */
XSCHED_API const char *XPolicyName(XPolicyType policy);

/* Preemption latency histogram: XSCHED_PREEMPT_BUCKETS buckets, the first
 * XSCHED_PREEMPT_BUCKETS - 1 with the inclusive upper bounds (microseconds)
 * XSCHED_PREEMPT_BOUNDS_US, the last one unbounded (+Inf). */
#define XSCHED_PREEMPT_BUCKETS 12
#define XSCHED_PREEMPT_BOUNDS_US \
    { 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 5000, 20000 }

/* XPreemptStats is one queue's preemption record. A preemption is a
 * suspension by the scheduler while the queue had launched units that were
 * not known complete; its latency is the time from the suspension (the more
 * important queue's Ready edge) until those units were seen complete, by the
 * thread that launches on the queue: in a gate waiting while suspended, or
 * when it reports XQueueSynchronized. A preemption whose queue was resumed
 * before that counts in `count` but not in `measured`. Seen from a gate that
 * the launching thread reached only after the drain, the latency is an upper
 * bound (the drain ended earlier). */
typedef struct {
    uint64_t count;                           /* preemptions */
    uint64_t measured;                        /* of those, with a latency */
    uint64_t sum_us;                          /* sum of the measured latencies */
    uint64_t max_us;                          /* the largest one */
    uint64_t buckets[XSCHED_PREEMPT_BUCKETS]; /* measured latencies per bucket (not cumulative) */
    /* Of the measured ones, those whose suspension found a unit admitted by a gate but not yet launched
     * completely (XQueueUnitLaunched or XQueueSynchronized not yet called): the host time from the
     * suspension until that unit's launch was complete is part of their latency, the rest is the
     * device draining. Tells host-side causes (a capture, an allocation inside a launch) from GPU work. */
    uint64_t open_units;    /* measured preemptions that found a unit being launched */
    uint64_t launch_sum_us; /* their host time until the unit was launched, summed */
    uint64_t launch_max_us; /* the largest such host time */
} XPreemptStats;

/* XQueueInfo is one queue's row of a scheduler snapshot. */
typedef struct {
    XQueueHandle handle;
    char name[64]; /* from XQueueSetName, "" if unset */
    int32_t priority;
    int32_t weight;
    XQueueState state;
    int32_t suspended;     /* 1 while the scheduler holds it back */
    int32_t active_scopes; /* open activity scopes */
    int64_t threshold;
    int64_t batch_size;
    int64_t in_flight;        /* units launched, not known complete */
    uint64_t units_launched;  /* total units admitted by gate or worker */
    uint64_t suspended_us;    /* total time spent suspended */
    uint64_t gate_blocked_us; /* total time callers spent blocked in gates */
    uint64_t group;           /* XHintGroup, 0 if none */
    XPreemptStats preempt;    /* preemption latency of this queue (see XPreemptStats) */
} XQueueInfo;

/* XSchedSnapshotInfo describes the scheduler as a whole. */
typedef struct {
    XSchedulerType scheduler;
    XPolicyType policy;
    int64_t timeslice_us;
    size_t n_queues; /* queues alive (may exceed the rows written) */
} XSchedSnapshotInfo;

/* XSchedGeneration() returns a number that changes whenever a queue is created or destroyed, a hint is set
 * or the scheduler or policy is switched: a caller that derives something from a snapshot (e.g. whether a
 * more important queue exists) reads a new snapshot only when it changed. 0 before any queue exists.
 * Lock-free. */
XSCHED_API uint64_t XSchedGeneration(void);
/* XSchedSnapshot() copies up to `capacity` queue rows into `rows` (may be NULL
 * when capacity is 0), sets *written, and fills *info. Read-only, thread-safe. */
XSCHED_API XResult XSchedSnapshot(XSchedSnapshotInfo *info, XQueueInfo *rows, size_t capacity, size_t *written);

#ifdef __cplusplus
}
#endif
#endif /* XSCHED_HINT_H_ */
