// server-xsched.cpp: see server-xsched.h.
#include "server-xsched.h"

#include "fit.h"
#include "log.h"

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <cctype>
#include <csignal>
#include <cstdlib>
#include <map>
#include <sstream>
#include <stdexcept>

#ifndef _WIN32
#include <cerrno>
#include <fcntl.h>
#include <unistd.h>
#endif

#ifdef LLAMA_SERVER_XSCHED
#include "xsched/xsched.h"
#endif

static std::string allowed_priorities() {
    return "an integer in [" + std::to_string(SERVER_PRIORITY_MIN) + ", " + std::to_string(SERVER_PRIORITY_MAX) + "]";
}

std::string server_quote(const std::string & s) {
    return json(s).dump_safe();
}

std::string server_header(const server_http_req & req, const std::string & name) {
    for (const auto & [key, value] : req.headers) {
        if (key.size() == name.size() &&
            std::equal(key.begin(), key.end(), name.begin(), [](char a, char b) {
                return std::tolower((unsigned char) a) == std::tolower((unsigned char) b);
            })) {
            return value;
        }
    }
    return "";
}

static int32_t check_priority(int64_t value, const char * source) {
    if (value < SERVER_PRIORITY_MIN || value > SERVER_PRIORITY_MAX) {
        throw std::invalid_argument(std::string("invalid ") + source + " " + std::to_string(value) +
                                    ": must be " + allowed_priorities());
    }
    return (int32_t) value;
}

std::optional<int32_t> server_request_priority(const server_http_req & req) {
    // the body wins over the header; the raw body is read because some API
    // converters (e.g. /v1/messages) drop unknown fields
    const json body = json::parse_no_throw(req.body);
    if (body.is_object() && body.contains("priority") && !body.at("priority").is_null()) {
        const json & p = body.at("priority");
        // the range check goes through double: a huge integer must not wrap into the range
        if (!p.is_number_integer() || p.get<double>() < SERVER_PRIORITY_MIN || p.get<double>() > SERVER_PRIORITY_MAX) {
            throw std::invalid_argument("invalid \"priority\" " + p.dump() + ": must be " + allowed_priorities());
        }
        return check_priority(p.get<int64_t>(), "\"priority\"");
    }
    const std::string h = server_header(req, "X-Priority");
    if (h.empty()) {
        return std::nullopt;
    }
    size_t pos = 0;
    int64_t v = 0;
    try {
        v = std::stoll(h, &pos, 10);
    } catch (const std::exception &) {
        pos = 0;
    }
    if (pos == 0 || pos != h.size() || !(std::isdigit((unsigned char) h[0]) || h[0] == '-' || h[0] == '+')) {
        throw std::invalid_argument("invalid X-Priority header " + server_quote(h) + ": must be " + allowed_priorities());
    }
    return check_priority(v, "X-Priority header");
}

size_t server_pick_instance(const std::vector<server_instance_load> & insts, std::optional<int32_t> priority) {
    GGML_ASSERT(!insts.empty());
    const int32_t want = priority.value_or(SERVER_PRIORITY_DEFAULT);

    // the level: the highest priority <= want, else the lowest priority
    bool found = false;
    int32_t level = 0;
    int32_t lowest = insts[0].priority;
    for (const auto & inst : insts) {
        lowest = std::min(lowest, inst.priority);
        if (inst.priority <= want && (!found || inst.priority > level)) {
            level = inst.priority;
            found = true;
        }
    }
    if (!found) {
        level = lowest;
    }

    size_t best = insts.size();
    for (size_t i = 0; i < insts.size(); i++) {
        if (insts[i].priority == level && (best == insts.size() || insts[i].n_pending < insts[best].n_pending)) {
            best = i;
        }
    }
    return best;
}

