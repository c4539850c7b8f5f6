/* xsched/xqueue.h: preemptible queues (XQueues) over platform queues (HwQueues).
 *
 * Two ways to feed an XQueue:
 *  - blocking submit (the gate): the thread that launches work calls
 *    XQueueGate() before each unit and launches the unit itself when it
 *    returns. All platform calls stay on the caller's thread, in order.
 *  - asynchronous submit: XQueueSubmit() hands a callback command to the
 *    queue's launch worker thread, as in XSched.
 * The lifecycle rules are numbered in native/xsched/DESIGN.md. */
#ifndef XSCHED_XQUEUE_H_
#define XSCHED_XQUEUE_H_

#include <stddef.h>
#include "xsched/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* XResultName() returns the constant name of r ("kXSchedErrorNotFound"). */
XSCHED_API const char *XResultName(XResult r);
/* XResultMessage() returns a one-line English description of r. */
XSCHED_API const char *XResultMessage(XResult r);

/* HwQueueDestroy() unregisters hwq; NotAllowed while an XQueue is bound to it
 * and when called from one of hwq's own host callbacks. */
XSCHED_API XResult HwQueueDestroy(HwQueueHandle hwq);
/* HwQueueSynchronize() waits until everything launched on hwq has completed. */
XSCHED_API XResult HwQueueSynchronize(HwQueueHandle hwq);

/* XQueueCreate() creates a preemptible queue on hwq at `level` (only
 * kPreemptLevelBlock) with kQueueCreateFlag* `flags`. One XQueue per HwQueue:
 * a second create returns the existing handle. It starts Idle, unsuspended,
 * with priority PRIORITY_DEFAULT, weight WEIGHT_DEFAULT and the launch config
 * of XSCHED_THRESHOLD / XSCHED_BATCH (defaults 16 / 8). */
XSCHED_API XResult XQueueCreate(XQueueHandle *xq, HwQueueHandle hwq, int64_t level, int64_t flags);
/* XQueueDestroy() releases every gate blocked on xq (they return
 * kXSchedErrorNotFound), waits for launched work, and frees the queue. It never
 * blocks on a suspension. NotAllowed when called from a callback that xq runs
 * (on its launch worker, or on its host queue's executor): the queue would be
 * freed under the thread that runs it. */
XSCHED_API XResult XQueueDestroy(XQueueHandle xq);
/* XQueueGet() finds the XQueue bound to hwq; NotFound if none. */
XSCHED_API XResult XQueueGet(XQueueHandle *xq, HwQueueHandle hwq);
/* XQueueSetName() labels xq for snapshots (copied, at most 63 bytes kept). */
XSCHED_API XResult XQueueSetName(XQueueHandle xq, const char *name);

/* XQueueSetLaunchConfig() sets the in-flight limit `threshold` (units launched
 * and not known complete) and the marker distance `batch_size` (a completion
 * marker every batch_size units). A value <= 0 keeps the current one;
 * InvalidValue if batch_size > threshold. Thread-safe; takes effect at the next
 * gate. */
XSCHED_API XResult XQueueSetLaunchConfig(XQueueHandle xq, int64_t threshold, int64_t batch_size);
/* XQueueGetLaunchConfig() reads xq's current threshold and batch_size. */
XSCHED_API XResult XQueueGetLaunchConfig(XQueueHandle xq, int64_t *threshold, int64_t *batch_size);
/* XQueueSetLevel() switches xq between Level 1 (kPreemptLevelBlock: a gate of a
 * suspended queue blocks the launching thread) and Level 2
 * (kPreemptLevelDeactivate: gates do not block for a suspension; each admitted
 * unit waits on the device behind a barrier that the core releases, so that a
 * suspension stops the device before the next unit while the launching thread
 * runs on; the gate blocks only when `ahead` units are launched and not known
 * complete). Level 2 needs device barriers (CUDA stream memory operations;
 * the host platform emulates them) and local scheduling: NotSupported
 * otherwise, and a queue joined to the global scheduler later returns to
 * Level 1. Call it on the launching thread, between units; `ahead` in
 * [1, 65536] (ignored for Level 1). */
