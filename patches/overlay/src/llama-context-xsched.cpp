// llama-context-xsched.cpp: llama_set_priority & co., the xsched context API of libllama (xsched-llama overlay,
// not upstream; declared in llama.h and llama-context.h by patch 0004, built into llama by its CMake lines). Each
// call reaches every backend of the context through the optional backend procs of patch 0001.
#include "llama-context.h"

#include "llama-impl.h"
#include "llama.h"

#include <atomic>
#include <cstdint>
#include <string>

void * llama_context::backend_proc(ggml_backend_t backend, const char * name) {
    auto * reg = ggml_backend_dev_backend_reg(ggml_backend_get_device(backend));
    return reg ? ggml_backend_reg_get_proc_address(reg, name) : nullptr;
}

int32_t llama_context::set_priority(int32_t priority, int32_t weight) {
    if (priority < LLAMA_PRIORITY_MIN || priority > LLAMA_PRIORITY_MAX || weight < LLAMA_WEIGHT_MIN || weight > LLAMA_WEIGHT_MAX) {
        LLAMA_LOG_ERROR("%s: priority %d must be in [%d, %d] and weight %d in [%d, %d]\n", __func__,
                priority, LLAMA_PRIORITY_MIN, LLAMA_PRIORITY_MAX, weight, LLAMA_WEIGHT_MIN, LLAMA_WEIGHT_MAX);
        return -1;
    }

    xsched_priority = priority;
    xsched_weight   = weight;

    if (!xsched_named) {
        // a context's queues form one scheduling group, keyed by their name prefix: give an unnamed
        // context a unique one, so that WRR never rotates between the CPU and GPU queues of one context
        static std::atomic<uint32_t> next_id{0};
        set_queue_name(("ctx" + std::to_string(next_id.fetch_add(1))).c_str());
    }

    int32_t n = 0;
    for (auto & backend : backends) {
        auto * fn = (ggml_backend_set_priority_t) backend_proc(backend.get(), "ggml_backend_set_priority");
        if (fn) {
            fn(backend.get(), priority, weight);
            n++;
        }
    }
    LLAMA_LOG_DEBUG("%s: priority = %d, weight = %d, %d backend(s) with queues\n", __func__, priority, weight, n);
    return n;
}

void llama_context::get_priority(int32_t * priority, int32_t * weight) const {
    if (priority) {
        *priority = xsched_priority;
    }
    if (weight) {
        *weight = xsched_weight;
    }
}

void llama_context::set_active(bool active) {
    for (auto & backend : backends) {
        auto * fn = (ggml_backend_set_active_t) backend_proc(backend.get(), "ggml_backend_set_active");
        if (fn) {
            fn(backend.get(), active);
        }
    }
}

void llama_context::set_gates_released(bool released) {
    for (auto & backend : backends) {
        auto * fn = (ggml_backend_set_gates_released_t) backend_proc(backend.get(), "ggml_backend_set_gates_released");
        if (fn) {
            fn(backend.get(), released);
        }
    }
}

void llama_context::set_queue_name(const char * name) {
    xsched_named = name != nullptr && name[0] != '\0';
    for (auto & backend : backends) {
        auto * fn = (ggml_backend_set_queue_name_t) backend_proc(backend.get(), "ggml_backend_set_queue_name");
        if (fn) {
            fn(backend.get(), name);
        }
    }
}

//
// the C API (include/llama.h)
//

int32_t llama_set_priority(llama_context * ctx, int32_t priority, int32_t weight) {
    return ctx->set_priority(priority, weight);
}

void llama_get_priority(const llama_context * ctx, int32_t * priority, int32_t * weight) {
    ctx->get_priority(priority, weight);
}

void llama_set_active(llama_context * ctx, bool active) {
    ctx->set_active(active);
}

void llama_set_gates_released(llama_context * ctx, bool released) {
    ctx->set_gates_released(released);
}

void llama_set_queue_name(llama_context * ctx, const char * name) {
    ctx->set_queue_name(name);
}
