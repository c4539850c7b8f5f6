#include "units.h"
XT_MAIN()
