// Options of the emulated controller and the parsers for their text forms.
//
// The command line (main.cc) and tests build EmulatorOptions; every parser
// returns EINVAL with a message naming the bad key or value and what is
// allowed.
//
// Thread safety: values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shm/base/result.h"
#include "tools/emu/faults.h"

namespace nvmux::emu {

// kRam: memory allocated and populated when the namespace is created
// (hugepages where the pool has room, else 4 KiB pages), so the first pass
// over the namespace runs at steady-state speed. kRamLazy: an anonymous
// MAP_NORESERVE mapping, memory committed only where written (fast start,
// page faults on first touch). The command line defaults to kRam; the
// library (in-process tests, which create many emulators) to kRamLazy.
enum class BackingKind { kRam, kRamLazy, kNull, kFile };

// Where namespaces keep their blocks. kFile: namespace 1 in `path`, namespace
// N > 1 in "<path>.N" (BackingPath).
struct BackingSpec {
  BackingSpec(BackingKind k = BackingKind::kRamLazy, std::string p = {})  // NOLINT: implicit from a kind
      : kind(k), path(std::move(p)) {}
  BackingKind kind;
  std::string path;  // kFile only
};

struct NamespaceOptions {
  uint64_t size_bytes = 1ull << 30;  // data bytes; a multiple of the block size
  uint32_t block_size = 512;         // LBA data size: 512 or 4096
  uint16_t metadata_size = 0;        // 0, 8, 16 or 64 bytes per block
  bool extended_lba = false;         // metadata interleaved with data (FLBAS bit 4)
};

struct EmulatorOptions {
  std::string socket_dir;  // the socket is <socket_dir>/cntrl
  std::vector<NamespaceOptions> namespaces;  // empty: one default namespace
  BackingSpec backing;
  uint8_t mdts = 5;        // Identify MDTS: 2^mdts * 4 KiB; 0 = no limit
  uint16_t mqes = 0x7FF;   // CAP.MQES: largest queue size minus one (0's based)
  uint16_t io_queues = 64; // I/O SQs and CQs offered (Number of Queues maximum)
  // MSI-X vectors offered: 0 means io_queues + 1 (one per CQ, as the host
  // may want); fewer model a device whose vectors do not cover every queue
  // (1: only the admin queue's).
  uint16_t msix_vectors = 0;
  std::string serial = "NVMUXEMU0001";
  std::vector<FaultRule> faults;  // armed when the emulator is created
  // Keep Alive: when the host set a non-zero KATO and no Keep Alive command
  // arrived within it, the controller logs Keep Alive Timer Expired and
  // sets CSTS.CFS (NVMe base spec, Keep Alive). false: accepted, never
  // enforced (--keep-alive off).
  bool enforce_keep_alive = true;
};

// Parses "size=1G,lbads=512,ms=0,ext=0" (any subset, any order). Sizes take
// an optional K/M/G/T binary suffix.
[[nodiscard]] Result<NamespaceOptions> ParseNamespaceOptions(std::string_view text);
// Parses "ram", "ram-lazy", "null" or "file:PATH".
[[nodiscard]] Result<BackingSpec> ParseBacking(std::string_view text);
// The file of namespace nsid for a kFile backing: path, or "<path>.<nsid>" for nsid > 1.
std::string BackingPath(const BackingSpec& backing, uint32_t nsid);
// Parses a byte count with an optional K/M/G/T suffix (powers of 1024).
[[nodiscard]] Result<uint64_t> ParseSize(std::string_view text);
// Checks ranges and cross-field rules (block-size multiples, queue limits).
[[nodiscard]] Status Validate(const EmulatorOptions& options);

}  // namespace nvmux::emu
