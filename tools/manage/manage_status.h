// `nvmux-manage status` and `cleanup`: a group seen from outside, without
// attaching any controller.
//
// status probes the group first (no EAL, milliseconds), so an absent, stale
// or orphaned group (primary dead, secondaries still running) is reported
// without hanging; only a live group with its primary is joined (as a
// secondary named "nvmux-manage") to read the process table, the DMA
// records, the reap history and the controllers the primary published
// (SharedControllerTable): identify data, namespaces, I/O queue ids and
// their owners, admin statistics and mailboxes.
//
// Each controller is copied under its robust lock, held for the copy only
// (at most 200 ms are spent waiting; a lock a live process keeps longer is
// read without it, and the report says so). If the previous holder died,
// this process becomes the one that repairs: it marks the admin ring's
// doorbells as not yet written, so the next process to submit or poll
// writes them (the deferred form of the driver's own repair,
// QueueRing::Resync; nvmux-manage has no doorbell mapping).
//
// Thread safety: main thread only (the Group is process-wide).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "libclient/shared/shared_controller.h"
#include "shm/process_table.h"

namespace nvmux::manage {

struct StatusNamespace {
  uint32_t nsid = 0;
  uint64_t size_blocks = 0;      // NSZE
  uint64_t capacity_blocks = 0;  // NCAP
  uint64_t used_blocks = 0;      // NUSE
  uint32_t block_size = 0;
  uint16_t metadata_size = 0;
};

// A process of the group as the process table shows it, or a slot whose
// owner is gone (name "(exited)").
struct StatusOwner {
  uint32_t slot = 0;
  int pid = 0;
  std::string name;
};

struct StatusQueue {
  uint16_t qid = 0;
  StatusOwner owner;
  bool on_device = false;
};

struct StatusMailbox {
  StatusOwner owner;
  uint32_t fill = 0;  // routed completions and events not yet read by the owner
  uint32_t dropped = 0;
};

struct StatusController {
  uint32_t index = 0;
  std::string trid;
  std::string transport;
  std::string model, serial, firmware;
  uint16_t cntlid = 0;
  bool failed = false, removed = false;
  uint32_t csts = 0;
  bool locked = true;  // copied under the controller lock
  std::vector<StatusNamespace> namespaces;
  std::vector<StatusQueue> io_queues;
  uint64_t admin_submitted = 0, admin_completed = 0, admin_routed = 0, aens = 0, orphaned = 0;
  uint32_t aers_outstanding = 0;
  uint32_t admin_in_flight = 0;  // trackers in flight, AERs included
  std::vector<StatusMailbox> mailboxes;
};

struct StatusProcess {
  uint32_t slot = 0;
  int pid = 0;
  std::string role, name, cores;
  uint32_t qpairs = 0;             // I/O queue ids it owns, over every controller
  uint32_t admin_outstanding = 0;  // its admin commands in flight, over every controller
};

struct StatusReaped {
  int pid = 0;
  uint32_t slot = 0;
  std::string name;
  uint64_t released = 0;  // what the reap hooks freed: DMA allocations, I/O queues, mailbox entries
  uint64_t when_ns = 0;   // CLOCK_REALTIME
};

struct StatusReport {
  int group = 0;
  int primary_pid = 0;
  uint32_t dma_allocations = 0;
  uint64_t dma_bytes = 0;
  // The limits nvmuxd was started with (--max-processes, --max-controllers, --dma-pool-mb).
  uint32_t max_processes = 0;
  uint32_t max_controllers = 0;
  uint64_t dma_pool_bytes = 0;
  std::vector<StatusProcess> processes;
  std::vector<StatusController> controllers;
  std::vector<StatusReaped> reaped;
};

// Prints the group's status on stdout (text, or one JSON line); returns the
// exit code: 0 live or stale, 1 absent, orphaned or not joinable, 2 bad id.
int ShowStatus(int group, bool json);

// One controller's report from a copy of its shared state; counts the I/O
// queue ids and in-flight admin commands of each live process into
// `processes` (matched by slot and generation, so a reused slot's leftovers
// are not charged to its new owner). `procs` is the process table snapshot.
StatusController DescribeController(const SharedController& c, bool locked, const std::vector<shm::ProcessInfo>& procs,
                                    std::vector<StatusProcess>& processes);

// Text and JSON forms of a live group's report (manage_status_print.cc).
std::string StatusText(const StatusReport& report);
std::string StatusJson(const StatusReport& report);

// Removes a dead group's files (shm::CleanStaleGroup), after Confirm() when
// there is something to remove (a live or absent group needs no --yes: the
// first is refused, naming its live process; the second has nothing to
// remove). Returns the exit code.
int Cleanup(int group, bool yes);

}  // namespace nvmux::manage
