// server-instances.h: the prioritised instances of llama-server (xsched-llama overlay, not upstream).
//
// An instance is one server_context (a llama context with its own slots, KV cache and loop thread) with a name,
// a priority and a WRR weight; all instances share the model that instance 0 loads. server_instance is the
// scheduling side of one server_context (the only xsched-llama member of server_context_impl), server_instances
// is the set that server_routes routes to and aggregates over, server_instance_contexts owns instances 1..N-1 in
// llama_server(). The patches to server-context.cpp and server.cpp only call these (docs/patches.md).
#pragma once

#include "server-queue.h"
#include "server-task.h"
#include "server-xsched.h"

#include "common.h"
#include "llama.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

struct server_context;
struct server_routes;

// server_instance_default_name() is the name of instance `id` without NAME= in --instances: "inst<id>" (also the
// prefix of its queue names in GET /xsched).
std::string server_instance_default_name(int id);

// server_instance is the scheduling state of one server_context: set by configure() before the model loads, the
// llama contexts attached once they exist; the atomics are read by HTTP threads, the rest by the loop thread.
struct server_instance {
    // the instance's task and result queues (the server_context_impl's own)
    server_instance(server_queue & queue_tasks, server_response & queue_results);
    server_instance(const server_instance &) = delete;
    server_instance & operator=(const server_instance &) = delete;

    int                  id   = 0;
    std::string          name = server_instance_default_name(0);
    std::atomic<int32_t> priority{SERVER_PRIORITY_DEFAULT};
    std::atomic<int32_t> weight{SERVER_WEIGHT_MIN};
    std::atomic<int>     pending{0}; // routed HTTP requests not yet answered
    std::atomic<int>     n_slots{0};
    bool                 kv_unified = false; // one KV cache for all its slots (llama.cpp --kv-unified); set at load
    server_decode_guard  decode_guard; // lets cancels abort the running decode (issue 11, D3)

    server_queue &    queue_tasks;
    server_response & queue_results;

    // configure() gives the instance its id, name, priority and WRR weight, and the model of instance 0 to create
    // its context on (nullptr: init() loads the model); call before server_context::load_model()
    void configure(int id, const std::string & name, int32_t priority, int32_t weight, llama_model * shared_model);

    // init() creates the instance's model and context: on the shared model (common_init_from_model) or by loading
    // it (common_init_from_params)
    common_init_result_ptr init(common_params & params);

    // attach() takes the instance's target context `ctx` once it exists: names its queues "inst<id>"
    // (llama_set_queue_name, which also makes them one WRR group), installs the decode guard as its abort
    // callback and gives it the instance's priority and weight. false (logged) when the core refuses them.
    bool attach(llama_context * ctx);

    // attach_draft() puts a draft context into the instance's scheduling group, at its priority (D10): WRR gives
    // the target and its draft one turn, not one each
    void attach_draft(llama_context * ctx);

    // offered_while_decoding() is called for every task that the loop is offered while a decode runs; it tells
    // whether the task may be handled at once (beyond upstream's read-only tasks): the control and LoRA tasks,
    // which touch no state of the decode (D7). A cancel (of `id_target`) is recorded in the decode guard instead
    // of releasing the scheduler's gate, and still waits for the decode (D3); false for every other task.
    bool offered_while_decoding(server_task_type type, int id_target);

    // set_active() opens or closes the context's activity scope (llama_set_active): Ready between the decodes
    // of a request while any slot is processing (loop thread only; idempotent)
    void set_active(bool active);

    // release_gates() lets every gate of the instance's context return at once, so that a decode held back by
    // the scheduler returns and the loop can end (shutdown only)
    void release_gates();

    // set_priority() gives the instance a new priority and/or weight (POST /xsched; nullopt: unchanged), target
    // and draft context alike, one change at a time (D8); std::invalid_argument when the core refuses them
    // (nothing changed)
    void set_priority(std::optional<int32_t> priority, std::optional<int32_t> weight);

    // close_pending() answers every request waiting for a result, and every later one, with an error (call once
    // the loop has ended, so that shutdown does not leave clients hanging)
    void close_pending();

    // to_json() is the instance's row of GET /xsched and GET /props "instances": id, name, priority, weight,
    // n_slots, kv_unified, pending and the admission fields
    json to_json() const;

    // tag() adds the instance's fields (instance, name, priority) to one of its GET /slots rows
    json tag(json slot) const;

    // model() is the instance's model once init() loaded or shared it (instance 0's is shared with the others)
    llama_model * model() const { return model_tgt; }

private:
    std::mutex      priority_mutex; // one priority change at a time (D8)
    llama_model *   shared_model = nullptr;
    llama_model *   model_tgt    = nullptr;
    llama_context * ctx_tgt      = nullptr;
    llama_context * ctx_dft      = nullptr;
    bool            active       = false; // llama_set_active() state, loop thread only
};

