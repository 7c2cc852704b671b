// Queue processing: SQ fetch, CQ posting, doorbell validation, errors and
// asynchronous events. Every function runs with the controller mutex held.
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>

#include "shm/base/clock.h"
#include "shm/base/log.h"
#include "tools/emu/controller.h"

namespace nvmux::emu {

using namespace nvmux::spec;

namespace {
// Commands taken from one SQ per poll before moving to the next (fairness).
constexpr int kBatch = 32;
}  // namespace

bool Controller::CqHasRoom(const CompletionQueue& cq) const {
  return cq.overflow.empty() && static_cast<uint16_t>((cq.tail + 1) % cq.size) != cq.head;
}

void Controller::UpdateCqHead(CompletionQueue& cq) {
  const std::optional<uint32_t> host_head = ReadHostDoorbell(2u * cq.qid + 1);
  if (!host_head) return;
  const uint32_t db = *host_head;
  if (db != cq.head) {
    // Valid: below the size and not beyond the entries posted so far.
    const uint32_t posted = (cq.tail + cq.size - cq.head) % cq.size;
    const uint32_t advance = (db + cq.size - cq.head) % cq.size;
    if (db >= cq.size || advance > posted) {
      if (db != cq.last_bad_head) {
        cq.last_bad_head = db;
        RaiseEvent(aer::kTypeError, aer::kInfoErrorInvalidDoorbellValue, lid::kErrorInformation);
      }
      return;
    }
    cq.head = static_cast<uint16_t>(db);
    UpdatePollingEventIdx(2u * cq.qid + 1, cq.head, cq.size);
  }
  bool posted_any = false;
  while (!cq.overflow.empty() && static_cast<uint16_t>((cq.tail + 1) % cq.size) != cq.head) {
    if (!WriteCqe(cq, cq.overflow.front())) return;
    cq.overflow.pop_front();
    posted_any = true;
  }
  if (posted_any) Interrupt(cq);
}

bool Controller::WriteCqe(CompletionQueue& cq, const Cqe& cqe) {
  uint8_t* slot = dma_.Translate(cq.base + static_cast<uint64_t>(cq.tail) * sizeof(Cqe), sizeof(Cqe), true);
  if (slot == nullptr) {
    const uint64_t at = cq.base + static_cast<uint64_t>(cq.tail) * sizeof(Cqe);
    Fatal(dma_.TouchesFdless(at, sizeof(Cqe)) ? "completion queue entry in an fd-less DMA region (not served)"
                                              : "completion queue entry not DMA-mapped");
    return false;
  }
  // Everything but the status word first; the status (with the phase tag)
  // last with release ordering, so a host that sees the new phase sees the
  // whole entry.
  std::memcpy(slot, &cqe, offsetof(Cqe, status));
  const uint16_t status = static_cast<uint16_t>(cqe.status | cq.phase);
  std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(slot + offsetof(Cqe, status)))
      .store(status, std::memory_order_release);
  if (++cq.tail == cq.size) {
    cq.tail = 0;
    cq.phase ^= 1;
  }
  return true;
}

void Controller::PostCompletion(CompletionQueue& cq, Cqe cqe) {
  if (!CqHasRoom(cq)) {
    // A full CQ holds completions until its head doorbell moves.
    cq.overflow.push_back(cqe);
    return;
  }
  if (WriteCqe(cq, cqe)) Interrupt(cq);
}

void Controller::Interrupt(const CompletionQueue& cq) {
  if (!cq.ien || cq.iv >= vectors_.size()) return;
  // FID 08h: THR is 0's based (0: every completion), TIME in 100 us; a
  // TIME of 0 means no delay, so either being 0 turns coalescing off.
  const uint32_t ic = features_.interrupt_coalescing;
  const uint32_t threshold = (ic & 0xFF) + 1;
  const int64_t time_ns = static_cast<int64_t>((ic >> 8) & 0xFF) * 100'000;
  const std::vector<uint8_t>& cd = features_.iv_coalescing_disabled;
  const bool disabled = cq.iv < cd.size() && cd[cq.iv] != 0;
  if (cq.qid == 0 || cq.iv == 0 || threshold == 1 || time_ns == 0 || disabled) {
    RaiseVector(cq.iv);
    return;
  }
  VectorState& v = vectors_[cq.iv];
  if (v.pending++ == 0) v.pending_since_ns = MonotonicNanos();
  if (v.pending >= threshold) RaiseVector(cq.iv);
}

