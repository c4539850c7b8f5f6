// server-instances.cpp: see server-instances.h.
#include "server-instances.h"

#include "server-admission.h"
#include "server-context.h"
#include "server-queue.h"
#include "server-task.h"

#include "log.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <optional>
#include <stdexcept>

// READER_POLL_SECONDS is how often a fan-out reader checks its connection (server-context.cpp's HTTP_POLLING_SECONDS)
static constexpr int READER_POLL_SECONDS = 1;

std::string server_instance_default_name(int id) {
    return "inst" + std::to_string(id);
}

//
// server_instance
//

server_instance::server_instance(server_queue & queue_tasks, server_response & queue_results)
    : queue_tasks(queue_tasks), queue_results(queue_results) {}

void server_instance::configure(int id, const std::string & name, int32_t priority, int32_t weight,
                                llama_model * shared_model) {
    this->id           = id;
    this->name         = name.empty() ? server_instance_default_name(id) : name;
    this->priority     = priority;
    this->weight       = weight;
    this->shared_model = shared_model;
}

common_init_result_ptr server_instance::init(common_params & params) {
    common_init_result_ptr res = shared_model != nullptr ? common_init_from_model(params, shared_model)
                                                         : common_init_from_params(params);
    model_tgt = res->model();
    return res;
}

bool server_instance::attach(llama_context * ctx) {
    ctx_tgt = ctx;
    llama_set_queue_name(ctx, server_instance_default_name(id).c_str());
    llama_set_abort_callback(ctx, server_decode_guard::abort_callback, &decode_guard);
    if (llama_set_priority(ctx, priority, weight) < 0) {
        SRV_ERR("invalid priority %d / weight %d\n", (int) priority, (int) weight);
        return false;
    }
    return true;
}

void server_instance::attach_draft(llama_context * ctx) {
    ctx_dft = ctx;
    llama_set_queue_name(ctx, server_instance_default_name(id).c_str());
    llama_set_priority(ctx, priority, weight);
}

bool server_instance::offered_while_decoding(server_task_type type, int id_target) {
    if (type == SERVER_TASK_TYPE_CANCEL) {
        decode_guard.cancel(id_target);
    }
    return type == SERVER_TASK_TYPE_CONTROL || type == SERVER_TASK_TYPE_GET_LORA || type == SERVER_TASK_TYPE_SET_LORA;
}

void server_instance::set_active(bool active) {
    if (active != this->active && ctx_tgt != nullptr) {
        llama_set_active(ctx_tgt, active);
        this->active = active;
    }
}

void server_instance::release_gates() {
    if (ctx_tgt != nullptr) {
        llama_set_gates_released(ctx_tgt, true);
    }
}

void server_instance::set_priority(std::optional<int32_t> new_priority, std::optional<int32_t> new_weight) {
    std::lock_guard<std::mutex> lock(priority_mutex); // its queues end at one priority (D8)
    const int32_t p = new_priority ? *new_priority : priority.load();
    const int32_t w = new_weight ? *new_weight : weight.load();
    if (ctx_tgt != nullptr && llama_set_priority(ctx_tgt, p, w) < 0) {
        throw std::invalid_argument(string_format("priority %d / weight %d refused", p, w));
    }
    if (ctx_dft != nullptr) {
        llama_set_priority(ctx_dft, p, w);
    }
    priority = p;
    weight   = w;
    SRV_INF("xsched: instance %d (%s) now has priority %d, weight %d\n", id, name.c_str(), p, w);
}

void server_instance::close_pending() {
    auto res      = std::make_unique<server_task_result_error>();
    res->err_type = ERROR_TYPE_UNAVAILABLE;
    res->err_msg  = "the server is shutting down";
    queue_results.close(std::move(res));
}

json server_instance::to_json() const {
    json row = {
        { "id",       id              },
        { "name",     name            },
        { "priority", priority.load() },
        { "weight",   weight.load()   },
        { "n_slots",  n_slots.load()  },
        { "kv_unified", kv_unified    },
        { "pending",  pending.load()  },
    };
    server_admission_add_json(row, id); // bounds, waiting, 429s
    return row;
}

json server_instance::tag(json slot) const {
    slot["instance"]      = id;
    slot["instance_name"] = name;
    slot["priority"]      = priority.load();
    return slot;
}

