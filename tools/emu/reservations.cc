// Reservation Register, Report, Acquire and Release (NVMe base specification
// 1.4 sections 6.11-6.14 and 8.8). Runs with the controller mutex held.
//
// The subsystem has one controller, so one host: the registrant set holds at
// most that host, and every reservation is held by it. Reservation Conflict
// (0/83) therefore comes from key mismatches and from a host that is not
// registered; I/O commands never conflict (the only possible holder is the
// host issuing them).
#include <algorithm>
#include <cstring>

#include "tools/emu/controller.h"

namespace nvmux::emu {

using namespace nvmux::spec;

namespace {

constexpr CompletionStatus kInvalidField = Dnr(sct::kGeneric, sc::kInvalidField);
constexpr CompletionStatus kConflict = Dnr(sct::kGeneric, sc::kReservationConflict);

}  // namespace

Controller::Outcome Controller::ReservationRegister(Namespace& ns, const Sqe& sqe) {
  const uint8_t action = static_cast<uint8_t>(sqe.cdw10 & 0x7);
  const bool ignore_key = (sqe.cdw10 & (1u << 3)) != 0;
  const uint8_t cptpl = static_cast<uint8_t>(sqe.cdw10 >> 30);
  if (action > resv::kReplace) return {kInvalidField};
  if (cptpl >= 2) return {kInvalidField};  // persist through power loss not offered (RESCAP bit 0)
  ReservationRegisterData data;
  CompletionStatus st =
      TransferFromHost(sqe, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&data), sizeof(data)));
  if (!st.ok()) return {st};
  Namespace::Reservation& r = ns.reservation();
  switch (action) {
    case resv::kRegister:
      if (r.registered) return {r.rkey == data.nrkey ? kSuccess : kConflict};
      r.registered = true;
      r.rkey = data.nrkey;
      ++r.generation;
      return {kSuccess};
    case resv::kUnregister:
      if (!r.registered || (!ignore_key && r.rkey != data.crkey)) return {kConflict};
      r = Namespace::Reservation{false, 0, 0, r.generation + 1};
      return {kSuccess};
    case resv::kReplace:
      if (!r.registered || (!ignore_key && r.rkey != data.crkey)) return {kConflict};
      r.rkey = data.nrkey;
      return {kSuccess};
  }
  return {kInvalidField};
}

Controller::Outcome Controller::ReservationAcquire(Namespace& ns, const Sqe& sqe) {
  const uint8_t action = static_cast<uint8_t>(sqe.cdw10 & 0x7);
  const uint8_t rtype = static_cast<uint8_t>((sqe.cdw10 >> 8) & 0xFF);
  if (action > resv::kPreemptAndAbort || rtype < resv::kWriteExclusive ||
      rtype > resv::kExclusiveAccessAllRegistrants) {
    return {kInvalidField};
  }
  ReservationAcquireData data;
  CompletionStatus st =
      TransferFromHost(sqe, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&data), sizeof(data)));
  if (!st.ok()) return {st};
  Namespace::Reservation& r = ns.reservation();
  if (!r.registered || r.rkey != data.crkey) return {kConflict};
  if (action == resv::kAcquire) {
    if (r.rtype != 0 && r.rtype != rtype) return {kConflict};
    r.rtype = rtype;
    return {kSuccess};
  }
  // Preempt (and abort): the only registrant that PRKEY can name is the host
  // itself; preempting itself changes the reservation type.
  if (data.prkey != r.rkey) return {kConflict};
  r.rtype = rtype;
  ++r.generation;
  return {kSuccess};
}

Controller::Outcome Controller::ReservationRelease(Namespace& ns, const Sqe& sqe) {
  const uint8_t action = static_cast<uint8_t>(sqe.cdw10 & 0x7);
  const uint8_t rtype = static_cast<uint8_t>((sqe.cdw10 >> 8) & 0xFF);
  if (action > resv::kClear) return {kInvalidField};
  uint64_t crkey = 0;
  CompletionStatus st = TransferFromHost(sqe, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&crkey), 8));
  if (!st.ok()) return {st};
  Namespace::Reservation& r = ns.reservation();
  if (!r.registered || r.rkey != crkey) return {kConflict};
  if (action == resv::kClear) {
    r = Namespace::Reservation{false, 0, 0, r.generation + 1};
    return {kSuccess};
  }
  if (r.rtype == 0) return {kSuccess};  // nothing held: no effect
  if (rtype != r.rtype) return {kInvalidField};
  r.rtype = 0;
  return {kSuccess};
}

Controller::Outcome Controller::ReservationReport(Namespace& ns, const Sqe& sqe) {
  const uint64_t len = (uint64_t{sqe.cdw10} + 1) * 4;
  const bool extended = (sqe.cdw11 & 1) != 0;
  if (extended) return {kInvalidField};  // 128-bit host identifiers are not offered
  const Namespace::Reservation& r = ns.reservation();
  ReservationStatusHeader header;
  header.gen = r.generation;
  header.rtype = r.rtype;
  header.regctl[0] = r.registered ? 1 : 0;
  bounce_.assign(sizeof(header) + sizeof(RegisteredController), 0);
  std::memcpy(bounce_.data(), &header, sizeof(header));
  if (r.registered) {
    RegisteredController entry;
    entry.cntlid = kCntlid;
    entry.rcsts = r.rtype != 0 ? 1 : 0;
    entry.rkey = r.rkey;
    std::memcpy(bounce_.data() + sizeof(header), &entry, sizeof(entry));
  }
  if (len > MaxTransferBytes()) return {kInvalidField};
  CompletionStatus st = MapData(sqe, len, true);
  if (!st.ok()) return {st};
  const uint64_t n = std::min<uint64_t>(len, bounce_.size());
  host_.CopyIn(0, std::span<const uint8_t>(bounce_.data(), static_cast<size_t>(n)));
  if (n < len) host_.ZeroFrom(n);
  return {kSuccess};
}

}  // namespace nvmux::emu
