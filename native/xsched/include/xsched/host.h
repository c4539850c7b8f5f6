/* xsched/host.h: the host platform. A host HwQueue behaves like a device
 * stream: launched callbacks run in order on the queue's own thread, and a
 * unit is complete when its callback has returned. Used by tests and by
 * CPU-only programs. */
#ifndef XSCHED_HOST_H_
#define XSCHED_HOST_H_

#include "xsched/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* HostQueueCreate() creates a host HwQueue with its executor thread. */
XSCHED_API XResult HostQueueCreate(HwQueueHandle *hwq);
/* HostQueueLaunch() appends fn(hwq, data) to hwq's executor; returns at once. */
XSCHED_API XResult HostQueueLaunch(HwQueueHandle hwq, LaunchCallback fn, void *data);

#ifdef __cplusplus
}
#endif
#endif /* XSCHED_HOST_H_ */
