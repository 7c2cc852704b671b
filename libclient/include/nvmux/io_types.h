// Types shared by the I/O calls: completion callbacks, scatter-gather
// callbacks, I/O flags (the bits of CDW12 they set, as SPDK defines them).
//
// Thread safety: values only.
#pragma once

#include <cstdint>

#include "nvmux/spec/command.h"
#include "nvmux/spec/status.h"

namespace nvmux {

// Called once per request from ProcessCompletions (or the admin poller), on
// the thread that polls. `cpl` holds the NVMe status (cpl.sct()/sc()); a
// request the driver had to give up (queue pair failed, controller reset or
// removed) completes with SCT 0 / SC 0x08 "Command Aborted due to SQ Deletion".
using CompletionFn = void (*)(void* cb_arg, const spec::Cqe& cpl);

inline bool IsError(const spec::Cqe& cpl) { return cpl.sct() != 0 || cpl.sc() != 0; }

// Scatter-gather payloads: ResetSgl positions the caller's iterator at byte
// `offset` of the payload; NextSge returns the next element (address in DMA
// memory, length > 0), or {nullptr, 0} when the caller's list is exhausted.
struct Sge {
  void* address = nullptr;
  uint32_t length = 0;
};
using ResetSglFn = void (*)(void* cb_arg, uint32_t offset);
using NextSgeFn = Sge (*)(void* cb_arg);

// io_flags (CDW12 bits of Read/Write/Compare/Write Zeroes/Verify).
inline constexpr uint32_t kIoFlagsLimitedRetry = 1u << 31;
inline constexpr uint32_t kIoFlagsFua = 1u << 30;
inline constexpr uint32_t kIoFlagsPract = 1u << 29;  // protection information action
inline constexpr uint32_t kIoFlagsPrchkGuard = 1u << 28;
inline constexpr uint32_t kIoFlagsPrchkApptag = 1u << 27;
inline constexpr uint32_t kIoFlagsPrchkReftag = 1u << 26;
inline constexpr uint32_t kIoFlagsDeallocate = 1u << 25;  // Write Zeroes: deallocate
inline constexpr uint32_t kIoFlagsMask = 0xFE000000u;

// The status the driver gives requests it aborts itself.
inline constexpr uint8_t kAbortedSqDeletion = 0x08;

}  // namespace nvmux
