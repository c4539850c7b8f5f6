// config.h: run-time settings of the core and their environment variables.
#ifndef XSCHED_SRC_CONFIG_H_
#define XSCHED_SRC_CONFIG_H_

#include <cstdint>
#include <string>

#include "xsched/types.h"

namespace xsched {

// CudaSyncMode says how a CUDA marker wait waits for its event.
enum class CudaSyncMode {
    kPoll,   // cudaEventQuery with a short sleep that backs off (default).
    kBlock,  // events created with cudaEventBlockingSync, cudaEventSynchronize.
};

// Config holds every setting read from the environment, with its default.
struct Config {
    // policy is the scheduling policy of the local scheduler (XSCHED_POLICY).
    XPolicyType policy = kPolicyHighestPriorityFirst;
    // timeslice_us is the WRR quantum in microseconds (XSCHED_TIMESLICE_US).
    int64_t timeslice_us = 5000;
    // threshold is the in-flight unit limit of new queues (XSCHED_THRESHOLD).
    int64_t threshold = 16;
    // batch_size is the distance between completion markers (XSCHED_BATCH).
    int64_t batch_size = 8;
    // cuda_sync is how CUDA marker waits wait (XSCHED_CUDA_SYNC=POLL|BLOCK).
    CudaSyncMode cuda_sync = CudaSyncMode::kPoll;
    // scheduler_path is the socket of the global scheduler to join (XSCHED_SCHEDULER; "" = local only).
    std::string scheduler_path;
};

// CheckSchedulerPath() says whether path can name an xschedd socket (absolute, fits sockaddr_un); on
// false it writes the reason (without the variable's name) to *error.
bool CheckSchedulerPath(const std::string &path, std::string *error);

// kTimesliceMinUs is the smallest accepted WRR quantum.
constexpr int64_t kTimesliceMinUs = 100;
// kTimesliceMaxUs is the largest accepted WRR quantum.
constexpr int64_t kTimesliceMaxUs = 10000000;
// kThresholdMax is the largest accepted threshold and batch size.
constexpr int64_t kThresholdMax = 65536;

// LoadConfig() reads the XSCHED_* variables into *out; on a bad value it
// writes a one-line message to *error and returns false (never a default).
bool LoadConfig(Config *out, std::string *error);

}  // namespace xsched

#endif  // XSCHED_SRC_CONFIG_H_
