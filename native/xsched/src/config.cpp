// config.cpp: parsing of the XSCHED_* environment variables.
#include "config.h"

#include <cerrno>
#include <cstdlib>
#include <strings.h>

#include "xsched/hint.h"

namespace xsched {
namespace {

// ParseInt() parses a whole decimal integer in [lo, hi]; false otherwise.
bool ParseInt(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (s == nullptr || *s == '\0') return false;
    errno = 0;
    char *end = nullptr;
    long long v = std::strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) return false;
    *out = v;
    return true;
}

// Get() returns the variable's value, or nullptr when unset or empty.
const char *Get(const char *name) {
    const char *v = std::getenv(name);
    return (v != nullptr && *v != '\0') ? v : nullptr;
}

}  // namespace

bool LoadConfig(Config *out, std::string *error) {
    Config c;
    if (const char *v = Get("XSCHED_POLICY")) {
        if (XPolicyFromName(v, &c.policy) != kXSchedSuccess) {
            *error = std::string("XSCHED_POLICY=") + v + ": unknown policy (allowed: HPF, WRR, NONE)";
            return false;
        }
    }
    if (const char *v = Get("XSCHED_TIMESLICE_US")) {
        if (!ParseInt(v, kTimesliceMinUs, kTimesliceMaxUs, &c.timeslice_us)) {
            *error = std::string("XSCHED_TIMESLICE_US=") + v + ": expected an integer in [100, 10000000] microseconds";
            return false;
        }
    }
    bool threshold_set = false;
    if (const char *v = Get("XSCHED_THRESHOLD")) {
        if (!ParseInt(v, 1, kThresholdMax, &c.threshold)) {
            *error = std::string("XSCHED_THRESHOLD=") + v + ": expected an integer in [1, 65536]";
            return false;
        }
        threshold_set = true;
    }
    if (const char *v = Get("XSCHED_BATCH")) {
        if (!ParseInt(v, 1, kThresholdMax, &c.batch_size)) {
            *error = std::string("XSCHED_BATCH=") + v + ": expected an integer in [1, 65536]";
            return false;
        }
        if (c.batch_size > c.threshold) {
            *error = std::string("XSCHED_BATCH=") + v + ": must not exceed the threshold (" +
                     std::to_string(c.threshold) + ")";
            return false;
        }
    } else if (threshold_set) {
        // Only the threshold was given: XSched's recommendation, batch = threshold / 2.
        c.batch_size = c.threshold / 2 > 0 ? c.threshold / 2 : 1;
    }
    if (const char *v = Get("XSCHED_CUDA_SYNC")) {
        if (strcasecmp(v, "POLL") == 0) {
            c.cuda_sync = CudaSyncMode::kPoll;
        } else if (strcasecmp(v, "BLOCK") == 0) {
            c.cuda_sync = CudaSyncMode::kBlock;
        } else {
            *error = std::string("XSCHED_CUDA_SYNC=") + v + ": unknown mode (allowed: POLL, BLOCK)";
            return false;
        }
    }
    if (const char *v = Get("XSCHED_SCHEDULER")) {
        std::string why;
        if (!CheckSchedulerPath(v, &why)) {
            *error = std::string("XSCHED_SCHEDULER=") + v + ": " + why;
            return false;
        }
        c.scheduler_path = v;
    }
    *out = c;
    return true;
}

bool CheckSchedulerPath(const std::string &path, std::string *error) {
    if (path.empty() || path[0] != '/') {
        *error = "expected the absolute path of an xschedd socket (e.g. $XDG_RUNTIME_DIR/xsched-llama/xschedd.sock)";
        return false;
    }
    if (path.size() > 107) {  // sizeof(sockaddr_un::sun_path) - 1
        *error = "the socket path is longer than 107 bytes";
        return false;
    }
    if (path.find_first_of("\n\r") != std::string::npos) {
        *error = "the socket path contains a line break";
        return false;
    }
    return true;
}

}  // namespace xsched