server_instance_pending & server_instance_pending::operator=(server_instance_pending && other) noexcept {
    if (this != &other) {
        if (inst != nullptr) {
            inst->pending.fetch_sub(1);
        }
        inst       = other.inst;
        other.inst = nullptr;
    }
    return *this;
}

server_instance_pending::~server_instance_pending() {
    if (inst != nullptr) {
        inst->pending.fetch_sub(1);
    }
}

void server_instance_headers(const server_instance & inst, std::map<std::string, std::string> & headers) {
    headers["X-Instance"]          = std::to_string(inst.id);
    headers["X-Instance-Name"]     = inst.name;
    headers["X-Instance-Priority"] = std::to_string(inst.priority.load());
}

//
// server_instances
//

void server_instances::set(std::vector<server_instance *> all) {
    GGML_ASSERT(!all.empty());
    insts = std::move(all);
}

server_instance & server_instances::route(const server_http_req & req) const {
    const std::optional<int32_t> priority = server_request_priority(req);
    std::vector<server_instance_load> loads;
    for (const auto * inst : insts) {
        loads.push_back({ inst->priority.load(), inst->pending.load() });
    }
    return *insts[server_pick_instance(loads, priority)];
}

// find_instance() returns the instance whose index or name is `key`, or nullptr
static server_instance * find_instance(const std::vector<server_instance *> & insts, const std::string & key) {
    for (auto * inst : insts) {
        if (inst->name == key) {
            return inst;
        }
    }
    size_t pos = 0;
    long   v   = -1;
    try {
        v = std::stol(key, &pos);
    } catch (const std::exception &) {
        pos = 0;
    }
    if (pos == 0 || pos != key.size() || v < 0 || v >= (long) insts.size()) {
        return nullptr;
    }
    return insts[v];
}

static std::string allowed_instances(const std::vector<server_instance *> & insts) {
    std::string names;
    for (const auto * inst : insts) {
        names += (names.empty() ? "" : ", ") + inst->name;
    }
    return string_format("an index in [0, %d] or a name (%s)", (int) insts.size() - 1, names.c_str());
}

server_instance & server_instances::from_query(const server_http_req & req) const {
    const std::string id = req.get_param("instance");
    if (!id.empty()) {
        server_instance * inst = find_instance(insts, id);
        if (inst == nullptr) {
            throw std::invalid_argument(string_format("invalid instance %s: must be %s", server_quote(id).c_str(),
                                                      allowed_instances(insts).c_str()));
        }
        return *inst;
    }
    server_http_req q{ req.params, {}, req.path, req.query_string, "", {}, req.should_stop };
    const std::string prio = req.get_param("priority");
    if (!prio.empty()) {
        q.headers["X-Priority"] = prio;
    }
    return route(q);
}

std::vector<server_instance *> server_instances::queried(const server_http_req & req) const {
    if (!req.get_param("instance").empty() || !req.get_param("priority").empty()) {
        return { &from_query(req) };
    }
    return insts;
}

int server_instances::n_slots() const {
    int n = 0;
    for (const auto * inst : insts) {
        n += inst->n_slots.load();
    }
    return n;
}

json server_instances::to_json() const {
    json arr = json::array();
    for (const auto * inst : insts) {
        arr.push_back(inst->to_json());
    }
    return arr;
}

// The caller's response (create_response) has woken instance 0 from sleep; the others never sleep
// (server_instances_prepare turns sleeping off for several instances).
bool server_instances::ask(const std::vector<server_instance *> & targets, server_task_type type, bool front,
                           const std::function<void(server_task &)> &                           fill,
                           const std::function<bool(server_instance &, server_task_result &)> & on_result,
                           const std::function<bool()> & should_stop, json & error) const {
    for (auto * inst : targets) {
        server_response_reader rd(inst->queue_tasks, inst->queue_results, READER_POLL_SECONDS);
        {
            server_task task(type);
            task.id = rd.get_new_id();
            if (fill) {
                fill(task);
            }
            rd.post_task(std::move(task), front);
        }
        auto result = rd.next(should_stop);
        if (!result) {
            error = nullptr; // connection closed
            return false;
        }
        if (result->is_error()) {
            error = result->to_json();
            return false;
        }
        if (on_result && !on_result(*inst, *result)) {
            break;
        }
    }
    return true;
}

