// daemon.h: xschedd, the global scheduler: one policy over the queues of every registered process.
#ifndef XSCHED_DAEMON_DAEMON_H_
#define XSCHED_DAEMON_DAEMON_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "global_shm.h"
#include "policy.h"

namespace xsched {
namespace daemon {

// Options are xschedd's command-line settings.
struct Options {
    // socket_path is where the daemon listens (its directory must exist).
    std::string socket_path;
    // policy decides for every registered queue.
    XPolicyType policy = kPolicyHighestPriorityFirst;
    // timeslice_us is the WRR quantum.
    int64_t timeslice_us = 5000;
    // group, when set, is a group whose members may use the daemon too (socket mode 0660).
    std::string group;
    // gid is group's id (valid when group is set).
    gid_t gid = 0;
    // max_clients is the size of the process table.
    int max_clients = 64;
    // verbose logs every decision that changes a suspension.
    bool verbose = false;
    // poll: while some queue is Ready, the daemon polls the processes' edge counters instead of sleeping until a
    // doorbell rings, so a decision does not wait for the daemon's wake-up (one core busy while work runs).
    bool poll = false;
};

// Daemon is the event loop: the listening socket, one control socket, doorbell and pidfd per registered
// process, the heartbeat and policy timers, and SIGINT/SIGTERM. Single-threaded.
class Daemon {
public:
    // Daemon() keeps the options; Run() does the work.
    explicit Daemon(Options opts);
    ~Daemon();
    Daemon(const Daemon &) = delete;
    Daemon &operator=(const Daemon &) = delete;

    // Run() listens and serves until SIGINT/SIGTERM; returns the exit status (1 when it cannot listen).
    int Run();

private:
    // SlotState is the daemon's memory of one slot of a client.
    struct SlotState {
        uint32_t gen = 0;        // the slot's gen when it was first seen
        uint64_t order = 0;      // creation order across processes (0 = not seen)
        bool suspended = false;  // the daemon's last decision
        uint64_t suspended_since_ns = 0;
    };
    // Client is one registered process.
    struct Client {
        uint64_t id = 0;
        pid_t pid = 0;
        uid_t uid = 0;
        std::string name;
        int fd = -1, evfd = -1, pidfd = -1;
        global::Segment *seg = nullptr;
        uint64_t joined_ns = 0;
        uint32_t seen_edge = 0;  // edge_seq read at the last decision
        uint32_t decided = 0;    // decided_seq written last
        int32_t others_max = 0;  // last published others_max / others_any
        uint32_t others_any = 0;
        std::vector<SlotState> st;
    };
    // Conn is an accepted connection that has not registered (or asks for status).
    struct Conn {
        int fd = -1;
        pid_t pid = 0;
        uid_t uid = 0;
        uint64_t deadline_ns = 0;
        std::string in;
        std::string out;  // a status answer being written
        size_t sent = 0;
    };

    bool Listen();
    void Accept();
    void OnConn(Conn &c, uint32_t events);
    void Register(Conn &c, const std::string &line, const int *fds, int nfds);
    void Refuse(Conn &c, const std::string &why);
    void RemoveClient(uint64_t id, const std::string &why);
    void Decide();
    // AnyReady() tells whether some registered queue is Ready (work to protect: the daemon polls with opts_.poll).
    bool AnyReady() const;
    // EdgePending() tells whether a process published an edge the last decision did not see; it empties the
    // doorbells, since the decision it leads to covers their rings.
    bool EdgePending();
    void Heartbeat();
    std::string StatusJson();
    bool Allowed(pid_t pid, uid_t uid, gid_t gid) const;
    void CloseConn(int fd);
    void Watch(int fd, uint32_t events);

    Options opts_;
    std::unique_ptr<Policy> policy_;
    int ep_ = -1, listen_fd_ = -1, sig_fd_ = -1;
    bool listening_ = false;
    uint64_t next_id_ = 1, next_order_ = 1, decisions_ = 0, started_ns_ = 0;
    std::map<uint64_t, Client> clients_;  // by id (= join order)
    std::map<int, uint64_t> client_fds_;  // control socket, doorbell or pidfd -> client id
    std::map<int, Conn> conns_;           // pending connections by fd
    Clock::time_point wake_at_ = Clock::time_point::max();
    std::vector<double> latency_us_;  // recent decision latencies (ring)
    size_t latency_next_ = 0;
    uint64_t latency_count_ = 0;
};

}  // namespace daemon
}  // namespace xsched

#endif  // XSCHED_DAEMON_DAEMON_H_
