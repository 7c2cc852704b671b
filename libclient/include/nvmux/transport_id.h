// Transport ids: which controller to talk to, in SPDK's string form.
//
//   "trtype:vfiouser traddr:/var/run/nvmux-emu"
//   "trtype:pcie traddr:0000:04:00.0"
//   "trtype:tcp adrfam:ipv4 traddr:192.168.1.5 trsvcid:4420 subnqn:nqn.2016-06.io.spdk:cnode1"
//
// `key:value` (or `key=value`) pairs separated by whitespace. Keys are
// case-insensitive: trtype, traddr, trsvcid, subnqn, adrfam, ns, hostnqn.
// trtype values are case-insensitive too (PCIe, VFIOUSER, TCP...). Errors name
// the key or token at fault and what is allowed.
//
// Thread safety: value type.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "nvmux/result.h"

namespace nvmux {

enum class TransportType { kVfioUser, kPcie, kTcp };
enum class AddressFamily { kNone, kIpv4, kIpv6 };

const char* ToString(TransportType type);   // "vfiouser", "pcie", "tcp"
const char* ToString(AddressFamily family); // "", "ipv4", "ipv6"

struct TransportId {
  TransportType trtype = TransportType::kVfioUser;
  AddressFamily adrfam = AddressFamily::kNone;
  std::string traddr;   // vfiouser: socket directory; pcie: DDDD:BB:DD.F (normalised); tcp: IP address
  std::string trsvcid;  // tcp: port
  std::string subnqn;   // tcp: subsystem NQN (default: the discovery NQN); vfiouser: optional, checked
                        // against the controller's NQN at attach (SPDK's host needs one there)
  std::string hostnqn;
  std::optional<uint32_t> nsid;  // "ns": restrict to one namespace

  static constexpr std::string_view kDiscoveryNqn = "nqn.2014-08.org.nvmexpress.discovery";

  // Errors: EINVAL naming the key or token (unknown key, repeated key,
  // missing separator, bad value, missing required key for the trtype).
  static Result<TransportId> Parse(std::string_view text);

  // Canonical string; Parse(ToString()) == *this.
  std::string ToString() const;
  // The controller this names, as a group records it: ToString() without a
  // vfiouser/pcie subnqn (which only checks the controller, never selects it).
  std::string Key() const;

  // Same controller: equal canonical fields (PCIe addresses compare normalised).
  bool operator==(const TransportId& other) const = default;
};

// Ok if `trid` names no subnqn, or the one the controller reports (Identify
// Controller SUBNQN, `reported`, NUL-padded). Errors: ENODEV naming both NQNs.
Status CheckSubsystemNqn(const TransportId& trid, std::string_view reported);

}  // namespace nvmux
