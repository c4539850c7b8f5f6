// ggml-xqueue.h: the settings that a ggml backend applies to its preemptible
// queues (xsched XQueues). Shared by ggml-cpu and ggml-cuda (GGML_XQUEUE builds).
//
// A backend owns one ggml_xqueue_group. The group remembers the priority,
// weight, activity scope, released gates and name prefix that libllama set through
// the backend procs, and applies them to every XQueue it creates later, so a
// setter that runs before the queues exist (or after, for streams created
// during warm-up) has the same effect.
#pragma once

#ifdef GGML_USE_XQUEUE

#include "ggml-impl.h"

#include <xsched/xsched.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

// ggml_xqueue_preempt is how a context that can be preempted launches its work (GGML_XQUEUE_PREEMPT).
enum ggml_xqueue_preempt {
    GGML_XQUEUE_PREEMPT_SEGMENT, // "segment" (default): segments of at most GGML_XQUEUE_SEGMENT_US of GPU time,
                                 // each replayed as its own CUDA graph, one gate per segment
    GGML_XQUEUE_PREEMPT_NODE,    // "node": one gate per node, no CUDA graphs (XSched's choice; for measurement)
    GGML_XQUEUE_PREEMPT_GRAPH,   // "graph": one gate per graph compute, CUDA graphs as upstream; nothing can be
                                 // preempted inside a compute (for measurement)
};

// ggml_xqueue_stream_priority is when a context of priority p > 0 gets CUDA stream priority -p
// (GGML_XQUEUE_STREAM_PRIORITY).
enum ggml_xqueue_stream_priority {
    GGML_XQUEUE_STREAM_PRIORITY_AUTO, // "auto" (default): only under the policy NONE, where nothing else protects
                                      // a more important context; under HPF and WRR the gates hold lower queues
                                      // back and their in-flight work is bounded, which a stream priority would
                                      // only hold behind the more important kernels (a longer drain)
    GGML_XQUEUE_STREAM_PRIORITY_ON,   // "on" (also 1): under every policy
    GGML_XQUEUE_STREAM_PRIORITY_OFF,  // "off" (also 0): never
};

// ggml_xqueue_knobs are the GGML_XQUEUE_* settings of the ggml layer, read once per process. The table of
// every knob, with ranges and defaults, is docs/knobs.md.
struct ggml_xqueue_knobs {
    ggml_xqueue_preempt preempt         = GGML_XQUEUE_PREEMPT_SEGMENT;
    int64_t             segment_us      = 400;  // GGML_XQUEUE_SEGMENT_US: GPU time budget of one segment
    ggml_xqueue_stream_priority stream_priority = GGML_XQUEUE_STREAM_PRIORITY_AUTO; // GGML_XQUEUE_STREAM_PRIORITY
    int64_t             window          = 2;    // GGML_XQUEUE_WINDOW: segments in flight (measurement only)
    int64_t             tail_us         = 0;    // GGML_XQUEUE_TAIL_US: most GPU time queued across a compute's end
                                                // (0: off; run 8: batch prefill against the interactive tail)
    bool                trace           = false; // GGML_XQUEUE_TRACE: a log line per timed compute (measurement only)
    bool                hold_device     = false; // GGML_XQUEUE_HOLD=device: segments wait on the device behind
                                                 // barriers (Level 2; run 9: hung at the first prefill preemption,
                                                 // measurement only); host (default): the gate blocks (Level 1)
    int64_t             ahead           = 64;    // GGML_XQUEUE_AHEAD: Level 2's segments in flight (measurement only)
};

// GGML_XQUEUE_AHEAD: at Level 2, the segments a context may have launched and not known complete (its gate
// blocks beyond): the host prepares the next ubatch while about this many segments are queued on the device.
constexpr int64_t GGML_XQUEUE_AHEAD_MIN = 1;
constexpr int64_t GGML_XQUEUE_AHEAD_MAX = 1024;

