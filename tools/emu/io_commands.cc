// NVM command set: Read, Write, Compare, Verify, Write Zeroes, Write
// Uncorrectable, Dataset Management, Flush. Runs with the controller mutex held.
#include <cstring>

#include "tools/emu/controller.h"

namespace nvmux::emu {

using namespace nvmux::spec;

namespace {

constexpr CompletionStatus kInvalidField = Dnr(sct::kGeneric, sc::kInvalidField);
constexpr CompletionStatus kDataTransferError = {sct::kGeneric, sc::kDataTransferError, false};
constexpr CompletionStatus kLbaOutOfRange = Dnr(sct::kGeneric, sc::kLbaOutOfRange);
constexpr CompletionStatus kReadError = Retry(sct::kMediaError, sc::kUnrecoveredReadError);
constexpr CompletionStatus kWriteFault = Retry(sct::kMediaError, sc::kWriteFault);
constexpr CompletionStatus kCompareFailure = Dnr(sct::kMediaError, sc::kCompareFailure);
// Blocks moved per backing call; keeps the bounce buffer small.
constexpr uint64_t kChunkBytes = 1u << 20;

bool RangeOk(const Namespace& ns, uint64_t slba, uint64_t nlb) {
  return slba + nlb >= slba && slba + nlb <= ns.nsze();
}

// Reads blocks [lba, lba + n) of ns into out in host layout (data, plus
// metadata after each block if the format is extended).
Status ReadHostBlocks(Namespace& ns, uint64_t lba, uint64_t n, std::span<uint8_t> out) {
  if (!ns.extended_lba()) return ns.backing().Read(ns.DataOffset(lba), out);
  const uint32_t bs = ns.block_size();
  const uint32_t ms = ns.metadata_size();
  for (uint64_t i = 0; i < n; ++i) {
    uint8_t* dst = out.data() + i * (bs + ms);
    NVMUX_TRY(ns.backing().Read(ns.DataOffset(lba + i), std::span<uint8_t>(dst, bs)));
    NVMUX_TRY(ns.backing().Read(ns.MetadataOffset(lba + i), std::span<uint8_t>(dst + bs, ms)));
  }
  return Ok();
}

Status WriteHostBlocks(Namespace& ns, uint64_t lba, uint64_t n, std::span<const uint8_t> in) {
  if (!ns.extended_lba()) return ns.backing().Write(ns.DataOffset(lba), in);
  const uint32_t bs = ns.block_size();
  const uint32_t ms = ns.metadata_size();
  for (uint64_t i = 0; i < n; ++i) {
    const uint8_t* src = in.data() + i * (bs + ms);
    NVMUX_TRY(ns.backing().Write(ns.DataOffset(lba + i), std::span<const uint8_t>(src, bs)));
    NVMUX_TRY(ns.backing().Write(ns.MetadataOffset(lba + i), std::span<const uint8_t>(src + bs, ms)));
  }
  return Ok();
}

}  // namespace

bool Controller::IoOpcodeSupported(uint8_t opc) const {
  switch (opc) {
    case nvm::kFlush:
    case nvm::kWrite:
    case nvm::kRead:
    case nvm::kWriteUncorrectable:
    case nvm::kCompare:
    case nvm::kWriteZeroes:
    case nvm::kDatasetManagement:
    case nvm::kVerify:
    case nvm::kCopy:
    case nvm::kReservationRegister:
    case nvm::kReservationReport:
    case nvm::kReservationAcquire:
    case nvm::kReservationRelease:
      return true;
  }
  return false;
}

Controller::Outcome Controller::ExecuteIo(const Sqe& sqe) {
  if (!IoOpcodeSupported(sqe.opc)) return {Dnr(sct::kGeneric, sc::kInvalidOpcode)};
  if (sqe.fuse() != kFuseNone) return {kInvalidField};  // pairs go through ExecuteFused
  // SGLs for data with a contiguous metadata buffer; not for metadata.
  if (sqe.psdt() != kPsdtPrp && sqe.psdt() != kPsdtSglMptrContiguous) return {kInvalidField};
  if (sqe.opc == nvm::kFlush && sqe.nsid == 0xFFFFFFFF) return Flush(sqe);
  if (sqe.nsid == 0 || sqe.nsid == 0xFFFFFFFF || sqe.nsid > kMaxNamespaces) {
    return {Dnr(sct::kGeneric, sc::kInvalidNamespaceOrFormat)};
  }
  Namespace* ns = FindNamespace(sqe.nsid);
  if (ns == nullptr) return {Retry(sct::kGeneric, sc::kInvalidNamespaceOrFormat)};
  switch (sqe.opc) {
    case nvm::kFlush: return Flush(sqe);
    case nvm::kWrite:
    case nvm::kRead:
    case nvm::kCompare: return ReadWrite(*ns, sqe);
    case nvm::kWriteUncorrectable: return WriteUncorrectable(*ns, sqe);
    case nvm::kWriteZeroes: return WriteZeroes(*ns, sqe);
    case nvm::kDatasetManagement: return DatasetManagement(*ns, sqe);
    case nvm::kVerify: return Verify(*ns, sqe);
    case nvm::kCopy: return Copy(*ns, sqe);
    case nvm::kReservationRegister: return ReservationRegister(*ns, sqe);
    case nvm::kReservationReport: return ReservationReport(*ns, sqe);
    case nvm::kReservationAcquire: return ReservationAcquire(*ns, sqe);
    case nvm::kReservationRelease: return ReservationRelease(*ns, sqe);
  }
  return {Dnr(sct::kGeneric, sc::kInvalidOpcode)};
}

std::pair<Controller::Outcome, Controller::Outcome> Controller::ExecuteFused(const Sqe& first,
                                                                            const Sqe& second) {
  const Outcome missing{Retry(sct::kGeneric, sc::kAbortedMissingFused)};
  // Compare and Write of the same namespace and LBA range, or neither runs.
  if (first.opc != nvm::kCompare || second.opc != nvm::kWrite || first.nsid != second.nsid ||
      first.cdw10 != second.cdw10 || first.cdw11 != second.cdw11 ||
      (first.cdw12 & 0xFFFF) != (second.cdw12 & 0xFFFF)) {
    return {missing, missing};
  }
  Sqe compare = first;
  compare.set_fuse(kFuseNone);
  Sqe write = second;
  write.set_fuse(kFuseNone);
  Outcome compared = ExecuteIo(compare);
  if (!compared.status.ok()) return {compared, {Retry(sct::kGeneric, sc::kAbortedFailedFused)}};
  return {compared, ExecuteIo(write)};
}

Controller::Outcome Controller::Flush(const Sqe& sqe) {
  for (auto& ns : namespaces_) {
    if (!ns || (sqe.nsid != 0xFFFFFFFF && ns->nsid() != sqe.nsid)) continue;
    if (!ns->backing().Flush()) return {kWriteFault};
  }
  return {kSuccess};
}

Controller::Outcome Controller::ReadWrite(Namespace& ns, const Sqe& sqe) {
  const uint64_t slba = sqe.cdw10 | (static_cast<uint64_t>(sqe.cdw11) << 32);
  const uint64_t nlb = (sqe.cdw12 & 0xFFFF) + 1ull;
  const uint64_t len = nlb * ns.host_block_size();
  if (len > MaxTransferBytes()) return {kInvalidField};
  if (!RangeOk(ns, slba, nlb)) return {kLbaOutOfRange};
  const bool is_read = sqe.opc == nvm::kRead;
  CompletionStatus st = MapData(sqe, len, is_read);
  if (!st.ok()) return {st};
  const bool separate_md = ns.metadata_size() != 0 && !ns.extended_lba();
  const uint64_t md_len = separate_md ? nlb * ns.metadata_size() : 0;
  if (separate_md) {
    st = MapContiguous(dma_, sqe.mptr, md_len, is_read, meta_);
    if (staging_.pending()) [[unlikely]] return {kDataTransferError};  // parked, see MapData
    if (!st.ok()) return {st};
  }
  if (sqe.opc != nvm::kWrite && ns.AnyUncorrectable(slba, nlb)) {
    ++media_errors_;
    return {kReadError};
  }

  const uint64_t hbs = ns.host_block_size();
  const uint64_t chunk_blocks = std::max<uint64_t>(1, kChunkBytes / hbs);
  // A memory backing with the host's layout (no interleaved metadata):
  // copy straight between it and the host's DMA memory, no bounce buffer.
  uint8_t* direct = nullptr;
  if (sqe.opc != nvm::kCompare && !ns.extended_lba()) direct = ns.backing().Direct(ns.DataOffset(slba), len, !is_read);
  if (direct != nullptr) {
    if (is_read) {
      host_.CopyIn(0, std::span<const uint8_t>(direct, static_cast<size_t>(len)));
    } else {
      host_.CopyOut(0, std::span<uint8_t>(direct, static_cast<size_t>(len)));
    }
  }
  for (uint64_t done = direct != nullptr ? nlb : 0; done < nlb;) {
    const uint64_t n = std::min(chunk_blocks, nlb - done);
    const uint64_t bytes = n * hbs;
    if (sqe.opc == nvm::kCompare) {
      bounce_.resize(static_cast<size_t>(2 * bytes));
      std::span<uint8_t> media(bounce_.data(), static_cast<size_t>(bytes));
      std::span<uint8_t> host(bounce_.data() + bytes, static_cast<size_t>(bytes));
      if (!ReadHostBlocks(ns, slba + done, n, media)) {
        ++media_errors_;
        return {kReadError};
      }
      host_.CopyOut(done * hbs, host);
      if (std::memcmp(media.data(), host.data(), host.size()) != 0) return {kCompareFailure};
    } else {
      bounce_.resize(static_cast<size_t>(bytes));
      std::span<uint8_t> buf(bounce_.data(), static_cast<size_t>(bytes));
      if (is_read) {
        if (!ReadHostBlocks(ns, slba + done, n, buf)) {
          ++media_errors_;
          return {kReadError};
        }
        host_.CopyIn(done * hbs, buf);
      } else {
        host_.CopyOut(done * hbs, buf);
        if (!WriteHostBlocks(ns, slba + done, n, buf)) {
          ++media_errors_;
          return {kWriteFault};
        }
      }
    }
    done += n;
  }
  if (separate_md) {
    bounce_.resize(static_cast<size_t>(2 * md_len));
    std::span<uint8_t> media(bounce_.data(), static_cast<size_t>(md_len));
    std::span<uint8_t> host(bounce_.data() + md_len, static_cast<size_t>(md_len));
    const uint64_t md_offset = ns.MetadataOffset(slba);
    if (sqe.opc == nvm::kWrite) {
      meta_.CopyOut(0, host);
      if (!ns.backing().Write(md_offset, host)) return {kWriteFault};
    } else {
      if (!ns.backing().Read(md_offset, media)) return {kReadError};
      if (is_read) {
        meta_.CopyIn(0, media);
      } else {
        meta_.CopyOut(0, host);
        if (std::memcmp(media.data(), host.data(), host.size()) != 0) return {kCompareFailure};
      }
    }
  }
  if (sqe.opc == nvm::kWrite) {
    ns.ClearUncorrectable(slba, nlb);
    ++host_write_commands_;
    data_units_written_ += nlb * ns.block_size() / 512;
  } else if (is_read) {
    ++host_read_commands_;
    data_units_read_ += nlb * ns.block_size() / 512;
  }
  return {kSuccess};
}

Controller::Outcome Controller::WriteZeroes(Namespace& ns, const Sqe& sqe) {
  const uint64_t slba = sqe.cdw10 | (static_cast<uint64_t>(sqe.cdw11) << 32);
  const uint64_t nlb = (sqe.cdw12 & 0xFFFF) + 1ull;
  if (!RangeOk(ns, slba, nlb)) return {kLbaOutOfRange};
  if (!ns.backing().Zero(ns.DataOffset(slba), nlb * ns.block_size())) return {kWriteFault};
  if (ns.metadata_size() != 0 && !ns.backing().Zero(ns.MetadataOffset(slba), nlb * ns.metadata_size())) {
    return {kWriteFault};
  }
  ns.ClearUncorrectable(slba, nlb);
  return {kSuccess};
}

Controller::Outcome Controller::WriteUncorrectable(Namespace& ns, const Sqe& sqe) {
  const uint64_t slba = sqe.cdw10 | (static_cast<uint64_t>(sqe.cdw11) << 32);
  const uint64_t nlb = (sqe.cdw12 & 0xFFFF) + 1ull;
  if (!RangeOk(ns, slba, nlb)) return {kLbaOutOfRange};
  ns.MarkUncorrectable(slba, nlb);
  return {kSuccess};
}

Controller::Outcome Controller::Verify(Namespace& ns, const Sqe& sqe) {
  const uint64_t slba = sqe.cdw10 | (static_cast<uint64_t>(sqe.cdw11) << 32);
  const uint64_t nlb = (sqe.cdw12 & 0xFFFF) + 1ull;
  if (!RangeOk(ns, slba, nlb)) return {kLbaOutOfRange};
  if (ns.AnyUncorrectable(slba, nlb)) {
    ++media_errors_;
    return {kReadError};
  }
  // Read the media (no transfer) so injected backend faults surface.
  const uint64_t chunk_blocks = std::max<uint64_t>(1, kChunkBytes / ns.block_size());
  for (uint64_t done = 0; done < nlb;) {
    const uint64_t n = std::min(chunk_blocks, nlb - done);
    bounce_.resize(static_cast<size_t>(n * ns.block_size()));
    if (!ns.backing().Read(ns.DataOffset(slba + done), bounce_)) {
      ++media_errors_;
      return {kReadError};
    }
    done += n;
  }
  return {kSuccess};
}

Controller::Outcome Controller::DatasetManagement(Namespace& ns, const Sqe& sqe) {
  const uint32_t nr = (sqe.cdw10 & 0xFF) + 1;
  std::vector<DsmRange> ranges(nr);
  CompletionStatus st = TransferFromHost(
      sqe, std::span<uint8_t>(reinterpret_cast<uint8_t*>(ranges.data()), ranges.size() * sizeof(DsmRange)));
  if (!st.ok()) return {st};
  if ((sqe.cdw11 & kDsmAttrDeallocate) == 0) return {kSuccess};  // hints only
  for (const DsmRange& r : ranges) {
    if (!RangeOk(ns, r.slba, r.nlb)) return {kLbaOutOfRange};
  }
  // Deallocated blocks read as zeroes (DLFEAT = 001b).
  for (const DsmRange& r : ranges) {
    if (r.nlb == 0) continue;
    if (!ns.backing().Zero(ns.DataOffset(r.slba), r.nlb * ns.block_size())) return {kWriteFault};
    if (ns.metadata_size() != 0) (void)ns.backing().Zero(ns.MetadataOffset(r.slba), r.nlb * ns.metadata_size());
    ns.ClearUncorrectable(r.slba, r.nlb);
  }
  return {kSuccess};
}

}  // namespace nvmux::emu

