// IoQpair: the NVM commands — validation (each error names the bad value),
// splitting at MDTS and the optimal I/O boundary, and command encoding.
#include <cstring>

#include "libclient/core/controller_state.h"
#include "libclient/core/dma_page_map.h"
#include "libclient/core/io_split.h"
#include "libclient/core/qpair_state.h"
#include "shm/base/format.h"

namespace nvmux {
namespace {

using spec::Sqe;
namespace nvm = spec::nvm;

// What an LBA-addressed request carries.
struct LbaIo {
  uint8_t opc;
  uint64_t lba;
  uint32_t count;
  uint32_t io_flags;
  uint8_t* data;      // contiguous payload, or null
  uint8_t* md;        // separate metadata, or null
  ResetSglFn reset_sgl;
  NextSgeFn next_sge;
  uint32_t cdw13;
  uint32_t cdw15;     // application tag and mask
  bool has_payload;
};

std::string NsText(const Namespace& ns) { return "namespace " + std::to_string(ns.id()); }

// The checks run on every I/O: each is an inline test whose error (a
// message naming the bad value) is built out of line, so that the path that
// passes costs a few compares and no Status built and destroyed in a call
// (BENCHMARKS.md, the QD1 polled path).
[[gnu::cold, gnu::noinline]] Error StateError(const QpairState& q) {
  if (q.cs->failed.load(std::memory_order_relaxed))
    return Fail(ENXIO, "queue pair " + std::to_string(q.qid) + ": controller " + q.cs->trid.ToString() + " has failed");
  return Fail(ENXIO, "queue pair " + std::to_string(q.qid) + " is not connected (" +
                         (q.state == QpairLifecycle::kFailed ? "failed: Reconnect() it" : "call Connect()") + ")");
}

inline Status CheckState(const QpairState& q) {
  if (q.cs->failed.load(std::memory_order_relaxed) || q.state != QpairLifecycle::kConnected) [[unlikely]]
    return StateError(q);
  return Ok();
}

[[gnu::cold, gnu::noinline]] Error RangeError(const Namespace& ns, uint64_t lba, uint32_t count) {
  if (count == 0 || count > 65536)
    return Fail(EINVAL, "block count " + std::to_string(count) + " is out of range (1..65536)");
  return Fail(EINVAL, "LBA " + std::to_string(lba) + " + count " + std::to_string(count) + " is beyond the end of " +
                          NsText(ns) + " (" + std::to_string(ns.num_sectors()) + " blocks: LBAs 0.." +
                          std::to_string(ns.num_sectors() - 1) + ")");
}

inline Status CheckRange(const Namespace& ns, uint64_t lba, uint32_t count) {
  if (count == 0 || count > 65536 || lba >= ns.num_sectors() || ns.num_sectors() - lba < count) [[unlikely]]
    return RangeError(ns, lba, count);
  return Ok();
}

[[gnu::cold, gnu::noinline]] Error BufferError(const void* p, uint64_t bytes, const char* what) {
  if (p == nullptr) return Fail(EINVAL, std::string(what) + " buffer is null (" + std::to_string(bytes) + " bytes expected)");
  if (reinterpret_cast<uintptr_t>(p) % 4 != 0)
    return Fail(EINVAL, std::string(what) + " buffer at " + Hex(reinterpret_cast<uintptr_t>(p)) +
                            " is not dword (4-byte) aligned, which NVMe requires");
  return Fail(EINVAL, std::string(what) + " buffer at " + Hex(reinterpret_cast<uintptr_t>(p)) + " (" +
                          std::to_string(bytes) + " bytes) is not DMA memory: allocate it with Env::AllocDma");
}

inline Status CheckBuffer(const QpairState& q, const void* p, uint64_t bytes, const char* what) {
  if (p == nullptr || reinterpret_cast<uintptr_t>(p) % 4 != 0 || !q.cs->env.IsDmaMemory(p, bytes)) [[unlikely]]
    return BufferError(p, bytes, what);
  return Ok();
}

Sqe LbaCommand(uint32_t nsid, const LbaIo& io, uint64_t lba, uint32_t count) {
  Sqe c;
  c.opc = io.opc;
  c.nsid = nsid;
  c.cdw10 = static_cast<uint32_t>(lba);
  c.cdw11 = static_cast<uint32_t>(lba >> 32);
  c.cdw12 = (count - 1) | (io.io_flags & kIoFlagsMask);
  c.cdw13 = io.cdw13;
  c.cdw14 = static_cast<uint32_t>(lba);  // expected initial reference tag (PI types 1/2)
  c.cdw15 = io.cdw15;
  return c;
}

}  // namespace

// Validates, splits and submits an LBA-range request.
static Status SubmitLbaIo(QpairState& q, const Namespace& ns, const LbaIo& io, CompletionFn fn, void* cb_arg) {
  NVMUX_TRY(CheckState(q));
  NVMUX_TRY(CheckRange(ns, io.lba, io.count));
  if (io.io_flags & ~kIoFlagsMask)
    return Fail(EINVAL, "io_flags " + Hex(io.io_flags) + " has bits outside the allowed mask " + Hex(kIoFlagsMask));
  uint32_t block = ns.extended_sector_size();
  uint64_t bytes = io.has_payload ? uint64_t{io.count} * block : 0;
  if (io.has_payload && io.next_sge == nullptr) NVMUX_TRY(CheckBuffer(q, io.data, bytes, "data"));
  if (io.has_payload && io.next_sge != nullptr && io.reset_sgl == nullptr)
    return Fail(EINVAL, "scatter-gather payload needs both reset_sgl and next_sge");
  if (io.md != nullptr) {
    if (ns.md_size() == 0 || ns.extended_lba())
      return Fail(EINVAL, "separate metadata given, but " + NsText(ns) + " has " +
                              (ns.md_size() == 0 ? "no metadata" : "its metadata interleaved (extended LBA)"));
    NVMUX_TRY(CheckBuffer(q, io.md, uint64_t{io.count} * ns.md_size(), "metadata"));
  }
  // Children: at most max_transfer bytes each, never across the optimal I/O
  // boundary. No division when the payload fits one transfer (count is at
  // most 65536; BlocksToBoundary has none either for the usual boundary).
  const uint32_t max_blocks = !io.has_payload || bytes <= q.cs->max_transfer
                                  ? 65536
                                  : std::max<uint32_t>(1, q.cs->max_transfer / block);
  const uint32_t noiob = ns.optimal_io_boundary();
  auto child_blocks = [&](uint64_t lba, uint32_t left) {
    uint32_t n = std::min(left, max_blocks);
    if (noiob != 0) n = static_cast<uint32_t>(std::min<uint64_t>(n, BlocksToBoundary(lba, noiob)));
    return n;
  };
  uint32_t children = 0;
  for (uint64_t lba = io.lba, left = io.count; left > 0;) {
    uint32_t n = child_blocks(lba, static_cast<uint32_t>(left));
    lba += n;
    left -= n;
    ++children;
  }
  uint32_t needed = children == 1 ? 1 : children + 1;
  if (q.free_request_count < needed)
    return Fail(ENOMEM, "queue pair " + std::to_string(q.qid) + ": no free request (" + std::to_string(needed) +
                            " needed, " + std::to_string(q.free_request_count) + " free): process completions and retry");
  auto fill = [&](Request* r, uint64_t lba, uint32_t n) {
    r->cmd = LbaCommand(ns.id(), io, lba, n);
    uint64_t offset = (lba - io.lba) * block;
    r->data_bytes = io.has_payload ? n * block : 0;
    r->data = io.data != nullptr ? io.data + offset : nullptr;
    r->md = io.md != nullptr ? io.md + (lba - io.lba) * ns.md_size() : nullptr;
    r->reset_sgl = io.reset_sgl;
    r->next_sge = io.has_payload ? io.next_sge : nullptr;
    r->payload_offset = static_cast<uint32_t>(offset);
  };
  q.outstanding++;
  if (children == 1) {
    Request* r = q.AllocRequest();
    r->fn = fn;
    r->arg = cb_arg;
    fill(r, io.lba, io.count);
    q.Submit(r);
  } else {
    Request* parent = q.AllocRequest();
    parent->fn = fn;
    parent->arg = cb_arg;
    parent->children_left = children;
    parent->cpl = spec::Cqe{};
    q.stats.split++;
    for (uint64_t lba = io.lba, left = io.count; left > 0;) {
      uint32_t n = child_blocks(lba, static_cast<uint32_t>(left));
      Request* r = q.AllocRequest();
      r->fn = nullptr;
      r->arg = nullptr;
      r->parent = parent;
      fill(r, lba, n);
      q.Submit(r);
      lba += n;
      left -= n;
    }
  }
  q.RingSqUnlessDelayed();
  return Ok();
}

// Submits one command with an optional contiguous payload.
static Status SubmitSimple(QpairState& q, const Sqe& cmd, void* data, uint32_t bytes, void* md, CompletionFn fn,
                           void* cb_arg) {
  NVMUX_TRY(CheckState(q));
  if (bytes > 0) {
    NVMUX_TRY(CheckBuffer(q, data, bytes, "data"));
    if (bytes > q.cs->max_transfer)
      return Fail(EINVAL, "data of " + std::to_string(bytes) + " bytes is over the controller's maximum transfer (" +
                              std::to_string(q.cs->max_transfer) + " bytes)");
  }
  if (md != nullptr && !q.cs->env.IsDmaMemory(md, 1))
    return Fail(EINVAL, "metadata buffer is not DMA memory: allocate it with Env::AllocDma");
  Request* r = q.AllocRequest();
  if (r == nullptr)
    return Fail(ENOMEM, "queue pair " + std::to_string(q.qid) + ": no free request: process completions and retry");
  r->cmd = cmd;
  r->fn = fn;
  r->arg = cb_arg;
  r->data = static_cast<uint8_t*>(data);
  r->data_bytes = bytes;
  r->md = static_cast<uint8_t*>(md);
  r->reset_sgl = nullptr;
  r->next_sge = nullptr;
  q.outstanding++;
  q.Submit(r);
  q.RingSqUnlessDelayed();
  return Ok();
}

Status IoQpair::Read(const Namespace& ns, void* buffer, uint64_t lba, uint32_t count, CompletionFn fn, void* cb_arg,
                     uint32_t io_flags) {
  return SubmitLbaIo(*s_, ns, {nvm::kRead, lba, count, io_flags, static_cast<uint8_t*>(buffer), nullptr, nullptr,
                               nullptr, 0, 0, true}, fn, cb_arg);
}

Status IoQpair::Write(const Namespace& ns, const void* buffer, uint64_t lba, uint32_t count, CompletionFn fn,
                      void* cb_arg, uint32_t io_flags) {
  return SubmitLbaIo(*s_, ns, {nvm::kWrite, lba, count, io_flags, static_cast<uint8_t*>(const_cast<void*>(buffer)),
                               nullptr, nullptr, nullptr, 0, 0, true}, fn, cb_arg);
}

Status IoQpair::ReadWithMd(const Namespace& ns, void* buffer, void* metadata, uint64_t lba, uint32_t count,
                           CompletionFn fn, void* cb_arg, uint32_t io_flags, uint16_t apptag_mask, uint16_t apptag) {
  return SubmitLbaIo(*s_, ns, {nvm::kRead, lba, count, io_flags, static_cast<uint8_t*>(buffer),
                               static_cast<uint8_t*>(metadata), nullptr, nullptr, 0,
                               (uint32_t{apptag_mask} << 16) | apptag, true}, fn, cb_arg);
}

Status IoQpair::WriteWithMd(const Namespace& ns, const void* buffer, void* metadata, uint64_t lba, uint32_t count,
                            CompletionFn fn, void* cb_arg, uint32_t io_flags, uint16_t apptag_mask, uint16_t apptag) {
  return SubmitLbaIo(*s_, ns, {nvm::kWrite, lba, count, io_flags, static_cast<uint8_t*>(const_cast<void*>(buffer)),
                               static_cast<uint8_t*>(metadata), nullptr, nullptr, 0,
                               (uint32_t{apptag_mask} << 16) | apptag, true}, fn, cb_arg);
}

Status IoQpair::ReadV(const Namespace& ns, uint64_t lba, uint32_t count, CompletionFn fn, void* cb_arg,
                      uint32_t io_flags, ResetSglFn reset_sgl, NextSgeFn next_sge, void* metadata) {
  if (next_sge == nullptr) return Fail(EINVAL, "ReadV needs a next_sge callback");
  return SubmitLbaIo(*s_, ns, {nvm::kRead, lba, count, io_flags, nullptr, static_cast<uint8_t*>(metadata), reset_sgl,
                               next_sge, 0, 0, true}, fn, cb_arg);
}

Status IoQpair::WriteV(const Namespace& ns, uint64_t lba, uint32_t count, CompletionFn fn, void* cb_arg,
                       uint32_t io_flags, ResetSglFn reset_sgl, NextSgeFn next_sge, void* metadata) {
  if (next_sge == nullptr) return Fail(EINVAL, "WriteV needs a next_sge callback");
  return SubmitLbaIo(*s_, ns, {nvm::kWrite, lba, count, io_flags, nullptr, static_cast<uint8_t*>(metadata), reset_sgl,
                               next_sge, 0, 0, true}, fn, cb_arg);
}

Status IoQpair::Compare(const Namespace& ns, const void* buffer, uint64_t lba, uint32_t count, CompletionFn fn,
                        void* cb_arg, uint32_t io_flags) {
  if (!ns.supports_compare()) return Fail(ENOTSUP, "the controller does not support Compare (ONCS bit 0)");
  return SubmitLbaIo(*s_, ns, {nvm::kCompare, lba, count, io_flags, static_cast<uint8_t*>(const_cast<void*>(buffer)),
                               nullptr, nullptr, nullptr, 0, 0, true}, fn, cb_arg);
}

Status IoQpair::WriteZeroes(const Namespace& ns, uint64_t lba, uint32_t count, CompletionFn fn, void* cb_arg,
                            uint32_t io_flags) {
  if (!ns.supports_write_zeroes()) return Fail(ENOTSUP, "the controller does not support Write Zeroes (ONCS bit 3)");
  return SubmitLbaIo(*s_, ns, {nvm::kWriteZeroes, lba, count, io_flags, nullptr, nullptr, nullptr, nullptr, 0, 0,
                               false}, fn, cb_arg);
}

Status IoQpair::WriteUncorrectable(const Namespace& ns, uint64_t lba, uint32_t count, CompletionFn fn, void* cb_arg) {
  if (!ns.supports_write_uncorrectable())
    return Fail(ENOTSUP, "the controller does not support Write Uncorrectable (ONCS bit 1)");
  return SubmitLbaIo(*s_, ns, {nvm::kWriteUncorrectable, lba, count, 0, nullptr, nullptr, nullptr, nullptr, 0, 0,
                               false}, fn, cb_arg);
}

Status IoQpair::Verify(const Namespace& ns, uint64_t lba, uint32_t count, CompletionFn fn, void* cb_arg,
                       uint32_t io_flags) {
  if (!ns.supports_verify()) return Fail(ENOTSUP, "the controller does not support Verify (ONCS bit 7)");
  return SubmitLbaIo(*s_, ns, {nvm::kVerify, lba, count, io_flags, nullptr, nullptr, nullptr, nullptr, 0, 0, false},
                     fn, cb_arg);
}

Status IoQpair::DatasetManagement(const Namespace& ns, uint32_t attributes, const spec::DsmRange* ranges,
                                  uint16_t num_ranges, CompletionFn fn, void* cb_arg) {
  if (!ns.supports_deallocate())
    return Fail(ENOTSUP, "the controller does not support Dataset Management (ONCS bit 2)");
  if (num_ranges == 0 || num_ranges > 256)
    return Fail(EINVAL, "Dataset Management with " + std::to_string(num_ranges) + " ranges (allowed 1..256)");
  for (uint16_t i = 0; i < num_ranges; ++i)
    if (ranges != nullptr && (ranges[i].slba >= ns.num_sectors() || ns.num_sectors() - ranges[i].slba < ranges[i].nlb))
      return Fail(EINVAL, "Dataset Management range " + std::to_string(i) + " (LBA " + std::to_string(ranges[i].slba) +
                              ", " + std::to_string(ranges[i].nlb) + " blocks) is beyond the end of " + NsText(ns));
  Sqe c;
  c.opc = nvm::kDatasetManagement;
  c.nsid = ns.id();
  c.cdw10 = num_ranges - 1u;
  c.cdw11 = attributes;
  return SubmitSimple(*s_, c, const_cast<spec::DsmRange*>(ranges), num_ranges * 16u, nullptr, fn, cb_arg);
}

Status IoQpair::Flush(const Namespace& ns, CompletionFn fn, void* cb_arg) {
  Sqe c;
  c.opc = nvm::kFlush;
  c.nsid = ns.id();
  return SubmitSimple(*s_, c, nullptr, 0, nullptr, fn, cb_arg);
}

Status IoQpair::Copy(const Namespace& ns, const spec::CopySourceRange* ranges, uint16_t num_ranges, uint64_t dest_lba,
                     CompletionFn fn, void* cb_arg) {
  if (!ns.supports_copy()) return Fail(ENOTSUP, "the controller does not support Copy (ONCS bit 8)");
  uint32_t msrc = ns.data().msrc + 1u;
  if (num_ranges == 0 || num_ranges > msrc)
    return Fail(EINVAL, "Copy with " + std::to_string(num_ranges) + " source ranges (allowed 1.." +
                            std::to_string(msrc) + ", MSRC + 1)");
  if (dest_lba >= ns.num_sectors())
    return Fail(EINVAL, "Copy destination LBA " + std::to_string(dest_lba) + " is beyond the end of " + NsText(ns));
  Sqe c;
  c.opc = nvm::kCopy;
  c.nsid = ns.id();
  c.cdw10 = static_cast<uint32_t>(dest_lba);
  c.cdw11 = static_cast<uint32_t>(dest_lba >> 32);
  c.cdw12 = num_ranges - 1u;  // format 0
  return SubmitSimple(*s_, c, const_cast<spec::CopySourceRange*>(ranges),
                      num_ranges * static_cast<uint32_t>(sizeof(spec::CopySourceRange)), nullptr, fn, cb_arg);
}

Status IoQpair::ReservationRegister(const Namespace& ns, const spec::ReservationRegisterData* data, bool ignore_key,
                                    uint8_t action, uint8_t cptpl, CompletionFn fn, void* cb_arg) {
  if (!ns.supports_reservations()) return Fail(ENOTSUP, NsText(ns) + " does not support reservations");
  Sqe c;
  c.opc = nvm::kReservationRegister;
  c.nsid = ns.id();
  c.cdw10 = (action & 0x7u) | (ignore_key ? 1u << 3 : 0u) | (static_cast<uint32_t>(cptpl & 0x3) << 30);
  return SubmitSimple(*s_, c, const_cast<spec::ReservationRegisterData*>(data), 16, nullptr, fn, cb_arg);
}

Status IoQpair::ReservationAcquire(const Namespace& ns, const spec::ReservationAcquireData* data, bool ignore_key,
                                   uint8_t action, uint8_t type, CompletionFn fn, void* cb_arg) {
  if (!ns.supports_reservations()) return Fail(ENOTSUP, NsText(ns) + " does not support reservations");
  Sqe c;
  c.opc = nvm::kReservationAcquire;
  c.nsid = ns.id();
  c.cdw10 = (action & 0x7u) | (ignore_key ? 1u << 3 : 0u) | (static_cast<uint32_t>(type) << 8);
  return SubmitSimple(*s_, c, const_cast<spec::ReservationAcquireData*>(data), 16, nullptr, fn, cb_arg);
}

Status IoQpair::ReservationRelease(const Namespace& ns, const spec::ReservationRegisterData* data, bool ignore_key,
                                   uint8_t action, uint8_t type, CompletionFn fn, void* cb_arg) {
  if (!ns.supports_reservations()) return Fail(ENOTSUP, NsText(ns) + " does not support reservations");
  Sqe c;
  c.opc = nvm::kReservationRelease;
  c.nsid = ns.id();
  c.cdw10 = (action & 0x7u) | (ignore_key ? 1u << 3 : 0u) | (static_cast<uint32_t>(type) << 8);
  return SubmitSimple(*s_, c, const_cast<spec::ReservationRegisterData*>(data), 8, nullptr, fn, cb_arg);
}

Status IoQpair::ReservationReport(const Namespace& ns, void* buffer, uint32_t length, bool extended, CompletionFn fn,
                                  void* cb_arg) {
  if (!ns.supports_reservations()) return Fail(ENOTSUP, NsText(ns) + " does not support reservations");
  if (length < 4 || length % 4 != 0)
    return Fail(EINVAL, "reservation report length " + std::to_string(length) + " must be a multiple of 4, >= 4");
  Sqe c;
  c.opc = nvm::kReservationReport;
  c.nsid = ns.id();
  c.cdw10 = length / 4 - 1;
  c.cdw11 = extended ? 1 : 0;
  return SubmitSimple(*s_, c, buffer, length, nullptr, fn, cb_arg);
}

Status IoQpair::CompareAndWrite(const Namespace& ns, const void* compare, const void* write, uint64_t lba,
                                uint32_t count, CompletionFn fn, void* cb_arg) {
  QpairState& q = *s_;
  NVMUX_TRY(CheckState(q));
  if (!ns.supports_compare()) return Fail(ENOTSUP, "the controller does not support Compare (ONCS bit 0)");
  if ((q.cs->data.ctrlr.fuses & 1) == 0)
    return Fail(ENOTSUP, "the controller does not support fused Compare and Write (FUSES bit 0)");
  NVMUX_TRY(CheckRange(ns, lba, count));
  uint64_t bytes = uint64_t{count} * ns.extended_sector_size();
  if (bytes > q.cs->max_transfer)
    return Fail(EINVAL, "compare-and-write of " + std::to_string(bytes) + " bytes is over the maximum transfer (" +
                            std::to_string(q.cs->max_transfer) + " bytes); fused commands cannot be split");
  if (ns.data().nacwu != 0 && count > ns.data().nacwu + 1u)
    return Fail(EINVAL, "compare-and-write of " + std::to_string(count) + " blocks is over the namespace's atomic "
                        "compare-and-write unit (" + std::to_string(ns.data().nacwu + 1u) + " blocks)");
  NVMUX_TRY(CheckBuffer(q, compare, bytes, "compare"));
  NVMUX_TRY(CheckBuffer(q, write, bytes, "write"));
  if (q.free_request_count < 3) return Fail(ENOMEM, "queue pair " + std::to_string(q.qid) + ": no free request");
  Request* parent = q.AllocRequest();
  parent->fn = fn;
  parent->arg = cb_arg;
  parent->children_left = 2;
  parent->cpl = spec::Cqe{};
  LbaIo io{nvm::kCompare, lba, count, 0, nullptr, nullptr, nullptr, nullptr, 0, 0, true};
  Request* first = q.AllocRequest();
  first->cmd = LbaCommand(ns.id(), io, lba, count);
  first->cmd.set_fuse(spec::kFuseFirst);
  first->data = static_cast<uint8_t*>(const_cast<void*>(compare));
  first->data_bytes = static_cast<uint32_t>(bytes);
  first->md = nullptr;
  first->next_sge = nullptr;
  first->parent = parent;
  first->fused_first = true;
  io.opc = nvm::kWrite;
  Request* second = q.AllocRequest();
  second->cmd = LbaCommand(ns.id(), io, lba, count);
  second->cmd.set_fuse(spec::kFuseSecond);
  second->data = static_cast<uint8_t*>(const_cast<void*>(write));
  second->data_bytes = static_cast<uint32_t>(bytes);
  second->md = nullptr;
  second->next_sge = nullptr;
  second->parent = parent;
  first->fused_partner = second;
  q.outstanding++;
  q.Submit(first);
  q.RingSqUnlessDelayed();
  return Ok();
}

Status IoQpair::RawCommand(const spec::Sqe& cmd, void* buffer, uint32_t length, CompletionFn fn, void* cb_arg,
                           void* metadata) {
  return SubmitSimple(*s_, cmd, buffer, length, metadata, fn, cb_arg);
}

}  // namespace nvmux