constexpr int64_t GGML_XQUEUE_SEGMENT_US_MIN = 20;
constexpr int64_t GGML_XQUEUE_SEGMENT_US_MAX = 100000;
constexpr int64_t GGML_XQUEUE_WINDOW_MIN     = 1;
constexpr int64_t GGML_XQUEUE_WINDOW_MAX     = 16;
constexpr int64_t GGML_XQUEUE_TAIL_US_MIN    = 0;
constexpr int64_t GGML_XQUEUE_TAIL_US_MAX    = 20000;

// ggml_xqueue_knob_error() reports a bad GGML_XQUEUE_* value on one line and exits: a bad value is never
// replaced by a default.
[[noreturn]] static inline void ggml_xqueue_knob_error(const char * name, const char * value, const char * allowed) {
    fprintf(stderr, "error: %s=%s: expected %s\n", name, value, allowed);
    exit(1);
}

// ggml_xqueue_int_knob() is v as an integer in [lo, hi], else a one-line error naming the knob and `allowed`.
static inline int64_t ggml_xqueue_int_knob(const char * name, const char * v, int64_t lo, int64_t hi, const char * allowed) {
    char * end = nullptr;
    errno = 0;
    const long long n = strtoll(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < lo || n > hi) {
        ggml_xqueue_knob_error(name, v, allowed);
    }
    return n;
}

// ggml_xqueue_switch_knob() is v as on/off (also 1/0), else a one-line error naming the knob.
static inline bool ggml_xqueue_switch_knob(const char * name, const char * v) {
    if (strcmp(v, "on") == 0 || strcmp(v, "1") == 0) {
        return true;
    }
    if (strcmp(v, "off") != 0 && strcmp(v, "0") != 0) {
        ggml_xqueue_knob_error(name, v, "on or off");
    }
    return false;
}

// ggml_xqueue_parse_knobs() reads the GGML_XQUEUE_* environment (see ggml_xqueue_knobs).
static inline ggml_xqueue_knobs ggml_xqueue_parse_knobs() {
    ggml_xqueue_knobs k;
    auto env = [](const char * name) -> const char * {
        const char * v = getenv(name);
        return v != nullptr && *v != '\0' ? v : nullptr;
    };
    for (const char * old : { "GGML_XQUEUE_GRAPHS", "GGML_XQUEUE_GATE" }) {
        if (const char * v = env(old)) {
            fprintf(stderr, "error: %s=%s: this setting was replaced by GGML_XQUEUE_PREEMPT=segment|node|graph "
                            "(docs/knobs.md)\n", old, v);
            exit(1);
        }
    }
    if (const char * v = env("GGML_XQUEUE_PREEMPT")) {
        if (strcmp(v, "segment") == 0) {
            k.preempt = GGML_XQUEUE_PREEMPT_SEGMENT;
        } else if (strcmp(v, "node") == 0) {
            k.preempt = GGML_XQUEUE_PREEMPT_NODE;
        } else if (strcmp(v, "graph") == 0) {
            k.preempt = GGML_XQUEUE_PREEMPT_GRAPH;
        } else {
            ggml_xqueue_knob_error("GGML_XQUEUE_PREEMPT", v, "segment, node or graph");
        }
    }
    if (const char * v = env("GGML_XQUEUE_SEGMENT_US")) {
        k.segment_us = ggml_xqueue_int_knob("GGML_XQUEUE_SEGMENT_US", v, GGML_XQUEUE_SEGMENT_US_MIN, GGML_XQUEUE_SEGMENT_US_MAX,
                                            "an integer number of microseconds in [20, 100000]");
    }
    if (const char * v = env("GGML_XQUEUE_WINDOW")) {
        k.window = ggml_xqueue_int_knob("GGML_XQUEUE_WINDOW", v, GGML_XQUEUE_WINDOW_MIN, GGML_XQUEUE_WINDOW_MAX,
                                        "an integer number of segments in [1, 16]");
    }
    if (const char * v = env("GGML_XQUEUE_TAIL_US")) {
        k.tail_us = ggml_xqueue_int_knob("GGML_XQUEUE_TAIL_US", v, GGML_XQUEUE_TAIL_US_MIN, GGML_XQUEUE_TAIL_US_MAX,
                                         "an integer number of microseconds in [0, 20000]");
    }
    if (const char * v = env("GGML_XQUEUE_HOLD")) {
        if (strcmp(v, "device") == 0) {
            k.hold_device = true;
        } else if (strcmp(v, "host") == 0) {
            k.hold_device = false;
        } else {
            ggml_xqueue_knob_error("GGML_XQUEUE_HOLD", v, "device or host");
        }
    }
    if (const char * v = env("GGML_XQUEUE_AHEAD")) {
        k.ahead = ggml_xqueue_int_knob("GGML_XQUEUE_AHEAD", v, GGML_XQUEUE_AHEAD_MIN, GGML_XQUEUE_AHEAD_MAX,
                                       "an integer number of segments in [1, 1024]");
    }
    if (const char * v = env("GGML_XQUEUE_TRACE")) {
        k.trace = ggml_xqueue_switch_knob("GGML_XQUEUE_TRACE", v);
    }
    if (const char * v = env("GGML_XQUEUE_STREAM_PRIORITY")) {
        if (strcmp(v, "auto") == 0) {
            k.stream_priority = GGML_XQUEUE_STREAM_PRIORITY_AUTO;
        } else if (strcmp(v, "on") == 0 || strcmp(v, "1") == 0) {
            k.stream_priority = GGML_XQUEUE_STREAM_PRIORITY_ON;
        } else if (strcmp(v, "off") == 0 || strcmp(v, "0") == 0) {
            k.stream_priority = GGML_XQUEUE_STREAM_PRIORITY_OFF;
        } else {
            ggml_xqueue_knob_error("GGML_XQUEUE_STREAM_PRIORITY", v, "auto, on or off");
        }
    }
    return k;
}