bool server_instances::metrics(const std::function<bool()> & should_stop, std::string & text, int64_t & t_start,
                               json & error) const {
    std::vector<std::string> texts;
    std::vector<std::string> labels;
    const bool               ok = ask(
        insts, SERVER_TASK_TYPE_METRICS, true, [](server_task & task) { task.metrics_reset_bucket = true; },
        [&](server_instance & inst, server_task_result & result) {
            auto * res = dynamic_cast<server_task_result_metrics *>(&result);
            GGML_ASSERT(res != nullptr);
            t_start = res->metrics.t_start;
            texts.push_back(res->to_metrics());
            // the name is a label of its own: `instance` stays the index (docs/server.md, "Metrics")
            labels.push_back(string_format("instance=\"%d\",priority=\"%d\",name=\"%s\"", inst.id,
                                           inst.priority.load(), inst.name.c_str()));
            return true;
        },
        should_stop, error);
    if (!ok) {
        return false;
    }
    text = server_metrics_merge(texts, labels) + server_xsched_metrics() + server_admission_metrics();
    return true;
}

json server_instances::xsched_json() const {
    json out         = server_xsched_snapshot();
    out["instances"] = to_json();
    return out;
}

bool server_instances::post_xsched(const server_http_req & req, const std::string & admin_key, json & out) const {
    std::string why;
    if (!server_xsched_admin_allowed(req, admin_key, why)) {
        out = format_error_response(why, admin_key.empty() ? ERROR_TYPE_PERMISSION : ERROR_TYPE_AUTHENTICATION);
        return false;
    }
    const json body = json::parse_no_throw(req.body);
    if (!body.is_object()) {
        throw std::invalid_argument(
            "the body must be a JSON object with any of: policy, timeslice_us, instance, priority, weight");
    }
    for (const auto & [key, value] : body.items()) {
        if (key != "policy" && key != "timeslice_us" && key != "instance" && key != "priority" && key != "weight") {
            throw std::invalid_argument("unknown field " + server_quote(key) +
                                        ": allowed policy, timeslice_us, instance, priority, weight");
        }
    }
    auto int_field = [&](const char * name, int64_t lo, int64_t hi) -> std::optional<int64_t> {
        if (!body.contains(name)) {
            return std::nullopt;
        }
        const json & v = body.at(name);
        if (!v.is_number_integer() || v.get<double>() < (double) lo || v.get<double>() > (double) hi) {
            throw std::invalid_argument(string_format("invalid \"%s\" %s: must be an integer in [%lld, %lld]", name,
                                                      v.dump().c_str(), (long long) lo, (long long) hi));
        }
        return v.get<int64_t>();
    };
    server_instance * instance = nullptr;
    if (body.contains("instance") && body.at("instance").is_string()) {
        instance = find_instance(insts, body.at("instance").get<std::string>());
        if (instance == nullptr) {
            throw std::invalid_argument("invalid \"instance\" " + body.at("instance").dump() + ": must be " +
                                        allowed_instances(insts));
        }
    } else if (const auto index = int_field("instance", 0, (int64_t) insts.size() - 1)) {
        instance = insts[*index];
    }
    const auto priority     = int_field("priority", SERVER_PRIORITY_MIN, SERVER_PRIORITY_MAX);
    const auto weight       = int_field("weight", SERVER_WEIGHT_MIN, SERVER_WEIGHT_MAX);
    const auto timeslice_us = int_field("timeslice_us", 100, 10000000);
    std::optional<std::string> policy;
    if (body.contains("policy")) {
        const json & v    = body.at("policy");
        std::string  name = v.is_string() ? v.get<std::string>() : "";
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return (char) std::toupper(c); });
        if (name != "HPF" && name != "WRR" && name != "NONE") {
            throw std::invalid_argument("invalid \"policy\" " + v.dump() + ": allowed \"HPF\", \"WRR\", \"NONE\"");
        }
        policy = name;
    }
    if ((priority || weight) && instance == nullptr) {
        throw std::invalid_argument(
            "\"priority\" and \"weight\" need \"instance\" (an index or a name of GET /xsched instances)");
    }
    if (instance != nullptr && !priority && !weight) {
        throw std::invalid_argument("\"instance\" needs \"priority\" and/or \"weight\"");
    }
    if ((policy || timeslice_us) && !server_xsched_available()) {
        out = format_error_response("llama-server was built without the xsched core (GGML_XQUEUE=OFF): "
                                    "policy and timeslice cannot be changed",
                                    ERROR_TYPE_NOT_SUPPORTED);
        return false;
    }

    if (policy) {
        server_xsched_set_policy(*policy);
    }
    if (timeslice_us) {
        server_xsched_set_timeslice(*timeslice_us);
    }
    if (instance != nullptr) {
        instance->set_priority(priority ? std::optional<int32_t>((int32_t) *priority) : std::nullopt,
                               weight ? std::optional<int32_t>((int32_t) *weight) : std::nullopt);
    }
    out = xsched_json();
    return true;
}

