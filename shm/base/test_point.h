// Crash-test points: named places where a test can have this process die with
// SIGKILL, to exercise recovery at awkward moments. A test sets
// NVMUX_DIE_AT=<name> in the child's environment. Compiled in only with
// NVMUX_TEST_HOOKS (on in test builds, off in release packages).
//
// Thread safety: the environment is read once, on first use.
#pragma once

namespace nvmux {

// SIGKILLs the calling process if NVMUX_DIE_AT names `point`.
void TestPoint(const char* point);

}  // namespace nvmux

#if NVMUX_TEST_HOOKS
#define NVMUX_TEST_POINT(name) ::nvmux::TestPoint(name)
#else
#define NVMUX_TEST_POINT(name) \
  do {                         \
  } while (0)
#endif