std::string server_metrics_merge(const std::vector<std::string> & texts, const std::vector<std::string> & labels) {
    GGML_ASSERT(texts.size() == labels.size());
    struct family {
        std::vector<std::string> meta;    // HELP / TYPE lines
        std::vector<std::string> samples;
    };
    std::vector<std::string> order;
    std::map<std::string, family> families;

    auto family_of = [&](const std::string & name) -> family & {
        auto it = families.find(name);
        if (it == families.end()) {
            order.push_back(name);
            it = families.emplace(name, family{}).first;
        }
        return it->second;
    };

    for (size_t i = 0; i < texts.size(); i++) {
        std::istringstream in(texts[i]);
        std::string line;
        while (std::getline(in, line)) {
            if (line.empty()) {
                continue;
            }
            if (line.rfind("# ", 0) == 0) {
                // "# HELP name ..." or "# TYPE name ..."
                std::istringstream ls(line.substr(2));
                std::string kind, name;
                ls >> kind >> name;
                family & f = family_of(name);
                if (i == 0 || f.meta.size() < 2) {
                    if (std::find(f.meta.begin(), f.meta.end(), line) == f.meta.end()) {
                        f.meta.push_back(line);
                    }
                }
                continue;
            }
            const size_t brace = line.find('{');
            const size_t space = line.find(' ');
            const size_t end_name = std::min(brace, space);
            if (end_name == std::string::npos) {
                continue;
            }
            const std::string name = line.substr(0, end_name);
            std::string sample;
            if (brace != std::string::npos && brace < space) {
                sample = name + "{" + labels[i] + "," + line.substr(brace + 1);
            } else {
                sample = name + "{" + labels[i] + "}" + line.substr(end_name);
            }
            family_of(name).samples.push_back(sample);
        }
    }

    std::string out;
    for (const auto & name : order) {
        const family & f = families.at(name);
        for (const auto & l : f.meta) {
            out += l + "\n";
        }
        for (const auto & l : f.samples) {
            out += l + "\n";
        }
    }
    return out;
}

bool server_xsched_admin_allowed(const server_http_req & req, const std::string & admin_key, std::string & why) {
    if (!admin_key.empty()) {
        if (server_header(req, "X-Admin-Key") == admin_key) {
            return true;
        }
        why = "POST /xsched requires the header X-Admin-Key with the key given by --xsched-admin-key";
        return false;
    }
    const std::string & addr = req.remote_addr;
    const bool loopback = addr.rfind("127.", 0) == 0 || addr == "::1" || addr.rfind("::ffff:127.", 0) == 0;
    if (loopback) {
        return true;
    }
    why = "POST /xsched is allowed only from loopback unless the server was started with --xsched-admin-key";
    return false;
}

bool server_instances_prepare(common_params & params, std::string & err) {
    server_admission_configure(params);
#ifdef LLAMA_SERVER_XSCHED
    // --xsched-scheduler PATH is XSCHED_SCHEDULER=PATH (the option also reads that variable): set before the first
    // queue exists, so that the core joins the daemon there; the core's check below names a bad path
    if (!params.xsched_scheduler.empty()) {
        setenv("XSCHED_SCHEDULER", params.xsched_scheduler.c_str(), 1);
    }
    char msg[256] = {0};
    if (XSchedCheckEnv(msg, sizeof(msg)) != kXSchedSuccess) {
        err = params.xsched_scheduler.empty() ? std::string(msg) : "--xsched-scheduler: " + std::string(msg);
        return false;
    }
#else
    if (!params.xsched_scheduler.empty()) {
        LOG_WRN("--xsched-scheduler %s ignored: llama-server was built without the xsched core (GGML_XQUEUE=OFF)\n",
                params.xsched_scheduler.c_str());
    }
#endif
    if (!params.xsched_policy.empty()) {
        if (server_xsched_available()) {
            server_xsched_set_policy(params.xsched_policy);
        } else {
            LOG_WRN("--xsched-policy %s ignored: llama-server was built without the xsched core (GGML_XQUEUE=OFF)\n",
                    params.xsched_policy.c_str());
        }
    }
    if (params.server_instances.size() <= 1) {
        return true;
    }
    const size_t n = params.server_instances.size();
    if (!params.mmproj.path.empty()) {
        err = string_format("a multimodal projector (--mmproj) cannot be shared by %zu --instances: "
                            "start without it (--no-mmproj) or with one instance", n);
        return false;
    }
    const bool spec_mtp = std::find(params.speculative.types.begin(), params.speculative.types.end(),
                                    COMMON_SPECULATIVE_TYPE_DRAFT_MTP) != params.speculative.types.end();
    if (params.speculative.has_dft() || spec_mtp) {
        err = string_format("speculative decoding with a draft or MTP model is not supported with %zu --instances "
                            "(each instance would load its own): remove the draft options or use one instance", n);
        return false;
    }
    if (params.sleep_idle_seconds > 0) {
        LOG_WRN("--sleep-idle-seconds turned off: sleeping frees the model shared by the %zu instances\n", n);
        params.sleep_idle_seconds = -1;
    }
    if (params.n_ctx == 0) {
        LOG_WRN("-c not set: each of the %zu instances gets a KV cache for the model's whole training context; "
                "size them with -c\n", n);
    }
    if (params.fit_params) {
        LOG_WRN("memory fitting (-fit) turned off: it sizes one context, the %zu instances have one each; "
                "size them with -c / -ngl\n", n);
        params.fit_params = false;
    }
    return true;
}

