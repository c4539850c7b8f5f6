// cuda_stub.cpp: the CUDA entry points of a build without the CUDA toolkit.
#include "xsched/cuda.h"

extern "C" XResult CudaQueueCreate(HwQueueHandle *hwq, void *stream) {
    (void)hwq;
    (void)stream;
    return kXSchedErrorNotSupported;
}

extern "C" XResult CudaQueueGet(HwQueueHandle *hwq, void *stream) {
    (void)hwq;
    (void)stream;
    return kXSchedErrorNotSupported;
}

extern "C" int XSchedCudaAvailable(void) { return 0; }
