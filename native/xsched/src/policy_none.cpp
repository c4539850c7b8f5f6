// policy_none.cpp: NONE, never suspend (the gate only bounds in-flight work).
#include "policy.h"

namespace xsched {
namespace {

// NonePolicy lets every queue run all the time.
class NonePolicy final : public Policy {
public:
    void Decide(const PolicyInput &, PolicyOutput *) override {}
};

}  // namespace

std::unique_ptr<Policy> CreateNonePolicy() { return std::make_unique<NonePolicy>(); }

}  // namespace xsched
