/* xsched/cuda.h: the CUDA platform. A CUDA HwQueue wraps a cudaStream_t
 * (passed as void* so that this header needs no CUDA headers); completion
 * markers are CUDA events. Built only when the CUDA toolkit is found; without
 * it the calls return kXSchedErrorNotSupported. */
#ifndef XSCHED_CUDA_H_
#define XSCHED_CUDA_H_

#include "xsched/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CudaQueueCreate() registers `stream` (a non-null cudaStream_t) as a HwQueue.
 * The stream's device must be current on the calling thread. Registering the
 * same stream twice returns the same handle. */
XSCHED_API XResult CudaQueueCreate(HwQueueHandle *hwq, void *stream);
/* CudaQueueGet() looks up the HwQueue of `stream`; NotFound if none. */
XSCHED_API XResult CudaQueueGet(HwQueueHandle *hwq, void *stream);
/* XSchedCudaAvailable() returns 1 if the CUDA platform was built in. */
XSCHED_API int XSchedCudaAvailable(void);

#ifdef __cplusplus
}
#endif
#endif /* XSCHED_CUDA_H_ */
