// policy.cpp: the table of built-in policies (add a line here for a new one).
#include "policy.h"

namespace xsched {

const std::vector<PolicyFactory> &PolicyFactories() {
    static const std::vector<PolicyFactory> table = {
        {kPolicyHighestPriorityFirst, "HPF", &CreateHpfPolicy},
        {kPolicyWeightedRoundRobin, "WRR", &CreateWrrPolicy},
        {kPolicyNone, "NONE", &CreateNonePolicy},
    };
    return table;
}

std::unique_ptr<Policy> CreatePolicy(XPolicyType type) {
    for (const PolicyFactory &f : PolicyFactories()) {
        if (f.type == type) return f.create();
    }
    return nullptr;
}

}  // namespace xsched
