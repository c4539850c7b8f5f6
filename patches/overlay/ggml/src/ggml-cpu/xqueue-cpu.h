// xqueue-cpu.h: the CPU backend's preemptible queue (GGML_XQUEUE builds).
//
// One host XQueue per CPU backend, created at the backend's first graph
// compute (backends that never compute cost nothing). The backend gates once
// per graph compute, not per node: ggml-cpu's barriers spin, so a thread
// parked between nodes would keep every other worker busy.
#pragma once

#ifdef GGML_USE_XQUEUE

#include "ggml-backend.h"

#include <cstdint>

struct ggml_cpu_xqueue;

// ggml_cpu_xqueue_new() returns the queue state of a new CPU backend (no XQueue yet).
ggml_cpu_xqueue * ggml_cpu_xqueue_new(void);
// ggml_cpu_xqueue_free() destroys the XQueue, if any, and the state.
void ggml_cpu_xqueue_free(ggml_cpu_xqueue * q);

// ggml_cpu_xqueue_begin() creates the XQueue on first use and blocks until the scheduler admits one graph.
void ggml_cpu_xqueue_begin(ggml_cpu_xqueue * q);
// ggml_cpu_xqueue_end() reports the graph complete (the Idle edge, unless an activity scope is open).
void ggml_cpu_xqueue_end(ggml_cpu_xqueue * q);

// The four backend procs (see ggml_backend_set_priority_t & co. in ggml-backend.h).
void ggml_cpu_xqueue_set_priority(ggml_cpu_xqueue * q, int32_t priority, int32_t weight);
void ggml_cpu_xqueue_set_active(ggml_cpu_xqueue * q, bool active);
void ggml_cpu_xqueue_set_gates_released(ggml_cpu_xqueue * q, bool released);
void ggml_cpu_xqueue_set_name(ggml_cpu_xqueue * q, const char * name);

#endif // GGML_USE_XQUEUE