// ggml_xqueue_get_knobs() returns the knobs, parsed at the first call.
static inline const ggml_xqueue_knobs & ggml_xqueue_get_knobs() {
    static const ggml_xqueue_knobs knobs = ggml_xqueue_parse_knobs();
    return knobs;
}

// ggml_xqueue_group is the set of XQueues of one backend and the settings they share.
// Every member function is thread-safe; create/destroy run on the compute thread.
struct ggml_xqueue_group {
    struct entry {
        XQueueHandle  xq;
        HwQueueHandle hwq;
        std::string   suffix;         // "cpu", "cuda0.s0", ...
        int64_t       base_threshold; // the in-flight window the queue was created with (XSCHED_THRESHOLD)
        int64_t       base_batch;     // and its marker distance (XSCHED_BATCH)
    };

    std::mutex         mutex;
    std::vector<entry> queues;
    int32_t            priority = PRIORITY_DEFAULT;
    int32_t            weight   = WEIGHT_DEFAULT;
    int64_t            window_threshold = 0; // set_window(): 0 = each queue's base window
    int64_t            window_batch     = 0;
    bool               active   = false;
    bool               gates_released = false; // set_gates_released(true) in force
    int64_t            level_ahead    = 0;     // set_level(): > 0 Level 2 with that in-flight limit, 0 Level 1
    bool               level_refused  = false; // the core refused Level 2 for a queue (said once, Level 1 since)
    std::string        prefix;

    // ggml_xqueue_group() checks the GGML_XQUEUE_* and XSCHED_* settings: a bad value stops the program with
    // a one-line error when the first backend is created, before any model work.
    ggml_xqueue_group() {
        (void) ggml_xqueue_get_knobs();
        static const bool env_ok = [] {
            char msg[256] = {0};
            if (XSchedCheckEnv(msg, sizeof(msg)) != kXSchedSuccess) {
                fprintf(stderr, "error: xsched: %s\n", msg);
                exit(1);
            }
            return true;
        }();
        (void) env_ok;
    }
    ggml_xqueue_group(const ggml_xqueue_group &) = delete;
    ggml_xqueue_group & operator=(const ggml_xqueue_group &) = delete;

    ~ggml_xqueue_group() { destroy_all(); }

