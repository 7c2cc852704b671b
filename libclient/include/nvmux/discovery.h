// NVMe over Fabrics discovery (NVMe/TCP): reading a discovery service's
// Discovery Log Page (log identifier 70h).
//
//   auto log = nvmux::ReadDiscoveryLog(*nvmux::TransportId::Parse(
//       "trtype:tcp adrfam:ipv4 traddr:192.168.1.5 trsvcid:4420"));  // subnqn: the discovery NQN
//   for (const auto& e : log->entries) if (e.nvm_subsystem()) ... e.trid ...
//
// Probe() with such a transport id reads the log and offers each NVM
// subsystem entry to the probe callback with its own transport id.
//
// Thread safety: ReadDiscoveryLog is reentrant (its own connection, closed
// before it returns). It needs no Env: the log comes into host memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nvmux/controller.h"
#include "nvmux/result.h"
#include "nvmux/transport_id.h"

namespace nvmux {

struct DiscoveryEntry {
  // Subtype values (NVMe over Fabrics, Discovery Log Page Entry SUBTYPE).
  static constexpr uint8_t kReferral = 1;        // another discovery service
  static constexpr uint8_t kNvmSubsystem = 2;
  static constexpr uint8_t kCurrentDiscovery = 3;

  uint8_t trtype = 0;  // 1 RDMA, 2 FC, 3 TCP, 254 intra-host
  uint8_t adrfam = 0;  // 1 IPv4, 2 IPv6, 3 InfiniBand, 4 FC, 254 intra-host
  uint8_t subtype = 0;
  uint8_t treq = 0;    // bits 1:0 secure channel, bit 2 SQ flow control disable
  uint16_t portid = 0;
  uint16_t cntlid = 0;
  uint16_t asqsz = 0;
  uint16_t eflags = 0;
  std::string trsvcid, subnqn, traddr;
  uint8_t sectype = 0;  // TCP TSAS byte 0
  // The entry as a transport id (hostnqn from the one read), when nvmux can
  // reach it (TCP over IPv4/IPv6); trid_ok false otherwise.
  TransportId trid;
  bool trid_ok = false;
  bool nvm_subsystem() const { return subtype == kNvmSubsystem; }
};

struct DiscoveryLog {
  uint64_t generation = 0;  // GENCTR of the log read (consistent: read twice)
  std::vector<DiscoveryEntry> entries;
};

// Connects to the discovery controller `trid` names (its subnqn must be the
// discovery NQN, TransportId::kDiscoveryNqn, the default for tcp), enables
// it with Property Set, reads the whole log (again when the generation
// counter moved while it read, up to 10 times) and disconnects.
// Errors: EINVAL (not tcp, or a subnqn other than the discovery NQN), those
// of connecting (ECONNREFUSED/ETIMEDOUT naming the address, the Connect
// status), EIO (Get Log Page failed, status given), EAGAIN (the log kept
// changing).
[[nodiscard]] Result<DiscoveryLog> ReadDiscoveryLog(const TransportId& trid, const ControllerOptions& options = {});

// True when `trid` names a discovery service (tcp with the discovery NQN).
bool IsDiscoveryTrid(const TransportId& trid);

}  // namespace nvmux
