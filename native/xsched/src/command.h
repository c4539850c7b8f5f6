// command.h: a launch command for asynchronous submit (XQueueSubmit).
#ifndef XSCHED_SRC_COMMAND_H_
#define XSCHED_SRC_COMMAND_H_

#include "xsched/types.h"

namespace xsched {

// Command is one unit of work for a launch worker: launching it calls fn(hwq, data).
struct Command {
    // fn launches the unit onto the HwQueue.
    LaunchCallback fn = nullptr;
    // data is the caller's argument for fn.
    void *data = nullptr;
    // handle is the registry handle while the command is unsubmitted.
    HwCommandHandle handle = 0;
};

}  // namespace xsched

#endif  // XSCHED_SRC_COMMAND_H_
