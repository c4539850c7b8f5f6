// common-instances.cpp: the parser of llama-server's --instances option (xsched-llama overlay, not upstream;
// declared in common.h by patch 0005, the grammar is in docs/server.md of xsched-llama).
#include "common.h"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

// strict decimal integer (optional sign, no spaces, no trailing characters)
static bool common_parse_int32(const std::string & s, int32_t & out) {
    if (s.empty() || s.size() > 11) {
        return false;
    }
    size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
    if (i == s.size()) {
        return false;
    }
    int64_t v = 0;
    for (; i < s.size(); i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    v = s[0] == '-' ? -v : v;
    if (v < INT32_MIN || v > INT32_MAX) {
        return false;
    }
    out = (int32_t) v;
    return true;
}

std::vector<common_server_instance> common_parse_server_instances(const std::string & value) {
    // the ranges mirror PRIORITY_MIN/MAX and WEIGHT_MIN/MAX of xsched/types.h
    const char * allowed = "expected [NAME=]P[:W[:NP[:Q]]],... with NAME of 1-32 characters [A-Za-z0-9_.-] "
                           "(not all digits), P in [-255, 255], W in [1, 1000], NP >= 1, Q >= 1";
    std::vector<common_server_instance> res;
    for (const auto & entry : string_split<std::string>(value, ',')) {
        common_server_instance inst;
        const size_t eq = entry.find('=');
        bool ok = true;
        if (eq != std::string::npos) {
            inst.name = entry.substr(0, eq);
            ok = !inst.name.empty() && inst.name.size() <= 32 &&
                 std::all_of(inst.name.begin(), inst.name.end(), [](unsigned char c) {
                     return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                            c == '_' || c == '.' || c == '-';
                 }) &&
                 // not a number, so that an instance can be named by its index or its name alike
                 !std::all_of(inst.name.begin(), inst.name.end(), [](unsigned char c) { return c >= '0' && c <= '9'; });
        }
        const auto parts = string_split<std::string>(eq == std::string::npos ? entry : entry.substr(eq + 1), ':');
        ok = ok && !parts.empty() && parts.size() <= 4;
        ok = ok && common_parse_int32(parts[0], inst.priority) && inst.priority >= -255 && inst.priority <= 255;
        if (ok && parts.size() >= 2 && !parts[1].empty()) {
            ok = common_parse_int32(parts[1], inst.weight) && inst.weight >= 1 && inst.weight <= 1000;
        }
        if (ok && parts.size() >= 3 && !parts[2].empty()) {
            ok = common_parse_int32(parts[2], inst.n_parallel) && inst.n_parallel >= 1;
        }
        if (ok && parts.size() >= 4) {
            ok = common_parse_int32(parts[3], inst.max_waiting) && inst.max_waiting >= 1;
        }
        if (!ok) {
            throw std::invalid_argument("invalid --instances entry '" + entry + "': " + allowed);
        }
        res.push_back(inst);
    }
    if (res.empty()) {
        throw std::invalid_argument(std::string("empty --instances: ") + allowed);
    }
    for (size_t i = 0; i < res.size(); i++) {
        if (res[i].name.empty()) {
            res[i].name = "inst" + std::to_string(i);
        }
        for (size_t j = 0; j < i; j++) {
            if (res[j].name == res[i].name) {
                throw std::invalid_argument("invalid --instances: the name '" + res[i].name + "' is used by entries " +
                                            std::to_string(j) + " and " + std::to_string(i) + "; names must be unique");
            }
        }
    }
    return res;
}
