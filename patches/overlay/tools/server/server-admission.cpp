// server-admission.cpp: admission control by priority (see server-admission.h; xsched-llama overlay).

#include "server-admission.h"

#include "server-queue.h"
#include "server-task.h"

#include <map>
#include <mutex>
#include <sstream>
#include <vector>

// server_admission_ticket is one live completion request. Its fields are guarded by the registry's mutex.
struct server_admission_ticket {
    int               instance = 0;
    int32_t           priority = 0;       // the instance's priority when the request was admitted
    uint64_t          seq      = 0;       // admission order
    server_response * results  = nullptr; // the instance's result queue
    int               task_id  = -1;      // its first task (-1 until bound)
    bool              started  = false;   // a task got a slot: no longer evictable
    bool              evicted  = false;
    bool              live     = true;    // counted on its instance (false once evicted or released)
};

namespace {

// evicted_result is the error result that answers an evicted request: 429 with an OpenAI-style body.
struct evicted_result : server_task_result_error {
    json to_json() override {
        return {{"code", 429}, {"message", err_msg}, {"type", "rate_limit_error"}};
    }
    server_task_result * clone() const override {
        return new evicted_result(*this);
    }
};

struct instance_state {
    std::string name;            // the instance's name (a label of the metrics; "" = its default)
    int32_t  max_waiting = 0; // 0 = no bound
    int32_t  priority    = 0;
    int      n_slots     = 0;
    int      live        = 0;
    uint64_t rejected    = 0; // 429s: refused arrivals and evictions
    uint64_t evicted     = 0;
};

struct registry {
    std::mutex                                                 mutex;
    int32_t                                                    max_waiting = 0; // global, 0 = no bound
    std::vector<instance_state>                                insts;
    std::map<uint64_t, std::shared_ptr<server_admission_ticket>> live; // by admission order
    uint64_t                                                   next_seq = 0;

    instance_state & at(int i) {
        if (i >= (int) insts.size()) {
            insts.resize(i + 1);
        }
        return insts[i];
    }
    static int waiting(const instance_state & s) {
        return std::max(0, s.live - s.n_slots);
    }
    int total_waiting() const {
        int n = 0;
        for (const auto & s : insts) {
            n += waiting(s);
        }
        return n;
    }
    void unlink(server_admission_ticket & t) {
        if (t.live) {
            t.live = false;
            at(t.instance).live--;
            live.erase(t.seq);
        }
    }
};

registry & reg() {
    static registry r;
    return r;
}

void send_eviction(server_admission_ticket & t) {
    auto res = std::make_unique<evicted_result>();
    res->id      = t.task_id;
    res->err_msg = string_format("evicted: a request of higher priority needed the waiting place of this priority-%d "
                                 "request (--xsched-max-waiting); retry later", t.priority);
    t.results->send(std::move(res));
}

} // namespace

server_admission_hold & server_admission_hold::operator=(server_admission_hold && other) noexcept {
    if (this != &other) {
        server_admission_hold old(std::move(*this));
        ticket = std::move(other.ticket);
    }
    return *this;
}

server_admission_hold::~server_admission_hold() {
    if (ticket) {
        auto & r = reg();
        std::lock_guard<std::mutex> lock(r.mutex);
        r.unlink(*ticket);
    }
}

void server_admission_configure(const common_params & params) {
    auto & r = reg();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.max_waiting = params.xsched_max_waiting;
    r.insts.clear();
    for (size_t i = 0; i < params.server_instances.size(); i++) {
        r.at((int) i).max_waiting = params.server_instances[i].max_waiting;
        r.at((int) i).priority    = params.server_instances[i].priority;
        r.at((int) i).name        = params.server_instances[i].name;
    }
    if (r.insts.empty()) {
        r.at(0);
    }
}

