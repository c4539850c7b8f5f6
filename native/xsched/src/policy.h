// policy.h: the scheduling policy interface and the policy factory.
#ifndef XSCHED_SRC_POLICY_H_
#define XSCHED_SRC_POLICY_H_

#include <chrono>
#include <memory>
#include <vector>

#include "xqueue.h"
#include "xsched/types.h"

namespace xsched {

// PolicyInput is everything a policy may look at when it decides.
struct PolicyInput {
    // queues lists every live queue in creation order.
    std::vector<XQueue::View> queues;
    // now is the decision time.
    Clock::time_point now;
    // timeslice_us is the WRR quantum.
    int64_t timeslice_us;
};

// PolicyOutput is a policy's decision.
struct PolicyOutput {
    // suspend[i] says whether input.queues[i] must be held back.
    std::vector<bool> suspend;
    // wake_at asks for another decision at that time (Clock::time_point::max() = none).
    Clock::time_point wake_at = Clock::time_point::max();
};

// Policy decides which queues run. Decide() is called with the scheduler lock
// held, on every Ready/Idle edge, hint change and requested timer; it must be
// fast and must not block. A policy may keep state between calls.
class Policy {
public:
    // ~Policy() frees the policy's state.
    virtual ~Policy() = default;
    // Decide() fills out->suspend (already sized, all false) from in.
    virtual void Decide(const PolicyInput &in, PolicyOutput *out) = 0;
};

// PolicyFactory names a policy and builds it.
struct PolicyFactory {
    // type is the XPolicyType value.
    XPolicyType type;
    // name is the XSCHED_POLICY spelling (upper case).
    const char *name;
    // create builds a fresh instance.
    std::unique_ptr<Policy> (*create)();
};

// PolicyFactories() lists every built-in policy (the table in policy.cpp).
const std::vector<PolicyFactory> &PolicyFactories();
// CreatePolicy() builds the policy of `type`, or returns null if unknown.
std::unique_ptr<Policy> CreatePolicy(XPolicyType type);

// Factories of the built-in policies, one file each.
std::unique_ptr<Policy> CreateHpfPolicy();
std::unique_ptr<Policy> CreateWrrPolicy();
std::unique_ptr<Policy> CreateNonePolicy();

}  // namespace xsched

#endif  // XSCHED_SRC_POLICY_H_
