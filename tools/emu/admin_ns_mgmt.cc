// Namespace Management, Namespace Attachment and the Identify CNS values that
// describe allocated namespaces and controllers. Runs with the controller
// mutex held.
//
// One controller (CNTLID kCntlid) in the subsystem. Namespaces from the
// command line start allocated and attached; created ones start detached.
// Attaching or detaching (and deleting an attached namespace) records the
// NSID in the Changed Namespace List and, if Async Event Configuration bit 8
// is set, raises a Namespace Attribute Changed notice.
#include <algorithm>
#include <cstring>

#include "tools/emu/controller.h"

namespace nvmux::emu {

using namespace nvmux::spec;

namespace {

constexpr CompletionStatus kInvalidField = Dnr(sct::kGeneric, sc::kInvalidField);
constexpr CompletionStatus kInvalidNamespace = Dnr(sct::kGeneric, sc::kInvalidNamespaceOrFormat);
constexpr CompletionStatus CommandSpecific(uint8_t code) { return Dnr(sct::kCommandSpecific, code); }

}  // namespace

uint64_t Controller::AllocatedBytes() const {
  uint64_t total = 0;
  for (const auto& ns : namespaces_) {
    if (ns) total += ns->capacity_bytes();
  }
  return total;
}

void Controller::NamespaceChanged(uint32_t nsid) {
  if (changed_namespaces_.size() <= 1024 &&
      std::find(changed_namespaces_.begin(), changed_namespaces_.end(), nsid) == changed_namespaces_.end()) {
    changed_namespaces_.push_back(nsid);
  }
  if ((features_.async_event_config & kOaesNsAttributeNotices) != 0) {
    RaiseEvent(aer::kTypeNotice, aer::kInfoNoticeNsAttrChanged, lid::kChangedNamespaceList);
  }
}

Controller::Outcome Controller::NamespaceManagement(const Sqe& sqe) {
  const uint8_t sel = static_cast<uint8_t>(sqe.cdw10 & 0xF);
  if (sel == kNsMgmtCreate) {
    IdentifyNamespace want{};
    CompletionStatus st = TransferFromHost(
        sqe, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&want), sizeof(want)));
    if (!st.ok()) return {st};
    const uint8_t lbaf = want.flbas & 0xF;
    if (lbaf >= kNumLbaFormats || want.dps != 0) return {CommandSpecific(sc::kInvalidFormat)};
    if (want.nsze == 0) return {kInvalidField};
    if (want.ncap != want.nsze) return {CommandSpecific(sc::kThinProvisioningNotSupported)};
    if ((want.nmic & ~1u) != 0) return {kInvalidField};
    NamespaceOptions format;
    format.block_size = 1u << kLbaFormats[lbaf].lbads;
    format.metadata_size = kLbaFormats[lbaf].ms;
    format.extended_lba = (want.flbas & kFlbasExtended) != 0 && format.metadata_size != 0;
    if (want.nsze > kTotalCapacity / (format.block_size + format.metadata_size)) {
      return {CommandSpecific(sc::kNamespaceInsufficientCapacity)};
    }
    format.size_bytes = want.nsze * format.block_size;
    const uint64_t bytes = want.nsze * (format.block_size + format.metadata_size);
    if (bytes > kTotalCapacity - std::min(kTotalCapacity, AllocatedBytes())) {
      return {CommandSpecific(sc::kNamespaceInsufficientCapacity)};
    }
    uint32_t nsid = 0;
    for (uint32_t i = 0; i < namespaces_.size(); ++i) {
      if (!namespaces_[i]) {
        nsid = i + 1;
        break;
      }
    }
    if (nsid == 0) return {CommandSpecific(sc::kNamespaceIdentifierUnavailable)};
    auto ns = Namespace::Create(nsid, format, options_.backing);
    if (!ns) return {CommandSpecific(sc::kNamespaceInsufficientCapacity)};
    // A new namespace reads zeroes, even from a file left by an earlier run.
    if (!(*ns)->backing().Zero(0, (*ns)->capacity_bytes())) return {Retry(sct::kGeneric, sc::kInternalError)};
    (*ns)->set_attached(false);
    namespaces_[nsid - 1] = std::move(*ns);
    return {kSuccess, nsid};
  }
  if (sel == kNsMgmtDelete) {
    const bool all = sqe.nsid == 0xFFFFFFFF;
    if (!all && FindAllocated(sqe.nsid) == nullptr) return {kInvalidNamespace};
    for (auto& ns : namespaces_) {
      if (!ns || (!all && ns->nsid() != sqe.nsid)) continue;
      const uint32_t nsid = ns->nsid();
      const bool was_attached = ns->attached();
      ns.reset();
      if (was_attached) NamespaceChanged(nsid);
    }
    return {kSuccess};
  }
  return {kInvalidField};
}