server_admission_hold server_admission_admit(int instance, int32_t priority, int n_slots, server_response & results) {
    auto & r = reg();
    std::shared_ptr<server_admission_ticket> victim;
    server_admission_hold hold;
    {
        std::lock_guard<std::mutex> lock(r.mutex);
        instance_state & s = r.at(instance);
        s.priority = priority;
        s.n_slots  = n_slots;
        const bool waits = s.live + 1 > s.n_slots; // admitted, it would wait for a slot
        if (waits && s.max_waiting > 0 && registry::waiting(s) >= s.max_waiting) {
            s.rejected++;
            throw server_admission_refused(string_format(
                "instance %d (priority %d) already has %d waiting requests, its bound; retry later",
                instance, priority, registry::waiting(s)));
        }
        if (waits && r.max_waiting > 0 && r.total_waiting() >= r.max_waiting) {
            // the newest request without a slot of the lowest priority below this one, on an instance with waiting
            // requests
            for (auto it = r.live.rbegin(); it != r.live.rend(); ++it) {
                const auto & t = it->second;
                if (t->started || t->priority >= priority || registry::waiting(r.at(t->instance)) == 0) {
                    continue;
                }
                if (!victim || t->priority < victim->priority) {
                    victim = t;
                }
            }
            if (!victim) {
                s.rejected++;
                throw server_admission_refused(string_format(
                    "%d requests are waiting, the bound of --xsched-max-waiting, none of them below priority %d; "
                    "retry later", r.total_waiting(), priority));
            }
            victim->evicted = true;
            r.at(victim->instance).rejected++;
            r.at(victim->instance).evicted++;
            r.unlink(*victim);
            if (victim->task_id >= 0) {
                send_eviction(*victim);
            }
        }
        auto t      = std::make_shared<server_admission_ticket>();
        t->instance = instance;
        t->priority = priority;
        t->seq      = r.next_seq++;
        t->results  = &results;
        r.live[t->seq] = t;
        s.live++;
        hold = server_admission_hold(std::move(t));
    }
    return hold;
}

void server_admission_bind(const std::shared_ptr<server_admission_ticket> & ticket, int task_id) {
    if (!ticket) {
        return;
    }
    auto & r = reg();
    std::lock_guard<std::mutex> lock(r.mutex);
    if (ticket->evicted) {
        throw server_admission_refused(string_format(
            "evicted: a request of higher priority needed the waiting place of this priority-%d request "
            "(--xsched-max-waiting); retry later", ticket->priority));
    }
    if (ticket->task_id < 0) {
        ticket->task_id = task_id;
    }
}

void server_admission_started(const std::shared_ptr<server_admission_ticket> & ticket) {
    if (!ticket) {
        return;
    }
    auto & r = reg();
    std::lock_guard<std::mutex> lock(r.mutex);
    if (ticket->evicted) {
        if (ticket->task_id >= 0) {
            send_eviction(*ticket);
        }
        return;
    }
    ticket->started = true;
}

server_http_res_ptr server_admission_refusal(const server_admission_refused & e) {
    auto res    = std::make_unique<server_http_res>();
    res->status = 429;
    res->data   = safe_json_to_str({{"error", {{"code", 429}, {"message", e.what()}, {"type", "rate_limit_error"}}}});
    res->headers["Retry-After"] = std::to_string(SERVER_ADMISSION_RETRY_AFTER_S);
    return res;
}

server_http_res_ptr server_admission_headers(server_http_res_ptr res) {
    if (res && res->status == 429 && res->headers.find("Retry-After") == res->headers.end()) {
        res->headers["Retry-After"] = std::to_string(SERVER_ADMISSION_RETRY_AFTER_S);
    }
    return res;
}

void server_admission_add_json(json & row, int instance) {
    auto & r = reg();
    std::lock_guard<std::mutex> lock(r.mutex);
    const instance_state & s = r.at(instance);
    row["max_waiting"] = s.max_waiting > 0 ? json(s.max_waiting) : json(nullptr);
    row["live"]        = s.live;
    row["waiting"]     = registry::waiting(s);
    row["rejected"]    = s.rejected;
    row["evicted"]     = s.evicted;
}

json server_admission_global_json() {
    auto & r = reg();
    std::lock_guard<std::mutex> lock(r.mutex);
    return {
        {"max_waiting", r.max_waiting > 0 ? json(r.max_waiting) : json(nullptr)},
        {"waiting",     r.total_waiting()},
    };
}

std::string server_admission_metrics() {
    auto & r = reg();
    std::lock_guard<std::mutex> lock(r.mutex);
    std::ostringstream out;
    struct family { const char * name; const char * type; const char * help; };
    const family fams[] = {
        {"requests_waiting",        "gauge",   "Completion requests routed to the instance beyond its slots"},
        {"requests_rejected_total", "counter", "Completion requests answered 429 by admission control (evictions included)"},
        {"requests_evicted_total",  "counter", "Waiting completion requests evicted (429) for one of higher priority"},
    };
    for (int f = 0; f < 3; f++) {
        out << "# HELP xsched:" << fams[f].name << " " << fams[f].help << "\n"
            << "# TYPE xsched:" << fams[f].name << " " << fams[f].type << "\n";
        for (size_t i = 0; i < r.insts.size(); i++) {
            const instance_state & s = r.insts[i];
            const uint64_t v = f == 0 ? (uint64_t) registry::waiting(s) : f == 1 ? s.rejected : s.evicted;
            const std::string name = s.name.empty() ? "inst" + std::to_string(i) : s.name;
            out << "xsched:" << fams[f].name << "{instance=\"" << i << "\",priority=\"" << s.priority << "\",name=\""
                << name << "\"} " << v << "\n";
        }
    }
    return out.str();
}
