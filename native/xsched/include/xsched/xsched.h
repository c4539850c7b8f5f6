/* xsched/xsched.h: the whole xsched C API. */
#ifndef XSCHED_XSCHED_H_
#define XSCHED_XSCHED_H_

#include "xsched/types.h"
#include "xsched/xqueue.h"
#include "xsched/hint.h"
#include "xsched/host.h"
#include "xsched/cuda.h"

#endif /* XSCHED_XSCHED_H_ */
