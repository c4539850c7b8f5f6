// ggml-xqueue.h: the settings that a ggml backend applies to its preemptible
// queues (xsched XQueues). Shared by ggml-cpu and ggml-cuda (GGML_XQUEUE builds).
//
// A backend owns one ggml_xqueue_group. The group remembers the priority,
// weight, activity scope, abort flag and name prefix that libllama set through
// the backend procs, and applies them to every XQueue it creates later, so a
// setter that runs before the queues exist (or after, for streams created
// during warm-up) has the same effect.
#pragma once

#ifdef GGML_USE_XQUEUE

#include "ggml-impl.h"

#include <xsched/xsched.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

// ggml_xqueue_group is the set of XQueues of one backend and the settings they share.
// Every member function is thread-safe; create/destroy run on the compute thread.
struct ggml_xqueue_group {
    struct entry {
        XQueueHandle  xq;
        HwQueueHandle hwq;
        std::string   suffix; // "cpu", "cuda0.s0", ...
    };

    std::mutex         mutex;
    std::vector<entry> queues;
    int32_t            priority = PRIORITY_DEFAULT;
    int32_t            weight   = WEIGHT_DEFAULT;
    bool               active   = false;
    bool               abort    = false;
    std::string        prefix;

    ggml_xqueue_group() = default;
    ggml_xqueue_group(const ggml_xqueue_group &) = delete;
    ggml_xqueue_group & operator=(const ggml_xqueue_group &) = delete;

    ~ggml_xqueue_group() { destroy_all(); }

    // create() makes a blocking-submit XQueue on hwq, applies the group's
    // settings and returns it; 0 (ungated) if the platform refused.
    XQueueHandle create(HwQueueHandle hwq, const char * suffix) {
        XQueueHandle xq = 0;
        XResult r = XQueueCreate(&xq, hwq, kPreemptLevelBlock, kQueueCreateFlagBlockingSubmit);
        if (r == kXSchedErrorInvalidValue) {
            char msg[256] = {0};
            if (XSchedCheckEnv(msg, sizeof(msg)) != kXSchedSuccess) {
                // a bad XSCHED_* value is a configuration error, never silently replaced
                fprintf(stderr, "error: xsched: %s\n", msg);
                exit(1);
            }
        }
        if (r != kXSchedSuccess) {
            GGML_LOG_WARN("%s: XQueueCreate(%s) failed: %s; running ungated\n", __func__, suffix, XResultName(r));
            HwQueueDestroy(hwq);
            return 0;
        }
        std::lock_guard<std::mutex> lock(mutex);
        queues.push_back({ xq, hwq, suffix });
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

    // set_abort() releases (true) or re-arms (false) every gate of the group.
    void set_abort(bool a) {
        std::lock_guard<std::mutex> lock(mutex);
        abort = a;
        for (const auto & q : queues) {
            XQueueAbort(q.xq, abort ? 1 : 0);
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

    void apply(const entry & q) {
        XHintPriority(q.xq, priority);
        XHintWeight(q.xq, weight);
        XQueueSetName(q.xq, name_of(q).c_str());
        XHintGroup(q.xq, group_id());
        if (active) {
            XQueueBeginActive(q.xq);
        }
        if (abort) {
            XQueueAbort(q.xq, 1);
        }
    }

    static void release(const entry & q) {
        XQueueDestroy(q.xq);
        HwQueueDestroy(q.hwq);
    }
};

// ggml_xqueue_gate() admits one unit of work on xq (0 = ungated). An aborted
// gate returns at once and the caller launches anyway.
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
