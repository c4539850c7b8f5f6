// cuda_queue.h: the CUDA platform, a HwQueue over a cudaStream_t.
#ifndef XSCHED_SRC_CUDA_QUEUE_H_
#define XSCHED_SRC_CUDA_QUEUE_H_

#include <cuda_runtime_api.h>

#include <memory>
#include <vector>

#include "config.h"
#include "hw_queue.h"
#include "mutex.h"

namespace xsched {

// CudaEventPool recycles the marker events of one CudaQueue.
class CudaEventPool {
public:
    // CudaEventPool() makes an empty pool creating events with `flags`.
    explicit CudaEventPool(unsigned flags) : flags_(flags) {}
    // ~CudaEventPool() destroys every pooled event.
    ~CudaEventPool();
    CudaEventPool(const CudaEventPool &) = delete;
    CudaEventPool &operator=(const CudaEventPool &) = delete;
    // Take() returns a free event, creating one if needed.
    cudaError_t Take(cudaEvent_t *ev);
    // Give() returns an event to the pool.
    void Give(cudaEvent_t ev);

private:
    const unsigned flags_;
    Mutex mu_;
    std::vector<cudaEvent_t> free_ XSCHED_GUARDED_BY(mu_);
};

// CudaQueue wraps a stream it does not own. Markers are events created with
// cudaEventDisableTiming (plus cudaEventBlockingSync in BLOCK mode).
class CudaQueue final : public HwQueue {
public:
    // CudaQueue() wraps `stream` of `device`.
    CudaQueue(cudaStream_t stream, int device, CudaSyncMode mode);
    // ~CudaQueue() releases the pool (events still held by markers live on).
    ~CudaQueue() override;
    CudaQueue(const CudaQueue &) = delete;
    CudaQueue &operator=(const CudaQueue &) = delete;

    XResult RecordMarker(std::shared_ptr<Marker> *out) override;
    XResult WaitMarker(Marker &m, const std::atomic<bool> &cancel) override;
    XResult Synchronize() override;
    void OnWorkerStart() override;
    // Level 2 with CUDA stream memory operations: a barrier is cuStreamWaitValue32 on a word of mapped host
    // memory that Release() stores to; Started and Done are cuStreamWriteValue32 into two more words.
    bool CanDeactivate() override;
    XResult LaunchBarrier(uint32_t seq) override;
    XResult LaunchDone(uint32_t seq) override;
    void Release(uint32_t seq) override;
    uint32_t Started() override;
    uint32_t Done() override;

private:
    const cudaStream_t stream_;
    const int device_;
    const CudaSyncMode mode_;
    const std::shared_ptr<CudaEventPool> pool_;
    // the barrier words (released, started, done) in mapped pinned memory, and their device address;
    // probed_/capable_ under mu_ (the first CanDeactivate() allocates them)
    Mutex mu_;
    bool probed_ XSCHED_GUARDED_BY(mu_) = false;
    bool capable_ XSCHED_GUARDED_BY(mu_) = false;
    volatile uint32_t *words_ = nullptr;
    unsigned long long dwords_ = 0;
};

}  // namespace xsched

#endif  // XSCHED_SRC_CUDA_QUEUE_H_
