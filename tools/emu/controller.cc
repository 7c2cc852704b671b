// Controller registers, enable / shutdown / reset, and the poll entry point.
#include "tools/emu/controller.h"

#include <unistd.h>

#include <atomic>
#include <cstring>

#include "shm/base/clock.h"
#include "shm/base/log.h"

namespace nvmux::emu {

using namespace nvmux::spec;

Controller::Controller(const EmulatorOptions& options, uint32_t* doorbells)
    : options_(options),
      doorbells_(doorbells),
      msix_vectors_(options.msix_vectors != 0 ? options.msix_vectors : static_cast<uint32_t>(options.io_queues) + 1),
      sqs_(static_cast<size_t>(options.io_queues) + 1),
      cqs_(static_cast<size_t>(options.io_queues) + 1),
      msix_(msix_vectors_),
      vectors_(msix_vectors_) {
  cap_.set_mqes(options.mqes)
      .set_cqr(1)
      .set_ams(0)
      .set_to(20)  // 10 s
      .set_dstrd(0)
      .set_nssrs(0)
      .set_css(kCapCssNvm)
      .set_mpsmin(0)
      .set_mpsmax(4);  // 4 KiB .. 64 KiB
  features_.nsqa = options.io_queues;
  features_.ncqa = options.io_queues;
  dma_.set_staging(&staging_);
  if (auto table = MsixTable::Create(msix_vectors_))
    msix_table_ = std::move(*table);
  else
    NVMUX_LOG(kWarning, "%s; MSI-X vectors cannot be masked", table.error().message.c_str());
}

Controller::~Controller() = default;

void Controller::SetDmaMessenger(DmaMessenger* messenger) {
  std::lock_guard<std::mutex> lock(mutex_);
  messenger_ = messenger;
}

Result<std::unique_ptr<Controller>> Controller::Create(const EmulatorOptions& options, uint32_t* doorbells) {
  NVMUX_TRY(Validate(options));
  std::unique_ptr<Controller> ctrl(new Controller(options, doorbells));
  std::vector<NamespaceOptions> nss = options.namespaces;
  if (nss.empty()) nss.push_back(NamespaceOptions{});
  ctrl->namespaces_.resize(kMaxNamespaces);
  for (size_t i = 0; i < nss.size(); ++i) {
    auto ns = Namespace::Create(static_cast<uint32_t>(i + 1), nss[i], options.backing);
    if (!ns) return ns.error();
    ctrl->namespaces_[i] = std::move(*ns);
    NVMUX_LOG(kNotice, "nvmux-emu: namespace %zu: %s", i + 1, ctrl->namespaces_[i]->backing().Describe().c_str());
  }
  const int64_t now = MonotonicNanos();
  for (const FaultRule& rule : options.faults) ctrl->faults_.Add(rule, now);
  return ctrl;
}

uint32_t Controller::LoadDoorbell(uint32_t index) const {
  return std::atomic_ref<uint32_t>(doorbells_[index]).load(std::memory_order_acquire);
}

void Controller::StoreDoorbell(uint32_t index, uint32_t value) {
  std::atomic_ref<uint32_t>(doorbells_[index]).store(value, std::memory_order_release);
}

Result<uint64_t> Controller::ReadRegister(uint32_t offset, uint32_t size) {
  if ((size != 4 && size != 8) || offset % size != 0 || offset + size > kDoorbellBase) {
    return Fail(EINVAL, "register read of " + std::to_string(size) + " bytes at " + std::to_string(offset) +
                            ": must be 4 or 8 bytes, naturally aligned, below 0x1000");
  }
  // A removed device answers every read with all-ones, as PCIe does.
  if (removed()) return size == 8 ? ~0ull : 0xFFFFFFFFull;
  std::lock_guard<std::mutex> lock(mutex_);
  uint64_t value = Read32Locked(offset);
  if (size == 8) value |= static_cast<uint64_t>(Read32Locked(offset + 4)) << 32;
  return value;
}

Status Controller::WriteRegister(uint32_t offset, uint32_t size, uint64_t value) {
  if ((size != 4 && size != 8) || offset % size != 0 || offset + size > kDoorbellBase) {
    return Fail(EINVAL, "register write of " + std::to_string(size) + " bytes at " + std::to_string(offset) +
                            ": must be 4 or 8 bytes, naturally aligned, below 0x1000");
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (removed()) return Ok();
  Write32Locked(offset, static_cast<uint32_t>(value));
  if (size == 8) Write32Locked(offset + 4, static_cast<uint32_t>(value >> 32));
  return Ok();
}

uint32_t Controller::Read32Locked(uint32_t offset) const {
  switch (offset) {
    case kRegCap: return static_cast<uint32_t>(cap_.raw);
    case kRegCap + 4: return static_cast<uint32_t>(cap_.raw >> 32);
    case kRegVs: return kVersion1_4;
    case kRegIntms:
    case kRegIntmc: return intms_;
    case kRegCc: return cc_.raw;
    case kRegCsts: return csts_.raw;
    case kRegAqa: return aqa_.raw;
    case kRegAsq: return static_cast<uint32_t>(asq_);
    case kRegAsq + 4: return static_cast<uint32_t>(asq_ >> 32);
    case kRegAcq: return static_cast<uint32_t>(acq_);
    case kRegAcq + 4: return static_cast<uint32_t>(acq_ >> 32);
  }
  return 0;
}

void Controller::Write32Locked(uint32_t offset, uint32_t value) {
  switch (offset) {
    case kRegIntms: intms_ |= value; return;
    case kRegIntmc: intms_ &= ~value; return;
    case kRegCc: WriteCc(value); return;
    case kRegAqa: aqa_.raw = value & 0x0FFF0FFFu; return;
    // ASQ/ACQ bits 11:0 are reserved; an 8-byte write arrives as two halves.
    case kRegAsq: asq_ = (asq_ & ~0xFFFFFFFFull) | (value & ~0xFFFu); return;
    case kRegAsq + 4: asq_ = (asq_ & 0xFFFFFFFFull) | (static_cast<uint64_t>(value) << 32); return;
    case kRegAcq: acq_ = (acq_ & ~0xFFFFFFFFull) | (value & ~0xFFFu); return;
    case kRegAcq + 4: acq_ = (acq_ & 0xFFFFFFFFull) | (static_cast<uint64_t>(value) << 32); return;
  }
  // CAP, VS, CSTS, NSSR (not supported) and reserved space: writes ignored.
}

void Controller::WriteCc(uint32_t value) {
  Cc next{value & 0x00FFFFF1u};
  const Cc prev = cc_;
  if (prev.en() == 0 && next.en() == 1) {
    cc_ = next;
    Enable();
  } else if (prev.en() == 1 && next.en() == 0) {
    cc_ = next;
    ResetLocked();
  } else if (prev.en() == 1) {
    // While enabled only SHN and the I/O entry sizes may change.
    cc_.set_shn(next.shn()).set_iosqes(next.iosqes()).set_iocqes(next.iocqes());
  } else {
    cc_ = next;
  }
  if (cc_.shn() != kCcShnNone && prev.shn() == kCcShnNone) {
    // Normal or abrupt shutdown: nothing is in flight (commands complete
    // synchronously), so flush the backings and report completion at once.
    for (auto& ns : namespaces_) {
      if (ns) (void)ns->backing().Flush();
    }
    csts_.set_shst(kShstComplete);
  } else if (cc_.shn() == kCcShnNone) {
    csts_.set_shst(kShstNormal);
  }
}

void Controller::Enable() {
  const uint64_t mps_bytes = 4096ull << cc_.mps();
  const char* why = nullptr;
  if (sqs_[0].has_value() || cqs_[0].has_value()) {
    why = "admin queues already exist";
  } else if (cc_.css() != kCcCssNvm) {
    why = "CC.CSS selects a command set that CAP.CSS does not offer";
  } else if (cc_.mps() < cap_.mpsmin() || cc_.mps() > cap_.mpsmax()) {
    why = "CC.MPS outside CAP.MPSMIN..MPSMAX";
  } else if (cc_.ams() != 0) {
    why = "CC.AMS selects an arbitration mechanism not offered";
  } else if ((asq_ & (mps_bytes - 1)) != 0 || (acq_ & (mps_bytes - 1)) != 0) {
    why = "ASQ/ACQ not aligned to the CC.MPS page size";
  } else if (aqa_.asqs() == 0 || aqa_.acqs() == 0) {
    why = "AQA.ASQS/ACQS must give at least 2 entries";
  }
  if (why != nullptr) {
    NVMUX_LOG(kWarning, "nvmux-emu: CC.EN=1 refused: %s; CSTS.CFS set", why);
    csts_.set_cfs(1).set_rdy(0);
    return;
  }
  page_size_ = mps_bytes;
  CompletionQueue acq;
  acq.qid = 0;
  acq.size = static_cast<uint16_t>(aqa_.acqs() + 1);
  acq.base = acq_;
  acq.ien = true;
  acq.iv = 0;
  acq.sq_count = 1;
  cqs_[0] = std::move(acq);
  SubmissionQueue asq;
  asq.qid = 0;
  asq.size = static_cast<uint16_t>(aqa_.asqs() + 1);
  asq.base = asq_;
  asq.cqid = 0;
  sqs_[0] = asq;
  StoreDoorbell(0, 0);
  StoreDoorbell(1, 0);
  csts_.set_rdy(1);
}

void Controller::ResetLocked() {
  ++generation_;
  parked_.active = false;
  held_.active = false;
  staging_.EndCommand();
  for (auto& sq : sqs_) sq.reset();
  for (auto& cq : cqs_) cq.reset();
  aer_cids_.clear();
  pending_events_.clear();
  delayed_.clear();
  masked_event_types_ = 0;
  shadow_doorbells_ = 0;
  event_idx_ = 0;
  event_idx_written_.clear();
  if (!removed()) {
    for (uint32_t i = 0; i < 1024; ++i) StoreDoorbell(i, 0);
  }
  csts_.set_rdy(0).set_cfs(0);
  for (VectorState& v : vectors_) v.pending = 0;  // their queues are gone
  features_ = Features{};
  features_.nsqa = options_.io_queues;
  features_.ncqa = options_.io_queues;
  page_size_ = 4096;
}

void Controller::Reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  ResetLocked();
  cc_.raw = 0;
  csts_.raw = 0;
}

void Controller::Fatal(const char* why) {
  if (csts_.cfs() == 0) NVMUX_LOG(kWarning, "nvmux-emu: controller fatal status: %s", why);
  csts_.set_cfs(1);
}

void Controller::RestartKeepAlive() { keep_alive_at_ns_ = MonotonicNanos(); }

std::optional<int64_t> Controller::KeepAliveDeadline() const {
  if (!options_.enforce_keep_alive || features_.keep_alive_timer == 0) return std::nullopt;
  return keep_alive_at_ns_ + int64_t{features_.keep_alive_timer} * 1'000'000;
}

void Controller::CheckKeepAlive(int64_t now_ns) {
  std::optional<int64_t> deadline = KeepAliveDeadline();
  if (!deadline || now_ns < *deadline) return;
  // The host is presumed gone: log it (no command, so CID FFFFh), stop
  // processing commands and report a fatal status, which only a controller
  // reset clears. The timer stops with it.
  RecordError(0, 0xFFFF, Dnr(sct::kGeneric, sc::kKeepAliveTimerExpired), 0);
  NVMUX_LOG(kWarning, "nvmux-emu: keep alive timer expired (KATO %u ms without a Keep Alive command)",
            features_.keep_alive_timer);
  features_.keep_alive_timer = 0;
  Fatal("keep alive timer expired");
}

void Controller::WriteDoorbell(uint32_t offset, uint32_t value) {
  std::lock_guard<std::mutex> lock(mutex_);
  uint32_t index = (offset - kDoorbellBase) / 4;
  if (offset < kDoorbellBase || index >= 1024 || removed()) return;
  uint16_t qid = static_cast<uint16_t>(index / 2);
  bool exists = qid < sqs_.size() && ((index & 1) != 0 ? cqs_[qid].has_value() : sqs_[qid].has_value());
  if (!exists) {
    if (csts_.rdy() != 0) RaiseEvent(aer::kTypeError, aer::kInfoErrorInvalidDoorbell, lid::kErrorInformation);
    return;
  }
  StoreDoorbell(index, value);
}

void Controller::ScanStrayDoorbells() {
  // A doorbell of a queue that does not exist was written through the
  // mmapped page: report it once and clear it so the next write shows too.
  for (uint32_t index = 0; index < 1024; ++index) {
    if (LoadDoorbell(index) == 0) continue;
    uint16_t qid = static_cast<uint16_t>(index / 2);
    bool exists = qid < sqs_.size() && ((index & 1) != 0 ? cqs_[qid].has_value() : sqs_[qid].has_value());
    if (exists) continue;
    StoreDoorbell(index, 0);
    RaiseEvent(aer::kTypeError, aer::kInfoErrorInvalidDoorbell, lid::kErrorInformation);
  }
}

Status Controller::MapDma(int fd, uint64_t fd_offset, uint64_t iova, uint64_t size, bool readable,
                          bool writable) {
  std::lock_guard<std::mutex> lock(mutex_);
  Status done = fd < 0 ? dma_.MapFdless(iova, size, readable, writable)
                        : dma_.Map(fd, fd_offset, iova, size, readable, writable);
  if (done && fd >= 0) detached_ = false;
  return done;
}

Status Controller::UnmapDma(uint64_t iova, uint64_t size) {
  std::lock_guard<std::mutex> lock(mutex_);
  return dma_.Unmap(iova, size);
}

void Controller::DropClient() {
  std::lock_guard<std::mutex> lock(mutex_);
  dma_.UnmapAll();
  for (auto& fd : msix_) fd.Reset();
  ResetMsixTableLocked();
  detached_ = true;
  ++generation_;
  held_.active = false;
  staging_.EndCommand();
}

Status Controller::SetMsixEventfds(uint32_t start, std::vector<UniqueFd> fds) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (start > msix_vectors_ || fds.size() > msix_vectors_ - start) {
    return Fail(EINVAL, "MSI-X vectors " + std::to_string(start) + ".." + std::to_string(start + fds.size()) +
                            " beyond the " + std::to_string(msix_vectors_) + " offered");
  }
  for (size_t i = 0; i < fds.size(); ++i) {
    const auto v = static_cast<uint16_t>(start + i);
    if (fds[i].valid() && msix_table_) msix_table_->SetMasked(v, false);
    msix_[v] = std::move(fds[i]);
  }
  return Ok();
}