namespace nvmux::emu {

// Copy, source range descriptor format 0 only. Limits (Identify Namespace
// MSRC/MSSRL/MCL) are checked before any range, then every range is checked,
// then data moves: a failed command leaves the destination untouched unless
// the backing fails midway.
Controller::Outcome Controller::Copy(Namespace& ns, const Sqe& sqe) {
  const uint64_t sdlba = sqe.cdw10 | (static_cast<uint64_t>(sqe.cdw11) << 32);
  const uint32_t nr = (sqe.cdw12 & 0xFF) + 1;
  const uint8_t desfmt = static_cast<uint8_t>((sqe.cdw12 >> 8) & 0xF);
  if (desfmt != 0) return {kInvalidField};
  if (nr > kCopyMaxSourceRanges) return {Dnr(sct::kCommandSpecific, sc::kCommandSizeLimitExceeded)};
  std::vector<CopySourceRange> ranges(nr);
  CompletionStatus st = TransferFromHost(
      sqe, std::span<uint8_t>(reinterpret_cast<uint8_t*>(ranges.data()), ranges.size() * sizeof(CopySourceRange)));
  if (!st.ok()) return {st};
  uint64_t total = 0;
  for (const CopySourceRange& r : ranges) {
    const uint64_t nlb = r.nlb + 1ull;
    if (nlb > kCopyMaxSingleRange) return {Dnr(sct::kCommandSpecific, sc::kCommandSizeLimitExceeded)};
    total += nlb;
  }
  if (total > kCopyMaxLength) return {Dnr(sct::kCommandSpecific, sc::kCommandSizeLimitExceeded)};
  for (const CopySourceRange& r : ranges) {
    if (!RangeOk(ns, r.slba, r.nlb + 1ull)) return {kLbaOutOfRange};
  }
  if (!RangeOk(ns, sdlba, total)) return {kLbaOutOfRange};
  for (const CopySourceRange& r : ranges) {
    if (ns.AnyUncorrectable(r.slba, r.nlb + 1ull)) {
      ++media_errors_;
      return {kReadError};
    }
  }
  // Gather every source first so overlapping source and destination copy
  // the old data.
  const uint64_t bs = ns.block_size();
  const uint64_t ms = ns.metadata_size();
  std::vector<uint8_t> data(static_cast<size_t>(total * bs));
  std::vector<uint8_t> meta(static_cast<size_t>(total * ms));
  uint64_t at = 0;
  for (const CopySourceRange& r : ranges) {
    const uint64_t nlb = r.nlb + 1ull;
    if (!ns.backing().Read(ns.DataOffset(r.slba), std::span<uint8_t>(data.data() + at * bs, nlb * bs))) {
      ++media_errors_;
      return {kReadError};
    }
    if (ms != 0 &&
        !ns.backing().Read(ns.MetadataOffset(r.slba), std::span<uint8_t>(meta.data() + at * ms, nlb * ms))) {
      return {kReadError};
    }
    at += nlb;
  }
  if (!ns.backing().Write(ns.DataOffset(sdlba), data)) return {kWriteFault};
  if (ms != 0 && !ns.backing().Write(ns.MetadataOffset(sdlba), meta)) return {kWriteFault};
  ns.ClearUncorrectable(sdlba, total);
  return {kSuccess};
}

}  // namespace nvmux::emu