XSCHED_API XResult XQueueSetLevel(XQueueHandle xq, XPreemptLevel level, int64_t ahead);
/* XQueueSuspend() stops xq from launching further units (Level 1). With
 * kQueueSuspendFlagSyncHwQueue it also waits for the in-flight units. Idempotent. */
XSCHED_API XResult XQueueSuspend(XQueueHandle xq, int64_t flags);
/* XQueueResume() lets xq launch again. Idempotent. */
XSCHED_API XResult XQueueResume(XQueueHandle xq, int64_t flags);
/* XQueueQuery() reports Idle or Ready. */
XSCHED_API XResult XQueueQuery(XQueueHandle xq, XQueueState *state);

/* ---- blocking submit -------------------------------------------------- */

/* XQueueGate() admits one unit: it returns kXSchedSuccess when the caller may
 * launch it now. It blocks while xq is suspended and while
 * `threshold` units (or more) are in flight; it raises the Ready edge if xq was Idle, and
 * records a completion marker on the HwQueue every batch_size units (before the
 * unit, so the marker covers the units before it). Returns kXSchedErrorAborted
 * at once (without blocking) while XQueueAbort(xq, 1) is in force; the caller
 * decides whether to launch anyway. */
XSCHED_API XResult XQueueGate(XQueueHandle xq);
/* XQueueSynchronized() tells xq that the caller has synchronized the HwQueue:
 * every unit launched so far is complete. Raises the Idle edge unless an
 * activity scope is open. */
XSCHED_API XResult XQueueSynchronized(XQueueHandle xq);
/* XQueueUnitLaunched() tells xq that the caller has launched all of the unit
 * its last gate admitted (optional; once per unit). It records the completion
 * marker behind that unit now rather than at the next gate, so that a
 * preemption that comes before the next gate (while the caller does host work)
 * is seen to drain when the device finishes, by a thread of the core, and the
 * preemption latency is the device's, not the caller's. */
XSCHED_API XResult XQueueUnitLaunched(XQueueHandle xq);
/* XQueueBeginActive() opens an activity scope: until the matching
 * XQueueEndActive(), xq counts as Ready even between launches (host work
 * between GPU steps does not let lower-priority queues in). Scopes nest. */
XSCHED_API XResult XQueueBeginActive(XQueueHandle xq);
/* XQueueEndActive() closes one activity scope; NotAllowed if none is open. */
XSCHED_API XResult XQueueEndActive(XQueueHandle xq);
/* XQueueAbort() with abort != 0 wakes every gate blocked on xq and makes
 * gates return kXSchedErrorAborted until XQueueAbort(xq, 0): it releases the
 * gates (libllama's llama_set_gates_released and ggml's
 * ggml_backend_set_gates_released end here). */
XSCHED_API XResult XQueueAbort(XQueueHandle xq, int32_t abort);

/* ---- asynchronous submit (XSched style) -------------------------------- */

/* HwCommandCreateCallback() makes a command whose launch calls fn(hwq, data). */
XSCHED_API XResult HwCommandCreateCallback(HwCommandHandle *cmd, LaunchCallback fn, void *data);
/* HwCommandDestroy() frees a command that was not submitted. */
XSCHED_API XResult HwCommandDestroy(HwCommandHandle cmd);
/* XQueueSubmit() queues cmd for xq's launch worker and takes ownership of it.
 * NotAllowed on a queue created with kQueueCreateFlagBlockingSubmit. */
XSCHED_API XResult XQueueSubmit(XQueueHandle xq, HwCommandHandle cmd);
/* XQueueWaitAll() waits until every command submitted before the call has
 * completed (it also waits while xq is suspended). */
XSCHED_API XResult XQueueWaitAll(XQueueHandle xq);
/* XQueueProfileHwCommandCount() reports the number of units launched so far. */
XSCHED_API XResult XQueueProfileHwCommandCount(XQueueHandle xq, int64_t *count);

#ifdef __cplusplus
}
#endif
#endif /* XSCHED_XQUEUE_H_ */