void server_decode_guard::begin(const std::vector<int> & task_ids) {
    std::lock_guard<std::mutex> lock(mutex);
    running.clear();
    running.insert(task_ids.begin(), task_ids.end());
    cancelled.clear();
    abort = false;
}

bool server_decode_guard::cancel(int task_id) {
    std::lock_guard<std::mutex> lock(mutex);
    if (running.count(task_id) == 0) {
        return false;
    }
    cancelled.insert(task_id);
    if (cancelled.size() == running.size()) {
        abort = true;
    }
    return abort;
}

bool server_decode_guard::end() {
    std::lock_guard<std::mutex> lock(mutex);
    const bool aborted = abort;
    running.clear();
    cancelled.clear();
    abort = false;
    return aborted;
}

bool server_decode_guard::abort_callback(void * data) {
    return static_cast<server_decode_guard *>(data)->abort.load(std::memory_order_relaxed);
}

#ifndef _WIN32
// the watcher's pipe: [0] read by the watcher, [1] written by the signal handler
static int g_signal_pipe[2] = {-1, -1};
#endif
static std::atomic<int>                 g_signal_count{0};
static std::function<void(int)> *       g_signal_direct = nullptr; // platforms without the pipe
static constexpr unsigned char          SIGNAL_STOP_WATCHER = 0xff;

void server_signal_notify(int sig) {
    if (g_signal_count.fetch_add(1) > 0) {
        // in case shutting down hangs, a second Ctrl+C ends the process at once (as upstream)
        static const char msg[] = "Received second interrupt, terminating immediately.\n";
#ifndef _WIN32
        ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
        (void) n;
#endif
        _exit(1);
    }
#ifndef _WIN32
    if (g_signal_pipe[1] >= 0) {
        const unsigned char b = (unsigned char) (sig & 0x7f);
        ssize_t n = write(g_signal_pipe[1], &b, 1);
        (void) n;
        return;
    }
#endif
    if (g_signal_direct != nullptr) {
        (*g_signal_direct)(sig); // Windows: the console handler already runs on a thread of its own
    }
}

server_signal_watcher::server_signal_watcher(std::function<void(int)> on_signal) {
#ifndef _WIN32
    if (pipe(g_signal_pipe) == 0) {
        fcntl(g_signal_pipe[1], F_SETFL, fcntl(g_signal_pipe[1], F_GETFL) | O_NONBLOCK);
        fcntl(g_signal_pipe[0], F_SETFD, FD_CLOEXEC);
        fcntl(g_signal_pipe[1], F_SETFD, FD_CLOEXEC);
        const int fd = g_signal_pipe[0];
        thread = std::thread([fd, on_signal = std::move(on_signal)]() {
            while (true) {
                unsigned char b = 0;
                const ssize_t n = read(fd, &b, 1);
                if (n < 0 && errno == EINTR) {
                    continue;
                }
                if (n != 1 || b == SIGNAL_STOP_WATCHER) {
                    return;
                }
                on_signal((int) b);
            }
        });
        return;
    }
    LOG_WRN("%s: pipe() failed: signals are handled inside the signal handler\n", __func__);
    g_signal_pipe[0] = g_signal_pipe[1] = -1;
#endif
    g_signal_direct = new std::function<void(int)>(std::move(on_signal));
}

