// server-xsched.h: request routing, metrics and the scheduler admin API of the
// prioritised instances of llama-server (xsched-llama overlay, not upstream).
//
// An instance is one llama context with its own slots, KV cache and loop
// thread; all instances share one model. Requests choose an instance by their
// priority; the rules are written once here (server_pick_instance) and in
// docs/server.md of xsched-llama.
#pragma once

#include "server-common.h"
#include "server-http.h"

#include "common.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

// the ranges of xsched/types.h (PRIORITY_MIN/MAX, WEIGHT_MIN/MAX)
constexpr int32_t SERVER_PRIORITY_MIN     = -255;
constexpr int32_t SERVER_PRIORITY_MAX     = 255;
constexpr int32_t SERVER_PRIORITY_DEFAULT = 0;
constexpr int32_t SERVER_WEIGHT_MIN       = 1;
constexpr int32_t SERVER_WEIGHT_MAX       = 1000;

// server_request_priority() returns the request's priority: the integer
// "priority" field of the JSON body if present, else the X-Priority header,
// else nullopt. Throws std::invalid_argument (HTTP 400) for a value that is not
// an integer in [SERVER_PRIORITY_MIN, SERVER_PRIORITY_MAX].
std::optional<int32_t> server_request_priority(const server_http_req & req);

// server_instance_load is what routing knows of one instance.
struct server_instance_load {
    int32_t priority;
    int     n_pending; // routed HTTP requests not yet answered
};

// server_pick_instance() returns the index of the instance that serves a
// request of `priority` (nullopt = SERVER_PRIORITY_DEFAULT): the instances of
// the highest priority <= `priority` (nearest lower level); when `priority` is
// below every level, the lowest level. Among several instances of that level,
// the one with the fewest pending requests (then the lowest index).
size_t server_pick_instance(const std::vector<server_instance_load> & insts, std::optional<int32_t> priority);

// server_metrics_merge() merges the Prometheus texts of several instances into
// one exposition: each family's HELP/TYPE once, then its samples of every
// instance with the labels `labels[i]` (e.g. `instance="1",priority="10"`).
std::string server_metrics_merge(const std::vector<std::string> & texts, const std::vector<std::string> & labels);

// server_xsched_available() tells whether llama-server was built with the
// xsched core (GGML_XQUEUE=ON).
bool server_xsched_available();

// server_xsched_snapshot() returns the scheduler as JSON: available, policy,
// timeslice_us and one row per queue (name, priority, weight, state, suspended,
// in_flight, units, suspended_us, gate_blocked_us).
json server_xsched_snapshot();

// server_xsched_metrics() returns the scheduler's figures in Prometheus text
// (empty without the core).
std::string server_xsched_metrics();

// server_xsched_set_policy() switches the process's policy ("HPF", "WRR",
// "NONE", any case). Throws std::invalid_argument for another name and
// std::runtime_error when the core refuses; without the core it only warns.
void server_xsched_set_policy(const std::string & name);

// server_xsched_set_timeslice() sets the WRR quantum in microseconds ([100, 10000000],
// else std::invalid_argument); without the core it only warns.
void server_xsched_set_timeslice(int64_t timeslice_us);

// server_xsched_admin_allowed() tells whether `req` may change the scheduler:
// with an admin key, the header X-Admin-Key must equal it; without one, only
// loopback clients may. On refusal `why` says what is missing.
bool server_xsched_admin_allowed(const server_http_req & req, const std::string & admin_key, std::string & why);

// server_instances_prepare() checks --instances and --xsched-policy against the other options and
// the environment (XSCHED_*), applies the restrictions of sharing one model between several
// instances (no idle sleeping, no memory fitting for one context: both turned off with a warning;
// draft/MTP models and multimodal projectors refused) and sets the policy. Returns false with a
// one-line `err` when the server must not start.
bool server_instances_prepare(common_params & params, std::string & err);

// server_header() returns the value of header `name` (case-insensitive), or "".
std::string server_header(const server_http_req & req, const std::string & name);