Controller::ClientState Controller::client_state() const {
  std::lock_guard<std::mutex> lock(mutex_);
  ClientState st;
  st.dma_maps = dma_.count();
  st.fdless_maps = dma_.fdless_count();
  for (const auto& fd : msix_) st.msix_fds += fd.valid() ? 1 : 0;
  for (size_t q = 1; q < sqs_.size(); ++q) st.io_sqs += sqs_[q].has_value() ? 1 : 0;
  for (size_t q = 1; q < cqs_.size(); ++q) st.io_cqs += cqs_[q].has_value() ? 1 : 0;
  return st;
}

void Controller::ClearMsix() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& fd : msix_) fd.Reset();
  ResetMsixTableLocked();
}

void Controller::ResetMsixTableLocked() {
  if (!msix_table_) return;
  msix_table_->Reset();
  masked_pending_.clear();
}

void Controller::SetBackendFaults(uint32_t nsid, bool fail_reads, bool fail_writes) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (Namespace* ns = FindNamespace(nsid)) ns->backing().SetFaults(fail_reads, fail_writes);
}

Namespace* Controller::FindNamespace(uint32_t nsid) {
  Namespace* ns = FindAllocated(nsid);
  return ns != nullptr && ns->attached() ? ns : nullptr;
}

Namespace* Controller::FindAllocated(uint32_t nsid) {
  if (nsid == 0 || nsid > namespaces_.size()) return nullptr;
  return namespaces_[nsid - 1].get();
}