server_signal_watcher::~server_signal_watcher() {
#ifndef _WIN32
    if (thread.joinable()) {
        const unsigned char b = SIGNAL_STOP_WATCHER;
        ssize_t n = 0;
        do {
            n = write(g_signal_pipe[1], &b, 1);
        } while (n < 0 && errno == EINTR);
        thread.join();
        // a late signal finds no pipe and is ignored (a second one still exits)
        const int w = g_signal_pipe[1];
        g_signal_pipe[1] = -1;
        close(w);
        close(g_signal_pipe[0]);
        g_signal_pipe[0] = -1;
    }
#endif
}

void server_xsched_slot_given(server_xsched_times & t) {
    t.slot_us = ggml_time_us();
    server_admission_started(t.admission);
}

void server_xsched_timings_add(json & res, const server_xsched_times & t, const server_slot_stats & stats) {
    if (t.received_us <= 0) {
        return;
    }
    const std::pair<const char *, int64_t> moments[] = {
        {"routed_ms",       t.routed_us},
        {"slot_ms",         t.slot_us},
        {"prompt_start_ms", stats.t_start},
        {"first_token_ms",  stats.n_gen > 0 ? stats.t_prompt_last : 0},
    };
    json out = json::object();
    for (const auto & [name, us] : moments) {
        if (us > 0) {
            out[name] = (double) std::max<int64_t>(0, us - t.received_us) / 1000.0;
        }
    }
    res["xsched_timings"] = out;
}

server_log_errors::server_log_errors() {
    llama_log_get(&prev_cb, &prev_data);
    llama_log_set(&server_log_errors::callback, this);
}

server_log_errors::~server_log_errors() {
    llama_log_set(prev_cb, prev_data);
}

std::string server_log_errors::first() const {
    std::lock_guard<std::mutex> lock(mutex);
    return first_error;
}

void server_log_errors::callback(ggml_log_level level, const char * text, void * data) {
    auto * self = static_cast<server_log_errors *>(data);
    {
        std::lock_guard<std::mutex> lock(self->mutex);
        // GGML_LOG_LEVEL_CONT continues the previous message
        const bool error = level == GGML_LOG_LEVEL_ERROR || (level == GGML_LOG_LEVEL_CONT && self->in_error);
        self->in_error = error;
        if (error && self->first_error.empty() && text != nullptr) {
            self->partial += text;
            const size_t nl = self->partial.find('\n');
            if (nl != std::string::npos) {
                self->first_error = self->partial.substr(0, nl);
                self->partial.clear();
            }
        }
    }
    if (self->prev_cb != nullptr) {
        self->prev_cb(level, text, self->prev_data);
    }
}

std::string server_instance_failure(const common_params & params, size_t id, int32_t priority, bool model_loaded,
                                    const std::string & reason) {
    std::string line = string_format("instance %zu (priority %d) failed to start: ", id, (int) priority);
    const std::string because = reason.empty() ? "" : " (" + reason + ")";
    if (!model_loaded) {
        return line + "the model '" + params.model.path + "' could not be loaded" + because;
    }
    line += string_format("its context (-c %d, %d slot(s)) could not be created%s", (int) params.n_ctx,
                          (int) params.n_parallel, because.c_str());
    try {
        common_params p = params;
        llama_model_params   mparams = common_model_params_to_llama(p);
        llama_context_params cparams = common_context_params_to_llama(p);
        std::vector<ggml_backend_dev_t> devs;
        uint32_t ngl = 0, n_ctx_train = 0, n_expert = 0;
        const auto mem = common_get_device_memory_data(params.model.path.c_str(), &mparams, &cparams, devs, ngl,
                                                       n_ctx_train, n_expert, GGML_LOG_LEVEL_ERROR);
        std::string wants;
        for (size_t i = 0; i < mem.size(); i++) {
            const size_t bytes = mem[i].context + mem[i].compute;
            if (bytes == 0) {
                continue;
            }
            const std::string where = i < devs.size() ? ggml_backend_dev_name(devs[i]) : "host memory";
            wants += string_format("%s%.0f MiB of %s (KV cache %.0f MiB, compute %.0f MiB)", wants.empty() ? "" : ", ",
                                   bytes / 1048576.0, where.c_str(), mem[i].context / 1048576.0,
                                   mem[i].compute / 1048576.0);
        }
        if (!wants.empty()) {
            line += ": it needs " + wants + "; lower -c or the slots, or run fewer instances";
        }
    } catch (const std::exception & e) {
        line += string_format("; its memory could not be measured (%s)", e.what());
    }
    return line;
}