void Controller::RaiseVector(uint16_t iv) {
  VectorState& v = vectors_[iv];
  v.pending = 0;
  if (!msix_enabled_.load(std::memory_order_relaxed)) {
    ++v.disabled;
    return;
  }
  if (msix_table_) {
    // The completion is written; the host's unmask may race with it (see
    // msix_table.h): fence, then read the mask.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (msix_table_->Masked(iv)) {
      ++v.masked;
      if (!msix_table_->Pending(iv)) {
        msix_table_->SetPending(iv, true);
        masked_pending_.push_back(iv);
      }
      return;
    }
  }
  ++v.raised;
  if (iv >= msix_.size() || !msix_[iv].valid()) return;
  if (v.held++ == 0) held_vectors_.push_back(iv);
  if (!hold_signals_) SendHeldSignals();
}

void Controller::SendHeldSignals() {
  for (const uint16_t iv : held_vectors_) {
    VectorState& v = vectors_[iv];
    uint64_t count = v.held;
    v.held = 0;
    // The fd may have gone since (a client's SET_IRQS): the message with it.
    if (iv < msix_.size() && msix_[iv].valid()) {
      ++v.writes;
      ssize_t n = ::write(msix_[iv].get(), &count, sizeof(count));
      (void)n;  // an eventfd at its limit already signals
    }
  }
  held_vectors_.clear();
}

void Controller::SetMsixEnabled(bool enabled) { msix_enabled_.store(enabled, std::memory_order_relaxed); }

void Controller::DeliverUnmasked() {
  // Only the vectors whose pending bit is set (a hybrid host keeps one
  // masked and pending while it spins: every poller pass looks at it, so
  // scanning the whole table would slow each pass by the vectors offered).
  for (size_t i = 0; i < masked_pending_.size();) {
    const uint16_t v = masked_pending_[i];
    if (msix_table_->Masked(v)) {
      ++i;
      continue;
    }
    masked_pending_[i] = masked_pending_.back();
    masked_pending_.pop_back();
    msix_table_->SetPending(v, false);
    // As QEMU's device asserts an interrupt only while a CQ holds entries
    // the host has not consumed (heads as Poll just read them): a host that
    // took every entry while the vector was masked is not woken for them.
    bool unconsumed = false;
    for (const auto& cq : cqs_)
      if (cq && cq->ien && cq->iv == v && (cq->head != cq->tail || !cq->overflow.empty())) unconsumed = true;
    if (unconsumed) RaiseVector(v);
  }
}

void Controller::FlushCoalesced(int64_t now_ns) {
  const int64_t time_ns = static_cast<int64_t>((features_.interrupt_coalescing >> 8) & 0xFF) * 100'000;
  for (size_t iv = 0; iv < vectors_.size(); ++iv) {
    // A TIME lowered (or coalescing turned off) meanwhile releases at once.
    if (vectors_[iv].pending != 0 && now_ns - vectors_[iv].pending_since_ns >= time_ns)
      RaiseVector(static_cast<uint16_t>(iv));
  }
}

int64_t Controller::CoalescingDeadlineLocked() const {
  const int64_t time_ns = static_cast<int64_t>((features_.interrupt_coalescing >> 8) & 0xFF) * 100'000;
  int64_t at = INT64_MAX;
  for (const VectorState& v : vectors_) {
    if (v.pending != 0) at = std::min(at, v.pending_since_ns + time_ns);
  }
  return at;
}

int64_t Controller::CoalescingDeadline() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return CoalescingDeadlineLocked();
}

