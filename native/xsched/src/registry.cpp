// registry.cpp: the process-wide handle tables (leaked on purpose so that they
// outlive every static destructor that might still look a handle up).
#include "registry.h"

#include "command.h"
#include "hw_queue.h"
#include "xqueue.h"

namespace xsched {

HandleTable<HwQueue> &HwQueues() {
    static auto *t = new HandleTable<HwQueue>(0x48);  // 'H'
    return *t;
}

HandleTable<XQueue> &XQueues() {
    static auto *t = new HandleTable<XQueue>(0x58);  // 'X'
    return *t;
}

HandleTable<Command> &Commands() {
    static auto *t = new HandleTable<Command>(0x43);  // 'C'
    return *t;
}

Mutex &BindMutex() {
    static auto *m = new Mutex;
    return *m;
}

}  // namespace xsched
