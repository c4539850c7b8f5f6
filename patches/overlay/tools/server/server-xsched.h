// server-xsched.h: request routing, metrics and the scheduler admin API of the
// prioritised instances of llama-server (xsched-llama overlay, not upstream).
//
// An instance is one llama context with its own slots, KV cache and loop
// thread; all instances share one model. Requests choose an instance by their
// priority; the rules are written once here (server_pick_instance) and in
// docs/server.md of xsched-llama.
#pragma once

#include "server-admission.h"
#include "server-common.h"
#include "server-http.h"

#include "common.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
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

// server_quote() returns `s` as a JSON string literal (quotes, escapes; invalid UTF-8 replaced), so that a value
// quoted in an error message keeps the message on one line.
std::string server_quote(const std::string & s);

// server_header() returns the value of header `name` (case-insensitive), or "".
std::string server_header(const server_http_req & req, const std::string & name);

// server_decode_guard lets cancels stop a decode without releasing the scheduler's gate (issue 11, D3).
// The instance's loop thread calls begin() with the task ids of every processing slot before a decode and
// end() after it; the task queue's yield worker calls cancel() for each CANCEL task that arrives meanwhile
// (the CANCEL itself is still answered after the decode). Once every task of the decode is cancelled,
// abort_callback (installed with llama_set_abort_callback) returns true, so the decode stops at its next
// graph node as soon as the scheduler lets it run, rather than computing its remaining ubatches for
// clients that are gone. No gate is released: a parked decode stays parked next to a more important
// instance. Thread-safe.
class server_decode_guard {
public:
    // begin() starts a decode that serves the tasks `task_ids`.
    void begin(const std::vector<int> & task_ids);
    // cancel() records that the client of `task_id` is gone; returns true when that cancels the whole decode.
    bool cancel(int task_id);
    // end() ends the decode; returns true when it was cancelled as a whole (the abort was requested).
    bool end();
    // abort_callback() is the ggml abort callback of the instance's context (`data` = the guard).
    static bool abort_callback(void * data);

private:
    std::mutex        mutex;
    std::set<int>     running;
    std::set<int>     cancelled;
    std::atomic<bool> abort{false};
};

// server_signal_notify() is all that the SIGINT/SIGTERM handler does (async-signal-safe): the first signal
// wakes the server_signal_watcher, a second one exits at once with status 1 (upstream's "Ctrl+C twice").
void server_signal_notify(int sig);

// server_signal_watcher runs `on_signal` on its own thread for the first signal that server_signal_notify()
// reports (issue 11, D4). Shutting down takes the task queues', the scheduler's and ggml's locks; run inside
// the handler it would hang when the signal interrupted a thread holding one of them (instance 0's loop
// thread, which usually receives the signal, takes them at every gate). One per process; the destructor
// stops and joins the thread.
class server_signal_watcher {
public:
    explicit server_signal_watcher(std::function<void(int)> on_signal);
    ~server_signal_watcher();
    server_signal_watcher(const server_signal_watcher &) = delete;
    server_signal_watcher & operator=(const server_signal_watcher &) = delete;

private:
    std::thread thread;
};

// server_xsched_times are the moments of one completion request known before it has a slot (issue 12), in
// ggml_time_us() microseconds; 0 = unknown.
struct server_xsched_times {
    int64_t received_us = 0; // the HTTP handler received the request
    int64_t routed_us   = 0; // the request was routed to an instance
    int64_t slot_us     = 0; // its task was given a slot
    std::shared_ptr<server_admission_ticket> admission; // admission control of the request (server-admission.h)
};

// server_xsched_slot_given() records that the task carrying `t` got a slot (slot_us; admission: no longer evictable).
void server_xsched_slot_given(server_xsched_times & t);

// server_xsched_timings_add() adds to a final completion result `res` the object
// "xsched_timings": {"routed_ms", "slot_ms", "prompt_start_ms", "first_token_ms"}: milliseconds since
// `t.received_us` at which the request was routed, got its slot, started prompt processing
// (stats.t_start) and sampled its first token (stats.t_prompt_last once a token was generated); a moment
// not reached is left out, and nothing is added when the arrival is unknown.
void server_xsched_timings_add(json & res, const server_xsched_times & t, const server_slot_stats & stats);

// server_log_errors records the error messages that libllama and ggml log while it exists (why a model or a
// context could not be created), passing every message on to the logger installed before; the destructor
// puts that logger back. Thread-safe.
class server_log_errors {
public:
    server_log_errors();
    ~server_log_errors();
    server_log_errors(const server_log_errors &) = delete;
    server_log_errors & operator=(const server_log_errors &) = delete;

    // first() returns the first error message recorded (one line, without its newline), or "".
    std::string first() const;

private:
    static void callback(ggml_log_level level, const char * text, void * data);

    ggml_log_callback  prev_cb   = nullptr;
    void *             prev_data = nullptr;
    mutable std::mutex mutex;
    std::string        first_error;
    std::string        partial; // an error message that arrives in pieces
    bool               in_error = false;
};

// server_instance_failure() returns the one-line reason why instance `id` (of `priority`) could not be started
// with `params` (its own copy: -c, slots, devices), for the log line that precedes the exit: the first error
// that was logged (`reason`, may be empty) and, when its model is loaded (`model_loaded`), the memory its
// context asks for per device (KV cache and compute buffers, measured without allocating).
std::string server_instance_failure(const common_params & params, size_t id, int32_t priority, bool model_loaded,
                                    const std::string & reason);

// server_xsched_ui_html() is the live view served at GET /xsched/ui (server-xsched-ui.cpp)
const char * server_xsched_ui_html();
// server_xsched_no_ui_html() is the page GET / serves when the build has no web UI assets (server-xsched-ui.cpp)
const char * server_xsched_no_ui_html();

// server_instance_prompt_cache() applies the RAM prompt cache policy of instances to the params of the instance of
// `priority`: an instance above the lowest priority is latency-critical, and llama-server's RAM prompt cache copies
// the KV state of idle slots to host memory on the loop thread between a new request's slot assignment and its
// prompt (~50 ms per request on an 8B model, docs/server.md), so it gets --cache-ram 0 unless `explicit_cache_ram`
// (the user gave --cache-ram / LLAMA_ARG_CACHE_RAM). Logs one line when it turns the cache off.
void server_instance_prompt_cache(common_params & params, size_t id, int32_t priority,
                                  const std::vector<common_server_instance> & all, bool explicit_cache_ram);
// server_arg_given() tells whether one of `names` is on the command line or `env` is set.
bool server_arg_given(int argc, char ** argv, std::initializer_list<const char *> names, const char * env);