std::string Controller::VectorSummary() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  for (size_t iv = 0; iv < vectors_.size(); ++iv) {
    const VectorState& v = vectors_[iv];
    const bool fd = iv < msix_.size() && msix_[iv].valid();
    if (!fd && v.raised == 0 && v.pending == 0 && v.masked == 0 && v.disabled == 0) continue;
    out += (out.empty() ? "" : ",") + std::to_string(iv) + (fd ? ":fd:" : ":nofd:") + std::to_string(v.raised);
    if (v.writes != v.raised) out += "/" + std::to_string(v.writes);
    if (v.pending != 0) out += "+" + std::to_string(v.pending);
    if (v.masked != 0) out += "~" + std::to_string(v.masked);
    if (v.disabled != 0) out += "!" + std::to_string(v.disabled);
    if (msix_table_ && msix_table_->Masked(static_cast<uint16_t>(iv))) out += ":masked";
  }
  const uint32_t ic = features_.interrupt_coalescing;
  return "vectors=" + (out.empty() ? std::string("-") : out) + " coalescing=" + std::to_string(ic & 0xFF) + ":" +
         std::to_string((ic >> 8) & 0xFF);
}

void Controller::Complete(uint16_t sqid, uint16_t cid, const Outcome& outcome) {
  if (sqid >= sqs_.size() || !sqs_[sqid]) return;
  const SubmissionQueue& sq = *sqs_[sqid];
  if (!cqs_[sq.cqid]) return;
  Cqe cqe;
  cqe.cdw0 = outcome.dw0;
  cqe.sqhd = sq.head;
  cqe.sqid = sqid;
  cqe.cid = cid;
  cqe.status = static_cast<uint16_t>(ToStatusField(outcome.status) << 1);
  PostCompletion(*cqs_[sq.cqid], cqe);
}

void Controller::RecordError(uint16_t sqid, uint16_t cid, CompletionStatus status, uint32_t nsid) {
  ErrorInformationEntry e;
  e.error_count = ++error_count_;
  e.sqid = sqid;
  e.cid = cid;
  e.status = static_cast<uint16_t>(ToStatusField(status) << 1);
  e.parm_error_location = 0xFFFF;
  e.nsid = nsid;
  error_log_.push_front(e);
  if (error_log_.size() > kErrorLogEntries) error_log_.pop_back();
}

