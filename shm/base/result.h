// Result<T> and Status are public types of nvmux's API (nvmux/result.h, in
// shm/base/include so that the lowest layer owns them); every layer below
// the tools includes them through this name too.
#pragma once

#include "nvmux/result.h"
