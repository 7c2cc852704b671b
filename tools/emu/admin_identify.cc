// Identify and Get Log Page. Runs with the controller mutex held.
#include <cstring>

#include "tools/emu/controller.h"
#include "tools/emu/pci_ids.h"

namespace nvmux::emu {

using namespace nvmux::spec;

namespace {

constexpr CompletionStatus kInvalidField = Dnr(sct::kGeneric, sc::kInvalidField);
constexpr CompletionStatus kInvalidNamespace = Dnr(sct::kGeneric, sc::kInvalidNamespaceOrFormat);

// Copies text into a space-padded, not NUL-terminated ASCII field.
template <size_t N>
void PutAscii(char (&field)[N], std::string_view text) {
  std::memset(field, ' ', N);
  std::memcpy(field, text.data(), std::min(N, text.size()));
}

// Stores value in a 128-bit little-endian counter.
void Put128(uint8_t (&field)[16], uint64_t value) {
  std::memset(field, 0, sizeof(field));
  std::memcpy(field, &value, sizeof(value));
}

}  // namespace

void Controller::FillIdentifyController(IdentifyController& id) const {
  id.vid = kPciVendorId;
  id.ssvid = kPciSubsystemVendorId;
  PutAscii(id.sn, options_.serial);
  PutAscii(id.mn, "nvmux emulated NVMe controller");
  PutAscii(id.fr, "0.1.0");
  id.rab = 6;
  id.ieee[0] = 0x4D;  // OUI bytes, least significant first
  id.ieee[1] = 0x56;
  id.ieee[2] = 0x4E;
  id.cmic = 0;
  id.mdts = options_.mdts;
  id.cntlid = kCntlid;
  id.ver = kVersion1_4;
  id.oaes = kOaesNsAttributeNotices;
  id.cntrltype = kCntrltypeIo;
  id.oacs = kOacsFormat | kOacsNsMgmt | kOacsDbcs;
  id.acl = 3;
  id.aerl = kAerl;
  id.frmw = 0x3;  // slot 1 read-only, one slot
  id.lpa = kLpaSmartPerNamespace | kLpaCommandEffects;
  id.elpe = kErrorLogEntries - 1;
  id.npss = 0;
  id.wctemp = 0x157;
  id.cctemp = 0x175;
  id.kas = kKas;  // 100 ms units
  id.sqes = 0x66;
  id.cqes = 0x44;
  id.maxcmd = 0;
  id.nn = kMaxNamespaces;
  id.oncs = kOncsCompare | kOncsWriteUncorrectable | kOncsDsm | kOncsWriteZeroes | kOncsSaveSelect |
            kOncsTimestamp | kOncsVerify | kOncsCopy | kOncsReservations;
  id.fuses = kFusesCompareAndWrite;
  id.fna = 0;  // format per namespace; crypto erase not offered
  id.vwc = 1;
  id.sgls = 0x1;  // SGLs for I/O data, no alignment requirement; no bit bucket
  std::string nqn = "nqn.2024-01.io.nvmux:emu:" + options_.serial;
  std::memcpy(id.subnqn, nqn.c_str(), std::min(nqn.size(), sizeof(id.subnqn) - 1));
  id.psd[0].mp = 100;  // 1 W
  id.mnan = kMaxNamespaces;
  // Total and unallocated capacity, 128-bit little endian.
  const uint64_t total = kTotalCapacity;
  const uint64_t unallocated = total - std::min(total, AllocatedBytes());
  std::memcpy(id.tnvmcap, &total, sizeof(total));
  std::memcpy(id.unvmcap, &unallocated, sizeof(unallocated));
}

Controller::Outcome Controller::Identify(const Sqe& sqe) {
  const uint8_t cns = static_cast<uint8_t>(sqe.cdw10 & 0xFF);
  bounce_.assign(4096, 0);
  switch (cns) {
    case cns::kNamespace:
    case cns::kNamespaceIdDescriptors: {
      if (sqe.nsid == 0xFFFFFFFF && cns == cns::kNamespace) {
        // With Namespace Management (OACS.NMS), the capabilities common to
        // all namespaces: what a namespace created here may use.
        Namespace::FillCommonIdentify(*reinterpret_cast<IdentifyNamespace*>(bounce_.data()));
        break;
      }
      if (sqe.nsid == 0 || sqe.nsid == 0xFFFFFFFF || sqe.nsid > kMaxNamespaces) return {kInvalidNamespace};
      Namespace* ns = FindNamespace(sqe.nsid);
      if (cns == cns::kNamespace) {
        // An inactive but valid NSID reads as a zero-filled page.
        if (ns != nullptr) ns->FillIdentify(*reinterpret_cast<IdentifyNamespace*>(bounce_.data()));
      } else {
        if (ns == nullptr) return {kInvalidNamespace};
        ns->FillDescriptors(bounce_.data());
      }
      break;
    }
    case cns::kController:
      FillIdentifyController(*reinterpret_cast<IdentifyController*>(bounce_.data()));
      break;
    case cns::kActiveNamespaceList: {
      if (sqe.nsid >= 0xFFFFFFFE) return {kInvalidNamespace};
      size_t n = 0;
      for (uint32_t nsid = sqe.nsid + 1; nsid <= kMaxNamespaces && n < 1024; ++nsid) {
        if (FindNamespace(nsid) == nullptr) continue;
        std::memcpy(bounce_.data() + 4 * n++, &nsid, 4);
      }
      break;
    }
    case cns::kAllocatedNamespaceList:
    case cns::kAllocatedNamespace:
    case cns::kAttachedControllerList:
    case cns::kControllerList: {
      CompletionStatus st = IdentifyAllocated(cns, sqe.nsid, static_cast<uint16_t>(sqe.cdw10 >> 16));
      if (!st.ok()) return {st};
      break;
    }
    default:
      return {kInvalidField};
  }
  return {TransferToHost(sqe, bounce_)};
}

void Controller::BuildEffectsLog(CommandsSupportedAndEffectsLog& log) const {
  for (uint32_t opc = 0; opc < 256; ++opc) {
    if (AdminOpcodeSupported(static_cast<uint8_t>(opc))) log.acs[opc] = kEffectCsupp;
    if (IoOpcodeSupported(static_cast<uint8_t>(opc))) log.iocs[opc] = kEffectCsupp;
  }
  log.acs[admin::kCreateIoSq] |= kEffectCcc;
  log.acs[admin::kDeleteIoSq] |= kEffectCcc;
  log.acs[admin::kCreateIoCq] |= kEffectCcc;
  log.acs[admin::kDeleteIoCq] |= kEffectCcc;
  log.acs[admin::kFormatNvm] |= kEffectLbcc | kEffectNcc;
  log.acs[admin::kNamespaceManagement] |= kEffectNic;
  log.acs[admin::kNamespaceAttachment] |= kEffectNic;
  for (uint8_t opc : {nvm::kWrite, nvm::kWriteZeroes, nvm::kWriteUncorrectable, nvm::kDatasetManagement,
                      nvm::kCopy}) {
    log.iocs[opc] |= kEffectLbcc;
  }
}

Controller::Outcome Controller::GetLogPage(const Sqe& sqe) {
  const uint8_t lid = static_cast<uint8_t>(sqe.cdw10 & 0xFF);
  const bool rae = (sqe.cdw10 & (1u << 15)) != 0;
  const uint64_t numd = ((static_cast<uint64_t>(sqe.cdw11 & 0xFFFF) << 16) | (sqe.cdw10 >> 16)) + 1;
  const uint64_t offset = sqe.cdw12 | (static_cast<uint64_t>(sqe.cdw13) << 32);
  const uint64_t len = numd * 4;

  uint8_t unmask_type = 0xFF;
  switch (lid) {
    case lid::kErrorInformation: {
      bounce_.assign(kErrorLogEntries * sizeof(ErrorInformationEntry), 0);
      size_t i = 0;
      for (const ErrorInformationEntry& e : error_log_) {
        std::memcpy(bounce_.data() + i++ * sizeof(e), &e, sizeof(e));
      }
      unmask_type = aer::kTypeError;
      break;
    }
    case lid::kSmartHealth: {
      if (sqe.nsid != 0 && sqe.nsid != 0xFFFFFFFF && FindNamespace(sqe.nsid) == nullptr) {
        return {kInvalidNamespace};
      }
      bounce_.assign(sizeof(SmartHealthLog), 0);
      auto& log = *reinterpret_cast<SmartHealthLog*>(bounce_.data());
      const uint16_t kelvin = 314;  // 41 C
      std::memcpy(log.composite_temperature, &kelvin, 2);
      log.avail_spare = 100;
      log.avail_spare_threshold = 10;
      // Data units are thousands of 512-byte units, rounded up.
      Put128(log.data_units_read, (data_units_read_ + 999) / 1000);
      Put128(log.data_units_written, (data_units_written_ + 999) / 1000);
      Put128(log.host_read_commands, host_read_commands_);
      Put128(log.host_write_commands, host_write_commands_);
      Put128(log.power_cycles, 1);
      Put128(log.media_errors, media_errors_);
      Put128(log.num_err_log_entries, error_count_);
      unmask_type = aer::kTypeSmart;
      break;
    }
    case lid::kFirmwareSlot: {
      bounce_.assign(sizeof(FirmwareSlotLog), 0);
      auto& log = *reinterpret_cast<FirmwareSlotLog*>(bounce_.data());
      log.afi = 1;
      std::memcpy(log.frs[0], "0.1.0   ", 8);
      break;
    }
    case lid::kChangedNamespaceList: {
      bounce_.assign(sizeof(ChangedNamespaceList), 0);
      if (changed_namespaces_.size() > 1024) {
        const uint32_t overflow = 0xFFFFFFFF;
        std::memcpy(bounce_.data(), &overflow, 4);
      } else {
        if (!changed_namespaces_.empty()) {  // data() may be null when empty
          std::memcpy(bounce_.data(), changed_namespaces_.data(), changed_namespaces_.size() * 4);
        }
      }
      unmask_type = aer::kTypeNotice;
      break;
    }
    case lid::kCommandsSupportedAndEffects:
      bounce_.assign(sizeof(CommandsSupportedAndEffectsLog), 0);
      BuildEffectsLog(*reinterpret_cast<CommandsSupportedAndEffectsLog*>(bounce_.data()));
      break;
    default:
      // The spec's Invalid Log Page (QEMU answers 0/02; see README).
      return {Dnr(sct::kCommandSpecific, sc::kInvalidLogPage)};
  }
  if ((offset & 3) != 0 || offset >= bounce_.size()) return {kInvalidField};
  if (len > MaxTransferBytes()) return {kInvalidField};
  CompletionStatus st = MapPrps(dma_, sqe.prp1, sqe.prp2, len, page_size_, true, host_);
  if (!st.ok()) return {st};
  const uint64_t avail = bounce_.size() - offset;
  const uint64_t n = std::min(avail, len);
  host_.CopyIn(0, std::span<const uint8_t>(bounce_.data() + offset, static_cast<size_t>(n)));
  if (n < len) host_.ZeroFrom(n);
  if (lid == lid::kChangedNamespaceList) changed_namespaces_.clear();
  if (!rae && unmask_type != 0xFF) {
    masked_event_types_ = static_cast<uint8_t>(masked_event_types_ & ~(1u << unmask_type));
    DeliverEvents();
  }
  return {kSuccess};
}

}  // namespace nvmux::emu
