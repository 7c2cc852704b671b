// libnvmux.so is the internal archives, whole; this file only gives the
// shared library a translation unit of its own, and checks that the
// version header the package installs is the one the library was built with.
#include "nvmux/version.h"

static_assert(NVMUX_VERSION_NUMBER == ((NVMUX_VERSION_MAJOR << 16) | (NVMUX_VERSION_MINOR << 8) | NVMUX_VERSION_PATCH));
