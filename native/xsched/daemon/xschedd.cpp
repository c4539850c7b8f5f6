// xschedd.cpp: the global scheduler daemon's command line (DESIGN.md, "Global scheduler").
#include <grp.h>
#include <strings.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "daemon.h"

namespace {

const char kUsage[] = "usage: xschedd --socket PATH [--policy HPF|WRR|NONE] [--timeslice-us N] [--group NAME]\n"
                      "               [--max-processes N] [--verbose] [--poll]\n"
                      "Schedules the XQueues of every process that joins it (XSCHED_SCHEDULER=PATH) with one policy.\n"
                      "Stops cleanly on SIGINT/SIGTERM (every process falls back to local scheduling).\n";

// Fail() prints one line and exits with status 2 (bad usage).
[[noreturn]] void Fail(const std::string &msg) {
    std::fprintf(stderr, "xschedd: %s\n", msg.c_str());
    std::exit(2);
}

// ParseInt() parses a whole decimal integer in [lo, hi] or fails with the option's name.
long long ParseInt(const char *opt, const char *v, long long lo, long long hi) {
    errno = 0;
    char *end = nullptr;
    long long x = std::strtoll(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || x < lo || x > hi) {
        Fail(std::string(opt) + " " + v + ": expected an integer in [" + std::to_string(lo) + ", " +
             std::to_string(hi) + "]");
    }
    return x;
}

}  // namespace

int main(int argc, char **argv) {
    xsched::daemon::Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> const char * {
            if (i + 1 >= argc) Fail(a + " needs a value");
            return argv[++i];
        };
        if (a == "-h" || a == "--help") {
            std::fputs(kUsage, stdout);
            return 0;
        } else if (a == "--socket") {
            o.socket_path = value();
        } else if (a == "--policy") {
            const char *v = value();
            bool found = false;
            for (const xsched::PolicyFactory &f : xsched::PolicyFactories()) {
                if (strcasecmp(v, f.name) == 0) {
                    o.policy = f.type;
                    found = true;
                }
            }
            if (!found) Fail(std::string("--policy ") + v + ": unknown policy (allowed: HPF, WRR, NONE)");
        } else if (a == "--timeslice-us") {
            o.timeslice_us = ParseInt("--timeslice-us", value(), 100, 10000000);
        } else if (a == "--max-processes") {
            o.max_clients = static_cast<int>(ParseInt("--max-processes", value(), 1, 4096));
        } else if (a == "--group") {
            o.group = value();
            errno = 0;
            group *g = getgrnam(o.group.c_str());
            if (g == nullptr) Fail("--group " + o.group + ": no such group");
            o.gid = g->gr_gid;
        } else if (a == "--verbose") {
            o.verbose = true;
        } else if (a == "--poll") {
            o.poll = true;
        } else {
            Fail("unknown option " + a + " (see --help)");
        }
    }
    if (o.socket_path.empty()) Fail("--socket PATH is required (see --help)");
    if (o.socket_path[0] != '/' || o.socket_path.size() > 107) {
        Fail("--socket " + o.socket_path + ": expected an absolute path of at most 107 bytes");
    }
    xsched::daemon::Daemon d(o);
    return d.Run();
}