void Controller::InjectFatal() {
  std::lock_guard<std::mutex> lock(mutex_);
  Fatal("injected by the control socket");
}

void Controller::InjectEvent(uint8_t type, uint8_t info, uint8_t log_page) {
  std::lock_guard<std::mutex> lock(mutex_);
  RaiseEvent(type, info, log_page);
}

void Controller::SurpriseRemove() {
  std::lock_guard<std::mutex> lock(mutex_);
  removed_.store(true, std::memory_order_release);
  running_.store(false, std::memory_order_relaxed);
  // The host's view of the doorbell page: all-ones, like an unplugged BAR.
  for (uint32_t i = 0; i < 1024; ++i) StoreDoorbell(i, 0xFFFFFFFFu);
  NVMUX_LOG(kWarning, "nvmux-emu: surprise removal injected");
}

std::string Controller::QueueSummary() const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto ids = [](const auto& queues) {
    std::string out;
    for (size_t qid = 1; qid < queues.size(); ++qid)
      if (queues[qid]) out += (out.empty() ? "" : ",") + std::to_string(qid);
    return out.empty() ? std::string("-") : out;
  };
  return "aers=" + std::to_string(aer_cids_.size()) + " sqs=" + ids(sqs_) + " cqs=" + ids(cqs_);
}