bool Controller::ProcessSq(SubmissionQueue& sq) {
  const std::optional<uint32_t> host_tail = ReadHostDoorbell(2u * sq.qid);
  if (!host_tail) return true;
  const uint32_t db = *host_tail;
  if (db >= sq.size) {
    // Ignored; reported once per bad value.
    if (db != sq.last_bad_tail) {
      sq.last_bad_tail = db;
      RaiseEvent(aer::kTypeError, aer::kInfoErrorInvalidDoorbellValue, lid::kErrorInformation);
    }
    return false;
  }
  if (db != sq.tail) {
    sq.tail = static_cast<uint16_t>(db);
    UpdatePollingEventIdx(2u * sq.qid, sq.tail, sq.size);
  }
  CompletionQueue& cq = *cqs_[sq.cqid];
  auto fetch = [&](Sqe& sqe) {
    const uint8_t* entry =
        dma_.Translate(sq.base + static_cast<uint64_t>(sq.head) * sizeof(Sqe), sizeof(Sqe), false);
    if (entry == nullptr) {
      const uint64_t at = sq.base + static_cast<uint64_t>(sq.head) * sizeof(Sqe);
      Fatal(dma_.TouchesFdless(at, sizeof(Sqe)) ? "submission queue entry in an fd-less DMA region (not served)"
                                                : "submission queue entry not DMA-mapped");
      return false;
    }
    std::memcpy(&sqe, entry, sizeof(sqe));
    sq.head = static_cast<uint16_t>((sq.head + 1) % sq.size);
    return true;
  };
  auto finish = [&](const Sqe& sqe, const Outcome& outcome, uint64_t delay_us) {
    Finish(sq.qid, sqe, outcome, delay_us);
  };
  // After a command ran: whether fd-less data stops the batch here (the
  // command parked at `at`, or its completion held for a write-back).
  auto staged = [&](uint16_t at, const FaultDecision& fault, const Sqe& sqe, const Outcome& outcome) {
    if (staging_.pending()) {
      staging_.DropWrites();
      sq.head = at;  // fetched again once its bytes are here
      parked_ = {true, sq.qid, at, fault};
      return true;
    }
    if (staging_.has_writes() && outcome.status.ok() && !outcome.deferred) {
      held_ = {true, sq.qid, sqe, outcome, fault.delay_us};
      return true;
    }
    staging_.EndCommand();  // failed: its staged bytes never reach the host
    return false;
  };
  int done = 0;
  while (sq.head != sq.tail && done < kBatch && CqHasRoom(cq)) {
    Sqe sqe;
    const uint16_t at = sq.head;
    if (!fetch(sqe)) return true;
    ++done;
    // Fault injection: fail (without executing), drop (never complete) or
    // delay the completion. Checked once per fetched entry, before the
    // fused-pair logic: a failed or dropped first half leaves its partner lone.
    // A parked entry fetched again keeps its decision.
    const bool refetch = parked_.active && parked_.sqid == sq.qid && parked_.head == at;
    parked_.active = false;
    const FaultDecision fault =
        refetch ? parked_.fault : faults_.OnCommand(sq.qid == 0 ? FaultQueue::kAdmin : FaultQueue::kIo, sqe.opc);
    if (fault.action == FaultDecision::Action::kDrop) continue;
    if (fault.action == FaultDecision::Action::kFail) {
      finish(sqe, {fault.status}, fault.delay_us);
      continue;
    }
    if (sq.qid != 0 && sqe.fuse() != kFuseNone) {
      // Fused pair: the second half must be the very next entry, already
      // submitted. Executed back to back under the lock, so atomic.
      if (sqe.fuse() == kFuseFirst && sq.head != sq.tail) {
        Sqe peek;
        const uint16_t saved_head = sq.head;
        if (!fetch(peek)) return true;
        if (peek.fuse() == kFuseSecond) {
          auto [first, second] = ExecuteFused(sqe, peek);
          if (csts_.cfs() != 0) return true;
          if (!staging_.idle()) [[unlikely]] {
            // Both halves only read host memory: parked together, or run.
            if (staging_.pending()) {
              staging_.DropWrites();
              sq.head = at;
              parked_ = {true, sq.qid, at, fault};
              return true;
            }
            staging_.EndCommand();
          }
          finish(sqe, first, fault.delay_us);
          finish(peek, second, fault.delay_us);
          continue;
        }
        sq.head = saved_head;  // not our partner: it is processed on its own
      }
      finish(sqe, {Retry(sct::kGeneric, sc::kAbortedMissingFused)}, fault.delay_us);
      continue;
    }
    Outcome outcome = sq.qid == 0 ? ExecuteAdmin(sqe) : ExecuteIo(sqe);
    if (csts_.cfs() != 0) return true;
    if (!staging_.idle()) [[unlikely]] {
      if (staged(at, fault, sqe, outcome)) return true;
    }
    finish(sqe, outcome, fault.delay_us);
  }
  return done > 0;
}

void Controller::Finish(uint16_t sqid, const Sqe& sqe, const Outcome& outcome, uint64_t delay_us) {
  if (outcome.deferred) return;
  if (!outcome.status.ok()) RecordError(sqid, sqe.cid, outcome.status, sqe.nsid);
  if (delay_us > 0) {
    // Injected delay: the command has run; its completion waits.
    delayed_.push_back({MonotonicNanos() + static_cast<int64_t>(delay_us) * 1000, sqid, sqe.cid, outcome});
    return;
  }
  Complete(sqid, sqe.cid, outcome);
}

