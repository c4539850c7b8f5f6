// cuda_queue.cpp: the CUDA platform (built when CUDAToolkit with cudart is found).
#include "cuda_queue.h"

#include <chrono>
#include <map>
#if defined(__linux__)
#include <sys/prctl.h>
#endif
#include <string>
#include <thread>

#include "registry.h"
#include "xsched/cuda.h"

namespace xsched {
namespace {

// CudaMarker is one recorded event; it goes back to its pool when released.
class CudaMarker final : public Marker {
public:
    CudaMarker(cudaEvent_t ev, std::shared_ptr<CudaEventPool> pool) : ev(ev), pool_(std::move(pool)) {}
    ~CudaMarker() override { pool_->Give(ev); }
    // ev is the recorded event.
    const cudaEvent_t ev;

private:
    std::shared_ptr<CudaEventPool> pool_;
};

// The two stream memory operations, from the driver (no link against libcuda).
using WaitValueFn = int (*)(cudaStream_t, unsigned long long, uint32_t, unsigned);
using WriteValueFn = int (*)(cudaStream_t, unsigned long long, uint32_t, unsigned);
constexpr unsigned kWaitGeq = 0x0;       // CU_STREAM_WAIT_VALUE_GEQ: (int32_t)(*addr - value) >= 0
constexpr unsigned kWriteDefault = 0x0;  // CU_STREAM_WRITE_VALUE_DEFAULT: after the work before it

struct StreamMemOps {
    WaitValueFn wait = nullptr;
    WriteValueFn write = nullptr;
};

void *DriverSymbol(const char *name) {
    void *fn = nullptr;
    cudaDriverEntryPointQueryResult status = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
    if (cudaGetDriverEntryPointByVersion(name, &fn, 12000, cudaEnableDefault, &status) != cudaSuccess) fn = nullptr;
#else
    if (cudaGetDriverEntryPoint(name, &fn, cudaEnableDefault, &status) != cudaSuccess) fn = nullptr;
#endif
    if (status != cudaDriverEntryPointSuccess) fn = nullptr;
    (void)cudaGetLastError();
    return fn;
}

const StreamMemOps &MemOps() {
    static const StreamMemOps ops = [] {
        StreamMemOps o;
        o.wait = reinterpret_cast<WaitValueFn>(DriverSymbol("cuStreamWaitValue32"));
        o.write = reinterpret_cast<WriteValueFn>(DriverSymbol("cuStreamWriteValue32"));
        return o;
    }();
    return ops;
}

// StreamMap() maps registered streams to their HwQueue handles.
std::map<void *, HwQueueHandle> &StreamMap() {
    static auto *m = new std::map<void *, HwQueueHandle>;
    return *m;
}

}  // namespace

CudaEventPool::~CudaEventPool() {
    Lock l(mu_);
    for (cudaEvent_t ev : free_) cudaEventDestroy(ev);
}

cudaError_t CudaEventPool::Take(cudaEvent_t *ev) {
    {
        Lock l(mu_);
        if (!free_.empty()) {
            *ev = free_.back();
            free_.pop_back();
            return cudaSuccess;
        }
    }
    return cudaEventCreateWithFlags(ev, flags_);
}

void CudaEventPool::Give(cudaEvent_t ev) {
    Lock l(mu_);
    free_.push_back(ev);
}

CudaQueue::CudaQueue(cudaStream_t stream, int device, CudaSyncMode mode)
    : stream_(stream),
      device_(device),
      mode_(mode),
      pool_(std::make_shared<CudaEventPool>(cudaEventDisableTiming |
                                            (mode == CudaSyncMode::kBlock ? cudaEventBlockingSync : 0u))) {}

CudaQueue::~CudaQueue() {
    // the XQueue released every barrier and synchronized the stream before its HwQueue goes
    if (words_ != nullptr) (void)cudaFreeHost(const_cast<uint32_t *>(words_));
}

bool CudaQueue::CanDeactivate() {
    Lock l(mu_);
    if (probed_) return capable_;
    probed_ = true;
    const StreamMemOps &ops = MemOps();
    if (ops.wait == nullptr || ops.write == nullptr) return false;
    void *p = nullptr;
    if (cudaHostAlloc(&p, 64, cudaHostAllocMapped | cudaHostAllocPortable) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    void *d = nullptr;
    if (cudaHostGetDevicePointer(&d, p, 0) != cudaSuccess) {
        (void)cudaGetLastError();
        (void)cudaFreeHost(p);
        return false;
    }
    auto *w = static_cast<volatile uint32_t *>(p);
    w[0] = 0;
    w[1] = 0;
    w[2] = 0;
    const auto dw = reinterpret_cast<unsigned long long>(d);
    // probe: a wait that holds already and a write; both must be accepted on this stream
    if (ops.wait(stream_, dw, 0, kWaitGeq) != 0 || ops.write(stream_, dw + 8, 0, kWriteDefault) != 0) {
        (void)cudaGetLastError();
        (void)cudaFreeHost(p);
        return false;
    }
    words_ = w;
    dwords_ = dw;
    capable_ = true;
    return true;
}

XResult CudaQueue::LaunchBarrier(uint32_t seq) {
    if (words_ == nullptr) return kXSchedErrorNotSupported;
    const StreamMemOps &ops = MemOps();
    if (ops.wait(stream_, dwords_, seq, kWaitGeq) != 0 || ops.write(stream_, dwords_ + 4, seq, kWriteDefault) != 0) {
        (void)cudaGetLastError();
        return kXSchedErrorHardware;
    }
    return kXSchedSuccess;
}

XResult CudaQueue::LaunchDone(uint32_t seq) {
    if (words_ == nullptr) return kXSchedErrorNotSupported;
    if (MemOps().write(stream_, dwords_ + 8, seq, kWriteDefault) != 0) {
        (void)cudaGetLastError();
        return kXSchedErrorHardware;
    }
    return kXSchedSuccess;
}

void CudaQueue::Release(uint32_t seq) {
    if (words_ == nullptr) return;
    __atomic_store_n(const_cast<uint32_t *>(&words_[0]), seq, __ATOMIC_RELEASE);
}

uint32_t CudaQueue::Started() {
    return words_ != nullptr ? __atomic_load_n(const_cast<uint32_t *>(&words_[1]), __ATOMIC_ACQUIRE) : 0;
}

uint32_t CudaQueue::Done() {
    return words_ != nullptr ? __atomic_load_n(const_cast<uint32_t *>(&words_[2]), __ATOMIC_ACQUIRE) : 0;
}

XResult CudaQueue::RecordMarker(std::shared_ptr<Marker> *out) {
    cudaEvent_t ev;
    if (pool_->Take(&ev) != cudaSuccess) return kXSchedErrorHardware;
    if (cudaEventRecord(ev, stream_) != cudaSuccess) {
        pool_->Give(ev);
        return kXSchedErrorHardware;
    }
    *out = std::make_shared<CudaMarker>(ev, pool_);
    return kXSchedSuccess;
}

XResult CudaQueue::WaitMarker(Marker &m, const std::atomic<bool> &cancel) {
    cudaEvent_t ev = static_cast<CudaMarker &>(m).ev;
    if (mode_ == CudaSyncMode::kBlock) {
        // The driver blocks the thread (no spinning); not cancellable, bounded by in-flight work.
        if (cancel.load()) return kXSchedErrorAborted;
        return cudaEventSynchronize(ev) == cudaSuccess ? kXSchedSuccess : kXSchedErrorHardware;
    }
    // Poll: yield for the first 10 us (short waits stay fast), then sleep a
    // quarter of the time waited so far (5..200 us). The wake-up is therefore
    // late by at most ~25 % of the wait, while after the oldest marker
    // completes threshold - batch units (>= batch with the defaults, i.e. about
    // the waited time) are still queued: the device does not run dry, and a
    // long wait costs few wake-ups. The thread's timer slack is lowered to 1 us
    // during the wait (and restored) so short sleeps are not stretched to ~60 us.
    using namespace std::chrono;
#if defined(__linux__)
    const int old_slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    if (old_slack > 1000) prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
#endif
    const auto t0 = steady_clock::now();
    XResult r;
    for (;;) {
        cudaError_t e = cudaEventQuery(ev);
        if (e == cudaSuccess) {
            r = kXSchedSuccess;
            break;
        }
        if (e != cudaErrorNotReady) {
            r = kXSchedErrorHardware;
            break;
        }
        if (cancel.load()) {
            r = kXSchedErrorAborted;
            break;
        }
        auto waited = duration_cast<microseconds>(steady_clock::now() - t0);
        if (waited < microseconds(10)) {
            std::this_thread::yield();
        } else {
            std::this_thread::sleep_for(std::min(microseconds(200), std::max(microseconds(5), waited / 4)));
        }
    }
#if defined(__linux__)
    if (old_slack > 1000) prctl(PR_SET_TIMERSLACK, static_cast<unsigned long>(old_slack), 0, 0, 0);
#endif
    return r;
}

XResult CudaQueue::Synchronize() {
    return cudaStreamSynchronize(stream_) == cudaSuccess ? kXSchedSuccess : kXSchedErrorHardware;
}

void CudaQueue::OnWorkerStart() { cudaSetDevice(device_); }

}  // namespace xsched

using namespace xsched;

extern "C" XResult CudaQueueCreate(HwQueueHandle *hwq, void *stream) {
    if (hwq == nullptr) return kXSchedErrorInvalidValue;
    if (stream == nullptr) return kXSchedErrorNotSupported;  // the legacy NULL stream cannot be gated
    Config cfg;
    std::string err;
    if (!LoadConfig(&cfg, &err)) return kXSchedErrorInvalidValue;
    Lock l(BindMutex());
    auto it = StreamMap().find(stream);
    if (it != StreamMap().end()) {
        if (HwQueues().Find(it->second)) {
            *hwq = it->second;
            return kXSchedSuccess;
        }
        StreamMap().erase(it);  // destroyed since: register again
    }
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess) return kXSchedErrorHardware;
    auto q = std::make_shared<CudaQueue>(static_cast<cudaStream_t>(stream), device, cfg.cuda_sync);
    HwQueueHandle h = HwQueues().Insert(q);
    StreamMap()[stream] = h;
    *hwq = h;
    return kXSchedSuccess;
}

extern "C" XResult CudaQueueGet(HwQueueHandle *hwq, void *stream) {
    if (hwq == nullptr || stream == nullptr) return kXSchedErrorInvalidValue;
    Lock l(BindMutex());
    auto it = StreamMap().find(stream);
    if (it == StreamMap().end() || !HwQueues().Find(it->second)) return kXSchedErrorNotFound;
    *hwq = it->second;
    return kXSchedSuccess;
}

extern "C" int XSchedCudaAvailable(void) { return 1; }