Controller::Outcome Controller::NamespaceAttachment(const Sqe& sqe) {
  const uint8_t sel = static_cast<uint8_t>(sqe.cdw10 & 0xF);
  if (sel != kNsAttach && sel != kNsDetach) return {kInvalidField};
  Namespace* ns = FindAllocated(sqe.nsid);
  if (ns == nullptr) return {kInvalidNamespace};
  ControllerList list;
  CompletionStatus st = TransferFromHost(sqe, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&list), sizeof(list)));
  if (!st.ok()) return {st};
  // The list names controllers of this subsystem: only ours exists.
  if (list.count == 0 || list.count > 2047) return {CommandSpecific(sc::kControllerListInvalid)};
  for (uint16_t i = 0; i < list.count; ++i) {
    if (list.ids[i] != kCntlid) return {CommandSpecific(sc::kControllerListInvalid)};
  }
  if (sel == kNsAttach) {
    if (ns->attached()) return {CommandSpecific(sc::kNamespaceAlreadyAttached)};
    ns->set_attached(true);
  } else {
    if (!ns->attached()) return {CommandSpecific(sc::kNamespaceNotAttached)};
    ns->set_attached(false);
  }
  NamespaceChanged(sqe.nsid);
  return {kSuccess};
}

CompletionStatus Controller::IdentifyAllocated(uint8_t cns, uint32_t nsid, uint16_t cntid) {
  switch (cns) {
    case cns::kAllocatedNamespaceList: {
      if (nsid >= 0xFFFFFFFE) return kInvalidNamespace;
      size_t n = 0;
      for (uint32_t id = nsid + 1; id <= kMaxNamespaces; ++id) {
        if (FindAllocated(id) != nullptr) std::memcpy(bounce_.data() + 4 * n++, &id, 4);
      }
      return kSuccess;
    }
    case cns::kAllocatedNamespace: {
      if (nsid == 0 || nsid == 0xFFFFFFFF || nsid > kMaxNamespaces) return kInvalidNamespace;
      if (Namespace* ns = FindAllocated(nsid)) ns->FillIdentify(*reinterpret_cast<IdentifyNamespace*>(bounce_.data()));
      return kSuccess;
    }
    case cns::kAttachedControllerList:
    case cns::kControllerList: {
      // Controllers with CNTLID >= cntid: ours if it qualifies (and, for
      // CNS 12h, if the namespace is attached to it).
      if (cns == cns::kAttachedControllerList) {
        if (nsid == 0 || nsid == 0xFFFFFFFF || nsid > kMaxNamespaces) return kInvalidNamespace;
      }
      ControllerList list;
      const bool attached = cns == cns::kControllerList || FindNamespace(nsid) != nullptr;
      if (attached && kCntlid >= cntid) {
        list.count = 1;
        list.ids[0] = kCntlid;
      }
      std::memcpy(bounce_.data(), &list, sizeof(list));
      return kSuccess;
    }
  }
  return kInvalidField;
}

}  // namespace nvmux::emu