Status Controller::CorruptBlock(uint32_t nsid, uint64_t lba) {
  std::lock_guard<std::mutex> lock(mutex_);
  Namespace* ns = FindAllocated(nsid);
  if (ns == nullptr) return Fail(ENOENT, "corrupt: namespace " + std::to_string(nsid) + " does not exist");
  if (lba >= ns->nsze()) {
    return Fail(EINVAL, "corrupt: lba=" + std::to_string(lba) + " beyond the " + std::to_string(ns->nsze()) +
                            " blocks of namespace " + std::to_string(nsid));
  }
  if (!ns->backing().stores_data()) return Fail(EINVAL, "corrupt: namespace " + std::to_string(nsid) + " has a null backing");
  std::vector<uint8_t> block(ns->block_size());
  NVMUX_TRY(ns->backing().Read(ns->DataOffset(lba), block));
  for (uint8_t& b : block) b = static_cast<uint8_t>(~b);
  return ns->backing().Write(ns->DataOffset(lba), block);
}

bool Controller::Poll() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (removed()) return false;
  const int64_t now = MonotonicNanos();
  if (faults_.CfsDue(now)) Fatal("injected by --fault cfs");
  if (csts_.rdy() != 0 && csts_.cfs() == 0) CheckKeepAlive(now);
  running_.store(csts_.rdy() != 0 && csts_.cfs() == 0, std::memory_order_relaxed);
  if (csts_.rdy() == 0 || csts_.cfs() != 0) return false;
  // No client memory (the client went, or unmapped everything): nothing can
  // be fetched or completed, and touching the queues or shadow doorbells
  // would only declare a fatal error the next client would have to clear.
  // The queues wait as they are until memory is mapped again.
  if (detached_) return false;
  // Interrupts raised in this pass are sent when it ends (RaiseVector).
  hold_signals_ = true;
  struct SendAtEnd {
    Controller& c;
    ~SendAtEnd() {
      c.hold_signals_ = false;
      c.SendHeldSignals();
    }
  } send_at_end{*this};
  bool work = false;
  for (auto& cq : cqs_) {
    if (cq) UpdateCqHead(*cq);
  }
  if (!delayed_.empty()) work |= PostDelayed(MonotonicNanos());
  FlushCoalesced(MonotonicNanos());
  if (!masked_pending_.empty()) [[unlikely]] DeliverUnmasked();
  for (auto& sq : sqs_) {
    if (!sq) continue;
    work |= ProcessSq(*sq);
    if (csts_.cfs() != 0) return true;
    if (!staging_.idle()) [[unlikely]] {
      // A command needs fd-less memory: served with the mutex released, so
      // the queue state may have moved on; the next Poll() goes on. Other
      // threads raise interrupts meanwhile: nothing is held from here on.
      hold_signals_ = false;
      SendHeldSignals();
      ServeFdless(lock);
      return true;
    }
  }
  if (!work && (++poll_count_ % 16) == 0) ScanStrayDoorbells();
  return work;
}

}  // namespace nvmux::emu
