// server-admission.h: admission control by priority for the prioritised instances of llama-server
// (xsched-llama overlay, not upstream; the rules are in docs/server.md of xsched-llama, "Admission control").
//
// A completion request is *live* on its instance from the moment it is routed until its answer is out (or it is
// refused); an instance's *waiting* requests are its live ones beyond its slots: max(0, live - n_slots). Bounds:
// `Q` of an --instances entry limits the waiting requests of that instance, --xsched-max-waiting those of all
// instances together. An arrival that would exceed its instance's bound is refused (429). An arrival that would
// exceed the global bound evicts the newest waiting request (one that has no slot yet) of the lowest priority below
// its own, which then gets 429; when there is none, the arrival itself is refused. So a request is never refused by
// the global bound while a request of lower priority waits.
#pragma once

#include "server-common.h"
#include "server-http.h"

#include "common.h"

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

struct server_response;
struct server_admission_ticket;

// SERVER_ADMISSION_RETRY_AFTER_S is the Retry-After (seconds) of every 429 of admission control.
constexpr int SERVER_ADMISSION_RETRY_AFTER_S = 1;

// server_admission_refused is thrown for a request that admission control refuses; ex_wrapper answers it with
// server_admission_refusal().
class server_admission_refused : public std::runtime_error {
public:
    explicit server_admission_refused(const std::string & message) : std::runtime_error(message) {}
};

// server_admission_hold keeps a completion request live on its instance; its destructor (the request's answer is
// out) releases it. Movable, not copyable.
class server_admission_hold {
public:
    server_admission_hold() = default;
    explicit server_admission_hold(std::shared_ptr<server_admission_ticket> t) : ticket(std::move(t)) {}
    server_admission_hold(server_admission_hold &&) = default;
    server_admission_hold & operator=(server_admission_hold && other) noexcept;
    server_admission_hold(const server_admission_hold &) = delete;
    server_admission_hold & operator=(const server_admission_hold &) = delete;
    ~server_admission_hold();

    std::shared_ptr<server_admission_ticket> ticket; // also carried by the request's tasks (server_xsched_times)
};

// server_admission_configure() sets the bounds from --instances and --xsched-max-waiting (instance i = entry i;
// without --instances one instance, bounded only globally). Called once at start.
void server_admission_configure(const common_params & params);

// server_admission_admit() admits a completion request routed to instance `instance` (of `priority`, with `n_slots`
// slots, whose results go to `results`), evicting a lower-priority waiting request when the global bound needs it.
// Throws server_admission_refused when the request is refused. Thread-safe.
server_admission_hold server_admission_admit(int instance, int32_t priority, int n_slots, server_response & results);

// server_admission_bind() records the id of a task of the request (the first one receives the 429 of an eviction).
// Throws server_admission_refused when the request was evicted before its tasks were posted.
void server_admission_bind(const std::shared_ptr<server_admission_ticket> & ticket, int task_id);

// server_admission_started() is called by the instance's loop thread when a task of the request gets a slot: the
// request can no longer be evicted. For a request evicted meanwhile it sends the 429 again (its first one may have
// been sent before the reader waited for it).
void server_admission_started(const std::shared_ptr<server_admission_ticket> & ticket);

// server_admission_refusal() is the 429 answer to `e`: the OpenAI-style error body and Retry-After.
server_http_res_ptr server_admission_refusal(const server_admission_refused & e);

// server_admission_headers() adds Retry-After to a 429 answer (an evicted request's error result) and returns it.
server_http_res_ptr server_admission_headers(server_http_res_ptr res);

// server_admission_add_json() adds the admission fields of instance `instance` to its GET /xsched row `row`:
// max_waiting (null = no bound), live, waiting, rejected, evicted.
void server_admission_add_json(json & row, int instance);

// server_admission_global_json() returns {"max_waiting": N or null, "waiting": ...} for GET /xsched.
json server_admission_global_json();

// server_admission_metrics() returns the Prometheus families xsched:requests_waiting,
// xsched:requests_rejected_total and xsched:requests_evicted_total (labels instance and priority: the instance's
// priority at its latest admission).
std::string server_admission_metrics();
