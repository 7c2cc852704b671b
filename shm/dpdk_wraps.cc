// Wrapped calls of DPDK's rte_eal_init (linked with -Wl,--wrap, see
// shm/CMakeLists.txt; this library comes after DPDK's archives on the link
// line so that their references find it).
//
// rte_eal_init allocates the service library's tables (about 150 KiB) in
// the group's shared hugepage heap, and only rte_eal_cleanup frees them,
// which group members skip (group.cc). Freeing them right after init
// (shm/eal.cc) left a window: a process killed inside rte_eal_init leaked
// them for good, and with DPDK's primary gone (a group taken over) the heap
// cannot grow, so a soak of 10,000 kills ran it dry after ~4,000 ("error
// allocating core states array" in every later join). nvmux runs no DPDK
// services: the library is never initialised, rte_service_finalize then
// returns at once, and nothing is allocated.
#include <cerrno>
#include <cstdint>

extern "C" {
int32_t __wrap_rte_service_init(void);
int32_t __wrap_rte_service_start_with_defaults(void);

int32_t __wrap_rte_service_init(void) { return 0; }
// rte_eal_init asks the library to map service cores; -ENOTSUP is its answer
// when none were given, which rte_eal_init accepts.
int32_t __wrap_rte_service_start_with_defaults(void) { return -ENOTSUP; }
}
