// Format NVM. Runs with the controller mutex held.
#include "tools/emu/controller.h"

namespace nvmux::emu {

using namespace nvmux::spec;

// Format completes before the command does (the mutex is held throughout),
// so I/O never observes a format in progress (0/84 cannot occur).
Controller::Outcome Controller::FormatNvm(const Sqe& sqe) {
  const uint8_t lbaf = static_cast<uint8_t>(sqe.cdw10 & 0xF);
  const bool mset = (sqe.cdw10 & (1u << 4)) != 0;
  const uint8_t pi = static_cast<uint8_t>((sqe.cdw10 >> 5) & 0x7);
  const uint8_t ses = static_cast<uint8_t>((sqe.cdw10 >> 9) & 0x7);
  const bool all = sqe.nsid == 0xFFFFFFFF;
  if (!all && (sqe.nsid == 0 || sqe.nsid > kMaxNamespaces)) {
    return {Dnr(sct::kGeneric, sc::kInvalidNamespaceOrFormat)};
  }
  if (!all && FindNamespace(sqe.nsid) == nullptr) return {Retry(sct::kGeneric, sc::kInvalidNamespaceOrFormat)};
  // No protection information is offered (DPC = 0): any PI type is an invalid format.
  if (lbaf >= kNumLbaFormats || pi != 0) return {Dnr(sct::kCommandSpecific, sc::kInvalidFormat)};
  // User-data erase and no erase are the same here; cryptographic erase is not offered (FNA bit 2).
  if (ses > 1) return {Dnr(sct::kGeneric, sc::kInvalidField)};
  NamespaceOptions format;
  format.block_size = 1u << kLbaFormats[lbaf].lbads;
  format.metadata_size = kLbaFormats[lbaf].ms;
  format.extended_lba = mset && format.metadata_size != 0;
  for (auto& ns : namespaces_) {
    if (!ns || (!all && ns->nsid() != sqe.nsid)) continue;
    // Same capacity in bytes, rounded down to whole blocks of the new size.
    format.size_bytes = ns->nsze() * ns->block_size() / format.block_size * format.block_size;
    if (format.size_bytes == 0) return {Dnr(sct::kCommandSpecific, sc::kInvalidFormat)};
    auto fresh = Namespace::Create(ns->nsid(), format, options_.backing);
    if (!fresh) return {Retry(sct::kGeneric, sc::kInternalError)};
    // A file backing keeps its old contents until erased (fresh memory is zero).
    if (options_.backing.kind == BackingKind::kFile && !(*fresh)->backing().Zero(0, (*fresh)->capacity_bytes())) {
      return {Retry(sct::kGeneric, sc::kInternalError)};
    }
    ns = std::move(*fresh);
  }
  return {kSuccess};
}

}  // namespace nvmux::emu
