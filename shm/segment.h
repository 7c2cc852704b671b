// Segment: the group's managed shared-memory segment.
//
// A block of shared memory (a DPDK memzone in a group, mapped at the same
// virtual address in every process) starts with a SegmentHeader (magic, ABI
// version, Boost version, size, the group's robust lock, a ready flag) followed
// by a Boost.Interprocess segment manager (managed_external_buffer) for named
// objects. The primary creates everything, then Publish()es: `ready` is
// written last with release ordering, and attachers acquire it.
//
// The segment manager has no lock of its own: every named-object call takes a
// Guard of the group lock as proof that the caller holds it. By convention the
// primary constructs all objects before Publish(); later users claim slots in
// preallocated tables, so a process dying mid-allocation never corrupts the
// segment manager.
//
// Thread safety: header fields are read with atomics; named-object calls
// REQUIRE the group lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

#include <boost/interprocess/managed_external_buffer.hpp>

#include "shm/base/clock.h"
#include "shm/base/result.h"
#include "shm/robust_mutex.h"

namespace nvmux::shm {

// Bump when any type placed in shared memory changes layout or meaning.
constexpr uint32_t kAbiVersion = 9;  // 2: fd holders, shadow doorbell pages, group-owned DMA; 3: fd identities, admin mailboxes with completion slots and intents, reaper intent (issue 16); 4: MSI-X vector eventfd records (issue 17); 5: process slots' device_user, dead slots' quarantined memory (QuarantineOwnerOf); 6: SharedController::fabrics (NVMe/TCP in a group); 7: vector holders (event mode across a takeover); 8: Mailbox::wakeup_fd (per-process admin wakeups: a process of 7 would neither record nor signal them); 9: SharedController's CMB location (use_cmb_sqs)
constexpr uint64_t kSegmentMagic = 0x4d48535855564d4eull;  // "NVMUXSHM"

struct SegmentHeader {
  uint64_t magic;
  uint32_t abi_version;
  uint32_t boost_version;
  uint64_t total_size;
  uint64_t managed_offset;   // where the segment manager starts
  int32_t group_id;
  int32_t primary_pid;
  uint32_t ready;            // 1 once published (atomic_ref, release)
  uint32_t reserved;
  RobustMutexState group_lock;
};
static_assert(std::is_standard_layout_v<SegmentHeader>);
static_assert(std::is_trivially_copyable_v<SegmentHeader>);

class Segment {
 public:
  using Guard = RobustLock::Guard;

  // Lays out a new segment over [base, base+size). Primary only.
  // Errors: EINVAL if size is too small to hold the header and a manager.
  static Result<std::unique_ptr<Segment>> Create(void* base, size_t size, int group_id, uint32_t abi_version);

  // Attaches to a segment another process created, waiting for it to be
  // published until `timeout` passes on `clock`.
  // Errors: EPROTO (bad magic: not an nvmux segment), EPROTONOSUPPORT (ABI or
  // Boost version differs: the message names both), ETIMEDOUT (never published).
  static Result<std::unique_ptr<Segment>> Attach(void* base, size_t size, uint32_t abi_version, Nanos timeout,
                                                 const Clock& clock);

  SegmentHeader& header() { return *header_; }
  RobustMutexState& lock_state() { return header_->group_lock; }
  bool published() const;
  // Marks the segment ready; call after every object is constructed.
  void Publish();

  // Constructs a zero-initialised named object (T must be trivially
  // copyable and standard layout). Errors: EEXIST, ENOMEM naming the sizes.
  template <typename T>
  Result<T*> Construct(const Guard&, const char* name) {
    static_assert(std::is_standard_layout_v<T> && std::is_trivially_copyable_v<T>);
    if (managed_.find<T>(name).first != nullptr) return Fail(EEXIST, std::string("segment object '") + name + "' exists");
    T* obj = managed_.construct<T>(name, std::nothrow)();
    if (obj == nullptr)
      return Fail(ENOMEM, std::string("segment too small for '") + name + "' (" + std::to_string(sizeof(T)) +
                              " bytes; free " + std::to_string(managed_.get_free_memory()) + ")");
    return obj;
  }

  // Finds a named object. Errors: ENOENT naming it.
  template <typename T>
  Result<T*> Find(const Guard&, const char* name) {
    T* obj = managed_.find<T>(name).first;
    if (obj == nullptr) return Fail(ENOENT, std::string("segment object '") + name + "' not found");
    return obj;
  }

  // Find for the group lock's repair callback, which runs with the lock held
  // but before any Guard exists. nullptr if absent.
  template <typename T>
  T* FindForRepair(const char* name) {
    return managed_.find<T>(name).first;
  }

  size_t FreeBytes(const Guard&) const { return managed_.get_free_memory(); }

 private:
  Segment(SegmentHeader* header, boost::interprocess::managed_external_buffer managed)
      : header_(header), managed_(std::move(managed)) {}

  SegmentHeader* header_;
  boost::interprocess::managed_external_buffer managed_;
};

}  // namespace nvmux::shm