    // create() makes a blocking-submit XQueue on hwq, applies the group's
    // settings and returns it; 0 (ungated) if the core refused (the XSCHED_* settings were checked when
    // the group was constructed).
    XQueueHandle create(HwQueueHandle hwq, const char * suffix) {
        XQueueHandle xq = 0;
        XResult r = XQueueCreate(&xq, hwq, kPreemptLevelBlock, kQueueCreateFlagBlockingSubmit);
        if (r != kXSchedSuccess) {
            GGML_LOG_WARN("%s: XQueueCreate(%s) failed: %s; running ungated\n", __func__, suffix, XResultName(r));
            HwQueueDestroy(hwq);
            return 0;
        }
        int64_t threshold = 0;
        int64_t batch     = 0;
        XQueueGetLaunchConfig(xq, &threshold, &batch);
        std::lock_guard<std::mutex> lock(mutex);
        queues.push_back({ xq, hwq, suffix, threshold, batch });
        apply(queues.back());
        return xq;
    }

    // destroy() releases xq (waking its gates) and its HwQueue.
    void destroy(XQueueHandle xq) {
        std::lock_guard<std::mutex> lock(mutex);
        for (size_t i = 0; i < queues.size(); ++i) {
            if (queues[i].xq == xq) {
                release(queues[i]);
                queues.erase(queues.begin() + i);
                return;
            }
        }
    }

    // destroy_all() releases every queue of the group.
    void destroy_all() {
        std::lock_guard<std::mutex> lock(mutex);
        for (auto & q : queues) {
            release(q);
        }
        queues.clear();
    }

    // owns() tells whether xq belongs to this group.
    bool owns(XQueueHandle xq) {
        std::lock_guard<std::mutex> lock(mutex);
        for (const auto & q : queues) {
            if (q.xq == xq) {
                return true;
            }
        }
        return false;
    }

    // empty() tells whether the group has no queue (none created yet, or the platform refused).
    bool empty() {
        std::lock_guard<std::mutex> lock(mutex);
        return queues.empty();
    }

    // set_priority() applies (priority, weight) now and to queues created later.
    void set_priority(int32_t p, int32_t w) {
        std::lock_guard<std::mutex> lock(mutex);
        priority = p;
        weight   = w;
        for (const auto & q : queues) {
            XHintPriority(q.xq, priority);
            XHintWeight(q.xq, weight);
        }
    }

    // set_active() opens (true) or closes (false) the group's one activity scope; idempotent.
    void set_active(bool a) {
        std::lock_guard<std::mutex> lock(mutex);
        if (a == active) {
            return;
        }
        active = a;
        for (const auto & q : queues) {
            if (active) {
                XQueueBeginActive(q.xq);
            } else {
                XQueueEndActive(q.xq);
            }
        }
    }

    // set_gates_released() releases (true) every gate of the group, blocked now or later, so that each returns at
    // once and its work is launched ungated, or re-arms them (false); the core's XQueueAbort.
    void set_gates_released(bool released) {
        std::lock_guard<std::mutex> lock(mutex);
        gates_released = released;
        for (const auto & q : queues) {
            XQueueAbort(q.xq, gates_released ? 1 : 0);
        }
    }

    // unit_launched() tells every queue that the unit its last gate admitted is launched completely
    // (XQueueUnitLaunched): a preemption that comes before the next gate, while the compute thread does host
    // work, is then seen to drain by the core when the device finishes.
    void unit_launched() {
        std::lock_guard<std::mutex> lock(mutex);
        for (const auto & q : queues) {
            XQueueUnitLaunched(q.xq);
        }
    }

    // set_prefix() names the queues "<prefix>/<suffix>" in scheduler snapshots and puts them into the
    // scheduling group of that prefix: the queues of every backend of one llama context share the prefix,
    // so the policy treats them as one client (WRR gives the context's CPU and CUDA queues one turn).
    void set_prefix(const char * p) {
        std::lock_guard<std::mutex> lock(mutex);
        prefix = p ? p : "";
        for (const auto & q : queues) {
            XQueueSetName(q.xq, name_of(q).c_str());
            XHintGroup(q.xq, group_id());
        }
    }

