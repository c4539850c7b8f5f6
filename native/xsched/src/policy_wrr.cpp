// policy_wrr.cpp: WRR, weighted round robin over Ready queues.
#include "policy.h"

namespace xsched {
namespace {

// WrrPolicy gives the device to one Ready queue at a time, in creation order.
// A turn lasts timeslice x weight; a queue that goes Idle gives up the rest of
// its turn at once (work-conserving). Idle queues are held back too; their
// Ready edge triggers a decision at once, so a lone Ready queue always runs.
class WrrPolicy final : public Policy {
public:
    void Decide(const PolicyInput &in, PolicyOutput *out) override {
        const size_t n = in.queues.size();
        size_t ready = 0;
        long cur = -1;
        for (size_t i = 0; i < n; ++i) {
            if (!in.queues[i].ready) continue;
            ++ready;
            if (in.queues[i].handle == holder_) cur = static_cast<long>(i);
        }
        if (ready == 0) {
            holder_ = 0;
            return;
        }
        if (cur < 0) {
            cur = static_cast<long>(Next(in, holder_));
            Start(in, static_cast<size_t>(cur));
        } else if (ready > 1 && in.now >= turn_end_) {
            cur = static_cast<long>(Next(in, holder_));
            Start(in, static_cast<size_t>(cur));
        }
        for (size_t i = 0; i < n; ++i) out->suspend[i] = static_cast<long>(i) != cur;
        if (ready > 1) out->wake_at = turn_end_;
    }

private:
    // Next() returns the index of the first Ready queue after handle `after`
    // in creation order, wrapping around.
    static size_t Next(const PolicyInput &in, XQueueHandle after) {
        const size_t n = in.queues.size();
        size_t first = n;
        for (size_t i = 0; i < n; ++i) {
            if (!in.queues[i].ready) continue;
            if (first == n) first = i;
            if (in.queues[i].handle > after) return i;
        }
        return first;
    }
    // Start() begins queue i's turn.
    void Start(const PolicyInput &in, size_t i) {
        holder_ = in.queues[i].handle;
        turn_end_ = in.now + std::chrono::microseconds(in.timeslice_us * in.queues[i].weight);
    }

    XQueueHandle holder_ = 0;
    Clock::time_point turn_end_{};
};

}  // namespace

std::unique_ptr<Policy> CreateWrrPolicy() { return std::make_unique<WrrPolicy>(); }

}  // namespace xsched
