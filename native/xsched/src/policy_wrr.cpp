// policy_wrr.cpp: WRR, weighted round robin over Ready clients.
#include "policy.h"

namespace xsched {
namespace {

// WrrPolicy gives the device to one Ready client at a time, in creation order.
// A client is a scheduling group (XHintGroup: all its queues run or wait
// together) or a queue without a group. A turn lasts timeslice x the largest
// weight among the client's Ready queues; a client that goes Idle gives up the
// rest of its turn at once (work-conserving). Idle queues are held back too;
// their Ready edge triggers a decision at once, so a lone Ready client always
// runs.
class WrrPolicy final : public Policy {
public:
    void Decide(const PolicyInput &in, PolicyOutput *out) override {
        const std::vector<Client> clients = Clients(in);
        size_t ready = 0;
        long cur = -1;
        for (size_t c = 0; c < clients.size(); ++c) {
            if (!clients[c].ready) continue;
            ++ready;
            if (clients[c].key == holder_) cur = static_cast<long>(c);
        }
        if (ready == 0) {
            holder_ = Key{};
            return;
        }
        if (cur < 0 || (ready > 1 && in.now >= turn_end_)) {
            cur = static_cast<long>(Next(clients));
            Start(in, clients[static_cast<size_t>(cur)]);
        }
        const Key &run = clients[static_cast<size_t>(cur)].key;
        for (size_t i = 0; i < in.queues.size(); ++i) out->suspend[i] = !(KeyOf(in.queues[i]) == run);
        if (ready > 1) out->wake_at = turn_end_;
    }

private:
    // Key names a client: a group, or a lone queue (by handle).
    struct Key {
        bool group = false;
        uint64_t id = 0;  // group id, or queue handle; 0 with group=false = nobody
        bool operator==(const Key &o) const { return group == o.group && id == o.id; }
    };
    // Client is one schedulable unit of the decision.
    struct Client {
        Key key;
        XQueueHandle first;  // handle of its oldest queue (orders the round)
        bool ready;          // any of its queues Ready
        int32_t weight;      // the largest weight among its Ready queues
    };

    static Key KeyOf(const XQueue::View &q) {
        return q.group != 0 ? Key{true, q.group} : Key{false, static_cast<uint64_t>(q.handle)};
    }

    // Clients() folds the queues (creation order) into clients, ordered by their oldest queue.
    static std::vector<Client> Clients(const PolicyInput &in) {
        std::vector<Client> out;
        for (const XQueue::View &q : in.queues) {
            const Key k = KeyOf(q);
            Client *c = nullptr;
            for (Client &x : out) {
                if (x.key == k) c = &x;
            }
            if (c == nullptr) {
                out.push_back(Client{k, q.handle, false, 0});
                c = &out.back();
            }
            if (q.ready) {
                c->ready = true;
                if (q.weight > c->weight) c->weight = q.weight;
            }
        }
        return out;
    }

    // Next() returns the index of the first Ready client after the last holder
    // in round order, wrapping around (also when the holder is gone).
    size_t Next(const std::vector<Client> &clients) const {
        size_t first = clients.size();
        for (size_t c = 0; c < clients.size(); ++c) {
            if (!clients[c].ready) continue;
            if (first == clients.size()) first = c;
            if (clients[c].first > holder_first_) return c;
        }
        return first;
    }

    // Start() begins client c's turn.
    void Start(const PolicyInput &in, const Client &c) {
        holder_ = c.key;
        holder_first_ = c.first;
        turn_end_ = in.now + std::chrono::microseconds(in.timeslice_us * c.weight);
    }

    Key holder_;                     // the client whose turn it is
    XQueueHandle holder_first_ = 0;  // its oldest queue's handle
    Clock::time_point turn_end_{};   // when its turn ends (if others are Ready)
};

}  // namespace

std::unique_ptr<Policy> CreateWrrPolicy() { return std::make_unique<WrrPolicy>(); }

}  // namespace xsched