void server_instance_prompt_cache(common_params & params, size_t id, int32_t priority,
                                  const std::vector<common_server_instance> & all, bool explicit_cache_ram) {
    if (all.size() <= 1 || explicit_cache_ram || params.cache_ram_mib == 0) {
        return;
    }
    int32_t lowest = all[0].priority;
    for (const auto & inst : all) {
        lowest = std::min(lowest, inst.priority);
    }
    if (priority <= lowest) {
        return;
    }
    params.cache_ram_mib    = 0;
    params.cache_idle_slots = false;
    LOG_INF("instance %zu (priority %d): RAM prompt cache off (its copies of idle slots delay new requests); "
            "--cache-ram N turns it on for every instance\n", id, priority);
}

bool server_arg_given(int argc, char ** argv, std::initializer_list<const char *> names, const char * env) {
    if (env != nullptr && getenv(env) != nullptr) {
        return true;
    }
    for (int i = 1; i < argc; i++) {
        for (const char * n : names) {
            const size_t len = strlen(n);
            if (strncmp(argv[i], n, len) == 0 && (argv[i][len] == '\0' || argv[i][len] == '=')) {
                return true;
            }
        }
    }
    return false;
}

#ifdef LLAMA_SERVER_XSCHED

static const char * state_name(XQueueState s) {
    switch (s) {
        case kQueueStateIdle:  return "idle";
        case kQueueStateReady: return "ready";
        default:               return "unknown";
    }
}

static std::vector<XQueueInfo> snapshot_rows(XSchedSnapshotInfo & info) {
    std::vector<XQueueInfo> rows(64);
    for (int attempt = 0; attempt < 4; attempt++) {
        size_t written = 0;
        if (XSchedSnapshot(&info, rows.data(), rows.size(), &written) != kXSchedSuccess) {
            return {};
        }
        if (info.n_queues <= rows.size()) {
            rows.resize(written);
            // a draft context has its target's queue names (one scheduling group): number the repeats
            // ("inst0/cpu#2"), so that every queue has its own row name and Prometheus series
            std::map<std::string, int> seen;
            for (auto & r : rows) {
                const int n = ++seen[r.name];
                if (n > 1) {
                    const std::string renamed = std::string(r.name) + "#" + std::to_string(n);
                    snprintf(r.name, sizeof(r.name), "%s", renamed.c_str());
                }
            }
            return rows;
        }
        rows.resize(info.n_queues + 16);
    }
    return {};
}

bool server_xsched_available() {
    return true;
}

static const uint64_t preempt_bounds_us[XSCHED_PREEMPT_BUCKETS - 1] = XSCHED_PREEMPT_BOUNDS_US;

// preemption_json() is a queue's preemption record: the histogram's buckets are not cumulative, the last one
// is unbounded
static json preemption_json(const XPreemptStats & p) {
    json bounds = json::array();
    for (uint64_t b : preempt_bounds_us) {
        bounds.push_back(b);
    }
    json buckets = json::array();
    for (uint64_t c : p.buckets) {
        buckets.push_back(c);
    }
    return {
        {"count",         p.count},
        {"measured",      p.measured},
        {"sum_us",        p.sum_us},
        {"max_us",        p.max_us},
        {"buckets_le_us", bounds},
        {"buckets",       buckets},
        {"open_units",    p.open_units},    // began while a unit was being launched (host time in the latency)
        {"launch_sum_us", p.launch_sum_us},
        {"launch_max_us", p.launch_max_us},
    };
}

