// policy_hpf.cpp: HPF, highest priority first.
#include <climits>

#include "policy.h"

namespace xsched {
namespace {

// HpfPolicy runs only the Ready queues of the highest Ready priority; every
// queue below it (Ready or Idle) is suspended, so an Idle low queue cannot
// start either. Ties run together. No Ready queue: everything runs.
class HpfPolicy final : public Policy {
public:
    void Decide(const PolicyInput &in, PolicyOutput *out) override {
        int32_t top = INT32_MIN;
        for (const XQueue::View &q : in.queues) {
            if (q.ready && q.priority > top) top = q.priority;
        }
        for (size_t i = 0; i < in.queues.size(); ++i) out->suspend[i] = in.queues[i].priority < top;
    }
};

}  // namespace

std::unique_ptr<Policy> CreateHpfPolicy() { return std::make_unique<HpfPolicy>(); }

}  // namespace xsched