    // set_window() gives every queue the in-flight window (threshold units in flight, a marker every batch
    // units), now and for queues created later; (0, 0) restores each queue's own window from its creation.
    void set_window(int64_t threshold, int64_t batch) {
        std::lock_guard<std::mutex> lock(mutex);
        if (threshold == window_threshold && batch == window_batch) {
            return;
        }
        window_threshold = threshold;
        window_batch     = batch;
        for (const auto & q : queues) {
            apply_window(q);
        }
    }

    // set_level() puts every queue at Level 2 (ahead > 0: a suspension holds launched segments on the device) or
    // Level 1 (0), now and for queues created later; on the compute thread, between units. Where the core
    // refuses Level 2 (no device barriers, joined to the global scheduler) the group stays at Level 1 and says
    // so once. Returns whether Level 2 is in force.
    bool set_level(int64_t ahead) {
        std::lock_guard<std::mutex> lock(mutex);
        if (level_refused) {
            ahead = 0;
        }
        if (ahead == level_ahead) {
            return level_ahead > 0;
        }
        level_ahead = ahead;
        for (const auto & q : queues) {
            apply_level(q);
        }
        return level_ahead > 0;
    }

    // get_priority() returns the priority the group's queues have (or will have).
    int32_t get_priority() {
        std::lock_guard<std::mutex> lock(mutex);
        return priority;
    }

private:
    std::string name_of(const entry & q) const {
        return prefix.empty() ? q.suffix : prefix + "/" + q.suffix;
    }

    // group_id() is the scheduling group of the prefix (FNV-1a, never 0), or 0 (none) without a prefix.
    uint64_t group_id() const {
        if (prefix.empty()) {
            return 0;
        }
        uint64_t h = 1469598103934665603ull;
        for (unsigned char c : prefix) {
            h = (h ^ c) * 1099511628211ull;
        }
        return h != 0 ? h : 1;
    }

    void apply_window(const entry & q) const {
        if (window_threshold > 0) {
            XQueueSetLaunchConfig(q.xq, window_threshold, window_batch);
        } else {
            XQueueSetLaunchConfig(q.xq, q.base_threshold, q.base_batch);
        }
    }

    void apply_level(const entry & q) {
        const XResult r = XQueueSetLevel(q.xq, level_ahead > 0 ? kPreemptLevelDeactivate : kPreemptLevelBlock,
                                         level_ahead > 0 ? level_ahead : 0);
        if (r != kXSchedSuccess && level_ahead > 0) {
            GGML_LOG_WARN("%s: %s: segments cannot be held on the device (%s): a suspension blocks the launching "
                          "thread instead (Level 1)\n", __func__, name_of(q).c_str(), XResultName(r));
            level_refused = true;
            level_ahead   = 0;
            for (const auto & o : queues) {
                XQueueSetLevel(o.xq, kPreemptLevelBlock, 0);
            }
        }
    }

    void apply(const entry & q) {
        if (window_threshold > 0) {
            apply_window(q);
        }
        if (level_ahead > 0) {
            apply_level(q);
        }
        XHintPriority(q.xq, priority);
        XHintWeight(q.xq, weight);
        XQueueSetName(q.xq, name_of(q).c_str());
        XHintGroup(q.xq, group_id());
        if (active) {
            XQueueBeginActive(q.xq);
        }
        if (gates_released) {
            XQueueAbort(q.xq, 1);
        }
    }

    static void release(const entry & q) {
        XQueueDestroy(q.xq);
        HwQueueDestroy(q.hwq);
    }
};

// ggml_xqueue_gate() admits one unit of work on xq (0 = ungated). A released
// gate (set_gates_released) returns at once and the caller launches anyway.
static inline void ggml_xqueue_gate(XQueueHandle xq) {
    if (xq != 0) {
        XQueueGate(xq);
    }
}

// ggml_xqueue_synchronized() tells xq that everything launched is complete.
static inline void ggml_xqueue_synchronized(XQueueHandle xq) {
    if (xq != 0) {
        XQueueSynchronized(xq);
    }
}

#endif // GGML_USE_XQUEUE