static const char * scheduler_name(XSchedulerType t) {
    switch (t) {
        case kSchedulerAppManaged: return "app-managed";
        case kSchedulerGlobal:     return "global";
        default:                   return "local";
    }
}

// global_status_json() is the global scheduler's view (every joined process and its queues, as `xsched-llama
// scheduler status --json` prints it), or {"error": reason} when the daemon cannot be asked: a round trip on
// its socket, only while this process is joined.
static json global_status_json() {
    std::vector<char> buf(64 * 1024);
    size_t need = 0;
    XResult r = XSchedGlobalStatus(buf.data(), buf.size(), &need);
    if (r == kXSchedErrorInvalidValue && need > buf.size()) {
        buf.resize(need);
        r = XSchedGlobalStatus(buf.data(), buf.size(), &need);
    }
    if (r != kXSchedSuccess) {
        return {{"error", buf[0] != '\0' ? std::string(buf.data()) : std::string(XResultName(r))}};
    }
    json g = json::parse_no_throw(std::string(buf.data()));
    if (g.is_discarded()) {
        return {{"error", "the daemon's status is not JSON"}};
    }
    return g;
}

json server_xsched_snapshot() {
    XSchedSnapshotInfo info{};
    const std::vector<XQueueInfo> rows = snapshot_rows(info);
    json queues = json::array();
    for (const auto & r : rows) {
        queues.push_back({
            {"name",            std::string(r.name)},
            {"priority",        r.priority},
            {"weight",          r.weight},
            {"state",           state_name(r.state)},
            {"suspended",       r.suspended != 0},
            {"active_scopes",   r.active_scopes},
            {"in_flight",       r.in_flight},
            {"units",           r.units_launched},
            {"suspended_us",    r.suspended_us},
            {"gate_blocked_us", r.gate_blocked_us},
            {"group",           r.group},
            {"preemption",      preemption_json(r.preempt)},
        });
    }
    json out = {
        {"available",    true},
        {"scheduler",    scheduler_name(info.scheduler)},
        {"policy",       XPolicyName(info.policy)},
        {"timeslice_us", info.timeslice_us},
        {"n_queues",     info.n_queues},
        {"queues",       queues},
        {"admission",    server_admission_global_json()},
    };
    if (info.scheduler == kSchedulerGlobal) {
        out["global"] = global_status_json();
    }
    return out;
}