//
// server_instance_contexts
//

bool server_instance_contexts::load(common_params & params, int argc, char ** argv, std::string & err) {
    if (!server_instances_prepare(params, err)) {
        return false;
    }
    const std::vector<common_server_instance> cfg = params.server_instances;
    const int32_t n_parallel_default = params.n_parallel;
    const int32_t cache_ram_default  = params.cache_ram_mib;
    const bool    cache_idle_default = params.cache_idle_slots;
    const bool    cache_ram_explicit = server_arg_given(argc, argv, { "-cram", "--cache-ram" }, "LLAMA_ARG_CACHE_RAM");
    if (!cfg.empty()) {
        primary.instance().configure(0, cfg[0].name, cfg[0].priority, cfg[0].weight, nullptr);
        params.n_parallel = cfg[0].n_parallel > 0 ? cfg[0].n_parallel : n_parallel_default;
        server_instance_prompt_cache(params, 0, cfg[0].priority, cfg, cache_ram_explicit);
    }
    primary.instance().kv_unified = params.kv_unified;

    // a failed instance is reported on one line with the first error logged while loading
    server_log_errors load_errors;
    if (!primary.load_model(params)) {
        // one line that names the instance and, when the model loaded, the memory it asked for
        err = "exiting due to model loading error: " +
              server_instance_failure(params, 0, cfg.empty() ? 0 : cfg[0].priority,
                                      primary.instance().model() != nullptr, load_errors.first());
        return false;
    }

    // instances 1..N-1 get their own context on the weights loaded above
    for (size_t i = 1; i < cfg.size(); i++) {
        common_params params_inst = params; // the primary's resolved params (sampling, LoRA pointers)
        params_inst.n_parallel    = cfg[i].n_parallel > 0 ? cfg[i].n_parallel : n_parallel_default;
        params_inst.speculative.draft.ctx_tgt = nullptr; // the primary's contexts are not ours
        params_inst.speculative.draft.ctx_dft = nullptr;
        params_inst.cache_ram_mib             = cache_ram_default;
        params_inst.cache_idle_slots          = cache_idle_default;
        server_instance_prompt_cache(params_inst, i, cfg[i].priority, cfg, cache_ram_explicit);
        auto inst = std::make_unique<server_context>();
        inst->instance().configure((int) i, cfg[i].name, cfg[i].priority, cfg[i].weight, primary.instance().model());
        inst->instance().kv_unified = params_inst.kv_unified;
        if (!inst->load_model(params_inst)) {
            err = "exiting: " + server_instance_failure(params_inst, i, cfg[i].priority, true, load_errors.first());
            return false;
        }
        contexts.push_back(std::move(inst));
    }
    configured = !cfg.empty();
    return true;
}

void server_instance_contexts::start(server_routes & routes) {
    std::vector<server_instance *> all = { &primary.instance() };
    for (auto & c : contexts) {
        all.push_back(&c->instance());
    }
    routes.instances.set(all);
    for (auto & c : contexts) {
        server_context * p = c.get();
        threads.emplace_back([p]() { p->start_loop(); });
    }
    if (configured) {
        for (const auto * inst : all) {
            SRV_INF("instance %d (%s): priority %d, weight %d, %d slots\n", inst->id, inst->name.c_str(),
                    inst->priority.load(), inst->weight.load(), inst->n_slots.load());
        }
    }
}

void server_instance_contexts::terminate() {
    for (auto & c : contexts) {
        c->terminate();
    }
}

void server_instance_contexts::shutdown() {
    std::vector<server_context *> all = { &primary };
    for (auto & c : contexts) {
        all.push_back(c.get());
    }
    for (auto * c : all) {
        c->terminate();
    }
    for (auto & t : threads) {
        if (t.joinable()) {
            t.join();
        }
    }
    for (auto * c : all) {
        c->instance().close_pending();
    }
    for (int i = 0; i < 300 && std::any_of(all.begin(), all.end(),
                                           [](server_context * c) { return c->instance().pending.load() > 0; });
         i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}