// server_instance_pending counts one routed request as pending on its instance while it exists (movable).
class server_instance_pending {
public:
    server_instance_pending() = default;
    explicit server_instance_pending(server_instance & inst) : inst(&inst) { inst.pending.fetch_add(1); }
    server_instance_pending(server_instance_pending && other) noexcept : inst(other.inst) { other.inst = nullptr; }
    server_instance_pending & operator=(server_instance_pending && other) noexcept;
    server_instance_pending(const server_instance_pending &)             = delete;
    server_instance_pending & operator=(const server_instance_pending &) = delete;
    ~server_instance_pending();

private:
    server_instance * inst = nullptr;
};

// server_instance_headers() adds the headers of a response routed to `inst` to `headers`: X-Instance (its index),
// X-Instance-Name and X-Instance-Priority.
void server_instance_headers(const server_instance & inst, std::map<std::string, std::string> & headers);

// server_instances is the set of instances that server_routes routes requests to; [0] is the server's own.
class server_instances {
public:
    // set() replaces the set (the first one is the primary); only before the HTTP server is ready
    void set(std::vector<server_instance *> all);

    // all() is every instance, by id
    const std::vector<server_instance *> & all() const { return insts; }

    // others() is every instance but the server's own ([0])
    std::vector<server_instance *> others() const { return { insts.begin() + 1, insts.end() }; }

    // route() returns the instance that serves the request's priority (server_pick_instance; bad priority:
    // std::invalid_argument, HTTP 400)
    server_instance & route(const server_http_req & req) const;

    // from_query() returns the instance named by the query parameter `instance` (an index or a name) or
    // `priority` (routed); without either the routed default (std::invalid_argument for an unknown instance)
    server_instance & from_query(const server_http_req & req) const;

    // queried() is every instance, or the one from_query() names when the query has `instance` or `priority`
    std::vector<server_instance *> queried(const server_http_req & req) const;

    // n_slots() is the number of slots of all instances
    int n_slots() const;

    // to_json() is the "instances" array of GET /xsched and GET /props
    json to_json() const;

    // ask() posts a task of `type` (filled in by `fill`, may be empty; at the front of the queue when `front`)
    // to each of `targets` in turn and hands its result to `on_result` (may be empty), which returns false to ask
    // no further.
    // Returns false when the connection closed (`error` null) or an instance answered an error (`error` set).
    bool ask(const std::vector<server_instance *> & targets, server_task_type type, bool front,
             const std::function<void(server_task &)> & fill,
             const std::function<bool(server_instance &, server_task_result &)> & on_result,
             const std::function<bool()> & should_stop, json & error) const;

    // metrics() is GET /metrics with --instances: every instance's families labelled instance, priority and name,
    // then the scheduler's and admission control's (`t_start`: Process-Start-Time-Unix); false as ask()
    bool metrics(const std::function<bool()> & should_stop, std::string & text, int64_t & t_start, json & error) const;

    // xsched_json() is GET /xsched: the scheduler snapshot and the instances
    json xsched_json() const;

    // post_xsched() is POST /xsched {"policy", "timeslice_us", "instance", "priority", "weight"}: the caller is
    // checked against `admin_key` (server_xsched_admin_allowed), everything is validated before anything changes
    // (std::invalid_argument: 400), then applied; returns the new GET /xsched, or false with `out` = the error
    // (401/403 for the caller, 501 without the core)
    bool post_xsched(const server_http_req & req, const std::string & admin_key, json & out) const;

private:
    std::vector<server_instance *> insts;
};

// server_instance_contexts owns instances 1..N-1 of --instances and their loop threads (instance 0 is the server's
// own server_context, which owns the model); declared after it, so that they are destroyed first.
class server_instance_contexts {
public:
    explicit server_instance_contexts(server_context & primary) : primary(primary) {}
    server_instance_contexts(const server_instance_contexts &) = delete;
    server_instance_contexts & operator=(const server_instance_contexts &) = delete;

    // load() checks --instances and --xsched-policy (server_instances_prepare), loads instance 0 with `params`
    // (its slots and prompt cache adjusted) and creates instances 1..N-1 on its weights. false with the one-line
    // exit message `err` (naming the instance, the first error logged and the memory its context asked for).
    bool load(common_params & params, int argc, char ** argv, std::string & err);

    // start() gives `routes` every instance, starts the loops of instances 1..N-1 and logs one line per instance
    void start(server_routes & routes);

    // terminate() ends the loops of instances 1..N-1 (the signal's shutdown; the caller ends instance 0's)
    void terminate();

    // shutdown() ends every loop, waits for them, answers every request still waiting (and any that comes later)
    // with an error, and waits up to 3 s for those answers to go out: call before the HTTP server stops, which
    // would cut streams short, so that their clients see the error event
    void shutdown();

private:
    server_context &                             primary;
    std::vector<std::unique_ptr<server_context>> contexts;
    std::vector<std::thread>                     threads;
    bool                                         configured = false; // --instances given
};