void Controller::ServeFdless(std::unique_lock<std::mutex>& lock) {
  // Each round either fetches bytes the parked command was missing (a
  // fetched PRP list or SGL segment may name more: another round; the
  // walks are bounded, so the rounds are) or ends it.
  while (staging_.pending() || held_.active) {
    std::vector<FdlessStaging::Range> reads = staging_.TakeMissing();
    std::vector<FdlessStaging::Range> writes;
    if (held_.active) writes = staging_.TakeWrites();
    const uint64_t generation = generation_;
    DmaMessenger* messenger = messenger_;
    bool wrote = messenger != nullptr;
    // The exchange runs without the mutex: the replies come through the
    // socket thread, which takes it for every register or doorbell write.
    lock.unlock();
    for (FdlessStaging::Range& r : reads) r.failed = messenger == nullptr || !messenger->DmaRead(r.iova, r.bytes);
    for (const FdlessStaging::Range& w : writes) {
      if (!wrote) break;
      wrote = messenger->DmaWrite(w.iova, w.bytes);
    }
    lock.lock();
    if (generation != generation_ || removed()) {
      // Reset or client gone meanwhile: the command's queue state is gone.
      staging_.EndCommand();
      held_.active = false;
      parked_.active = false;
      return;
    }
    if (held_.active) {
      Held held = held_;
      held_.active = false;
      staging_.EndCommand();
      if (!wrote) {
        NVMUX_LOG(kWarning, "nvmux-emu: DMA_WRITE to an fd-less region failed (cid %u): Data Transfer Error",
                  held.sqe.cid);
        held.outcome = {{sct::kGeneric, sc::kDataTransferError, false}};
      }
      Finish(held.sqid, held.sqe, held.outcome, held.delay_us);
      return;
    }
    for (const FdlessStaging::Range& r : reads) {
      if (r.failed) {
        NVMUX_LOG(kWarning, "nvmux-emu: DMA_READ of [0x%llx, +0x%zx) from an fd-less region failed",
                  static_cast<unsigned long long>(r.iova), r.bytes.size());
      }
    }
    staging_.PutFetched(std::move(reads));
    // Run the parked entry again, first (its queue still exists: only the
    // poller deletes queues, and a reset bumps the generation).
    if (!parked_.active || !sqs_[parked_.sqid]) {
      staging_.EndCommand();
      return;
    }
    ProcessSq(*sqs_[parked_.sqid]);
    if (csts_.cfs() != 0) return;
  }
  // Parked but not run again (its CQ is full): fetched again later.
  if (!staging_.idle()) staging_.EndCommand();
}

bool Controller::PostDelayed(int64_t now_ns) {
  bool posted = false;
  // In the order they were delayed; a later one may be due first.
  for (auto it = delayed_.begin(); it != delayed_.end();) {
    if (it->due_ns > now_ns) {
      ++it;
      continue;
    }
    // Delete I/O SQ posts its own at once and a reset clears the list, so
    // the SQ still exists (Complete checks anyway).
    Complete(it->sqid, it->cid, it->outcome);
    it = delayed_.erase(it);
    posted = true;
  }
  return posted;
}

void Controller::RaiseEvent(uint8_t type, uint8_t info, uint8_t log_page) {
  for (const PendingEvent& e : pending_events_) {
    if (e.type == type && e.info == info) return;  // already queued
  }
  pending_events_.push_back({type, info, log_page});
  DeliverEvents();
}

void Controller::DeliverEvents() {
  // Each event type stays masked from the moment one is reported until the
  // host reads its log page with RAE=0.
  for (auto it = pending_events_.begin(); it != pending_events_.end() && !aer_cids_.empty();) {
    if ((masked_event_types_ & (1u << it->type)) != 0) {
      ++it;
      continue;
    }
    const uint16_t cid = aer_cids_.front();
    aer_cids_.pop_front();
    masked_event_types_ = static_cast<uint8_t>(masked_event_types_ | (1u << it->type));
    Outcome outcome;
    outcome.dw0 = aer::Dw0(it->type, it->info, it->log_page);
    it = pending_events_.erase(it);
    Complete(0, cid, outcome);
  }
}

}  // namespace nvmux::emu
