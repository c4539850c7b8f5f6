// arg-xsched.cpp: llama-server's xsched-llama options (xsched-llama overlay, not upstream): --instances,
// --xsched-policy, --xsched-admin-key, --xsched-max-waiting and --xsched-scheduler, stored in common_params.
// Declared in arg.h and added by common_params_parser_init (patch 0005), built into common by 0005's CMake line.
#include "arg.h"

#include "common.h"

#include <cctype>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

std::vector<common_arg> common_xsched_options() {
    std::vector<common_arg> opts;
    opts.push_back(common_arg(
        {"--instances"}, "[NAME=]P[:W[:NP[:Q]]],...",
        "xsched-llama: run one instance (llama context, slots, KV cache) per entry on the same weights;\n"
        "NAME = [A-Za-z0-9_.-]{1,32}, unique (default: inst<index>), "
        "P = priority in [-255, 255] (bigger = more important), W = WRR weight in [1, 1000] (default: 1),\n"
        "NP = slots of the instance (default: -np), Q = completion requests that may wait for its slots,\n"
        ">= 1 (default: no bound; more get 429). Requests choose an instance by their `priority`\n"
        "(default: one instance, as upstream)",
        [](common_params & params, const std::string & value) {
            params.server_instances = common_parse_server_instances(value);
        }
    ).set_examples({LLAMA_EXAMPLE_SERVER}).set_env("LLAMA_ARG_INSTANCES"));
    opts.push_back(common_arg(
        {"--xsched-policy"}, "HPF|WRR|NONE",
        "xsched-llama: scheduling policy of the GPU/CPU queues (default: XSCHED_POLICY, else HPF)",
        [](common_params & params, const std::string & value) {
            std::string v = value;
            for (auto & c : v) {
                c = (char) toupper((unsigned char) c);
            }
            if (v != "HPF" && v != "WRR" && v != "NONE") {
                throw std::invalid_argument("invalid --xsched-policy '" + value + "': allowed HPF, WRR, NONE");
            }
            params.xsched_policy = v;
        }
    ).set_examples({LLAMA_EXAMPLE_SERVER}));
    opts.push_back(common_arg(
        {"--xsched-admin-key"}, "KEY",
        "xsched-llama: key required (header X-Admin-Key) by POST /xsched; without it only loopback clients may POST",
        [](common_params & params, const std::string & value) {
            params.xsched_admin_key = value;
        }
    ).set_examples({LLAMA_EXAMPLE_SERVER}).set_env("XSCHED_LLAMA_ADMIN_KEY"));
    opts.push_back(common_arg(
        {"--xsched-max-waiting"}, "N",
        "xsched-llama: completion requests that may wait for a slot, all instances together, >= 1 (default: no\n"
        "bound); beyond it the lowest-priority waiting request gets 429 (a higher-priority arrival evicts it)",
        [](common_params & params, const std::string & value) {
            char * end = nullptr;
            const long v = std::strtol(value.c_str(), &end, 10);
            if (value.empty() || *end != '\0' || !isdigit((unsigned char) value[0]) || v < 1 || v > INT32_MAX) {
                throw std::invalid_argument("invalid --xsched-max-waiting '" + value + "': expected an integer >= 1");
            }
            params.xsched_max_waiting = (int32_t) v;
        }
    ).set_examples({LLAMA_EXAMPLE_SERVER}).set_env("XSCHED_LLAMA_MAX_WAITING"));
    opts.push_back(common_arg(
        {"--xsched-scheduler"}, "PATH",
        "xsched-llama: join the global scheduler (`xsched-llama scheduler`) listening at this socket, so that\n"
        "the server's queues share the GPU by priority with other processes; without it, or while the daemon is\n"
        "unreachable, the server schedules locally",
        [](common_params & params, const std::string & value) {
            params.xsched_scheduler = value;
        }
    ).set_examples({LLAMA_EXAMPLE_SERVER}).set_env("XSCHED_SCHEDULER"));
    return opts;
}