static std::string prom_escape(const std::string & s) {
    std::string out;
    for (char c : s) {
        if (c == '\\' || c == '"') {
            out += '\\';
        }
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

std::string server_xsched_metrics() {
    XSchedSnapshotInfo info{};
    const std::vector<XQueueInfo> rows = snapshot_rows(info);
    std::ostringstream out;
    out << "# HELP xsched:policy Scheduling policy in use (1 for the named one)\n"
        << "# TYPE xsched:policy gauge\n"
        << "xsched:policy{policy=\"" << XPolicyName(info.policy) << "\"} 1\n";
    struct item { const char * name; const char * type; const char * help; };
    const item items[] = {
        {"queue_ready",            "gauge",   "1 while the queue has work (Ready), 0 when Idle"},
        {"queue_suspended",        "gauge",   "1 while the scheduler holds the queue back"},
        {"queue_in_flight",        "gauge",   "Units launched and not known complete"},
        {"queue_units_total",      "counter", "Units admitted by the gate"},
        {"queue_suspended_seconds_total",    "counter", "Time the queue spent suspended"},
        {"queue_gate_blocked_seconds_total", "counter", "Time callers spent blocked in the gate"},
    };
    for (const auto & it : items) {
        out << "# HELP xsched:" << it.name << " " << it.help << "\n"
            << "# TYPE xsched:" << it.name << " " << it.type << "\n";
        for (const auto & r : rows) {
            double v = 0;
            const std::string n = it.name;
            if (n == "queue_ready")                         v = r.state == kQueueStateReady ? 1 : 0;
            else if (n == "queue_suspended")                v = r.suspended ? 1 : 0;
            else if (n == "queue_in_flight")                v = (double) r.in_flight;
            else if (n == "queue_units_total")              v = (double) r.units_launched;
            else if (n == "queue_suspended_seconds_total")  v = r.suspended_us / 1e6;
            else                                            v = r.gate_blocked_us / 1e6;
            out << "xsched:" << it.name << "{queue=\"" << prom_escape(r.name) << "\",priority=\"" << r.priority
                << "\",weight=\"" << r.weight << "\"} " << v << "\n";
        }
    }
    out << "# HELP xsched:preemptions_total Suspensions of the queue while it had work in flight\n"
        << "# TYPE xsched:preemptions_total counter\n";
    for (const auto & r : rows) {
        out << "xsched:preemptions_total{queue=\"" << prom_escape(r.name) << "\",priority=\"" << r.priority << "\"} "
            << r.preempt.count << "\n";
    }
    out << "# HELP xsched:preemption_latency_seconds Time from a more important queue's Ready edge until the "
           "queue's in-flight work had completed (preemptions whose end was seen)\n"
        << "# TYPE xsched:preemption_latency_seconds histogram\n";
    for (const auto & r : rows) {
        const std::string labels = "queue=\"" + prom_escape(r.name) + "\",priority=\"" + std::to_string(r.priority) + "\"";
        uint64_t cum = 0;
        for (size_t b = 0; b < XSCHED_PREEMPT_BUCKETS; b++) {
            cum += r.preempt.buckets[b];
            char le[32];
            if (b + 1 < XSCHED_PREEMPT_BUCKETS) {
                snprintf(le, sizeof(le), "%.6f", preempt_bounds_us[b] / 1e6);
            } else {
                snprintf(le, sizeof(le), "+Inf");
            }
            out << "xsched:preemption_latency_seconds_bucket{" << labels << ",le=\"" << le << "\"} " << cum << "\n";
        }
        out << "xsched:preemption_latency_seconds_sum{" << labels << "} " << r.preempt.sum_us / 1e6 << "\n"
            << "xsched:preemption_latency_seconds_count{" << labels << "} " << r.preempt.measured << "\n";
    }
    return out.str();
}

void server_xsched_set_policy(const std::string & name) {
    XPolicyType policy = kPolicyUnknown;
    if (XPolicyFromName(name.c_str(), &policy) != kXSchedSuccess) {
        throw std::invalid_argument("invalid policy '" + name + "': allowed HPF, WRR, NONE");
    }
    const XResult r = XHintSetScheduler(kSchedulerLocal, policy);
    if (r != kXSchedSuccess) {
        throw std::runtime_error("the scheduler refused policy " + name + " (XResult " + std::to_string((int) r) + ")");
    }
}

void server_xsched_set_timeslice(int64_t timeslice_us) {
    if (XHintTimeslice(timeslice_us) != kXSchedSuccess) {
        throw std::invalid_argument("invalid timeslice_us " + std::to_string(timeslice_us) + ": allowed [100, 10000000]");
    }
}

#else // !LLAMA_SERVER_XSCHED

bool server_xsched_available() {
    return false;
}

json server_xsched_snapshot() {
    return {
        {"available",    false},
        {"policy",       "NONE"},
        {"timeslice_us", 0},
        {"n_queues",     0},
        {"queues",       json::array()},
        {"admission",    server_admission_global_json()},
    };
}

std::string server_xsched_metrics() {
    return "";
}

void server_xsched_set_policy(const std::string & name) {
    std::string v = name;
    std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return (char) std::toupper(c); });
    if (v != "HPF" && v != "WRR" && v != "NONE") {
        throw std::invalid_argument("invalid policy '" + name + "': allowed HPF, WRR, NONE");
    }
    LOG_WRN("policy %s ignored: llama-server was built without the xsched core (GGML_XQUEUE=OFF)\n", v.c_str());
}

void server_xsched_set_timeslice(int64_t timeslice_us) {
    if (timeslice_us < 100 || timeslice_us > 10000000) {
        throw std::invalid_argument("invalid timeslice_us " + std::to_string(timeslice_us) + ": allowed [100, 10000000]");
    }
    LOG_WRN("timeslice %lld us ignored: llama-server was built without the xsched core (GGML_XQUEUE=OFF)\n", (long long) timeslice_us);
}

#endif
