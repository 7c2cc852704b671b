// Census: the group's driver state as `nvmux_mp_child census -i G` prints it
// (one line of JSON with fixed keys), parsed for the multi-process and crash
// tests: queue ids in use, admin trackers in flight, DMA records, DPDK's
// shared heap, the reap history.
//
// Thread safety: plain functions; TakeCensus starts a process and waits.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace nvmux::test {

struct Census {
  std::vector<std::array<uint32_t, 3>> qids;  // qid, owner slot, on device
  uint32_t admin_in_flight = 0;               // summed over the published controllers
  uint32_t dma_records = 0;
  uint64_t dma_bytes = 0;
  uint64_t heap_allocations = 0;  // DPDK's shared heap, the census process's own included
  uint64_t heap_bytes = 0;
  std::vector<std::pair<int, int64_t>> reaped;  // pid, realtime ns
  std::string raw;                              // the whole output (JSON line, or the census's error)

  bool Reaped(int pid) const;
};

// Parses the census line (exposed for tests of the parser itself).
Census ParseCensus(std::string raw);

// Runs `mp_child census -i group` (killed after 20 s: a census that cannot
// join must fail the caller's test, not hang it) and parses its output.
Census TakeCensus(const std::string& mp_child, int group);

// CLOCK_REALTIME in ns (the reap history's clock).
int64_t RealtimeNs();

}  // namespace nvmux::test
