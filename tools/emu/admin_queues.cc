// Admin command dispatch; queue creation and deletion, Abort, Asynchronous
// Event Request, Keep Alive. Runs with the controller mutex held.
#include <cstddef>
#include <cstring>

#include "tools/emu/controller.h"

namespace nvmux::emu {

using namespace nvmux::spec;

namespace {

constexpr CompletionStatus kInvalidField = Dnr(sct::kGeneric, sc::kInvalidField);
constexpr CompletionStatus kDataTransferError = {sct::kGeneric, sc::kDataTransferError, false};

}  // namespace

bool Controller::AdminOpcodeSupported(uint8_t opc) const {
  switch (opc) {
    case admin::kDeleteIoSq:
    case admin::kCreateIoSq:
    case admin::kGetLogPage:
    case admin::kDeleteIoCq:
    case admin::kCreateIoCq:
    case admin::kIdentify:
    case admin::kAbort:
    case admin::kSetFeatures:
    case admin::kGetFeatures:
    case admin::kAsyncEventRequest:
    case admin::kKeepAlive:
    case admin::kFormatNvm:
    case admin::kDoorbellBufferConfig:
    case admin::kNamespaceManagement:
    case admin::kNamespaceAttachment:
      return true;
  }
  return false;
}

uint64_t Controller::MaxTransferBytes() const {
  // MDTS is in units of CAP.MPSMIN (4 KiB); 0 means no limit, for which a
  // sane bound still applies so a host cannot make the device walk 16 GiB.
  return options_.mdts != 0 ? (4096ull << options_.mdts) : (64ull << 20);
}

Controller::Outcome Controller::ExecuteAdmin(const Sqe& sqe) {
  if (!AdminOpcodeSupported(sqe.opc)) return {Dnr(sct::kGeneric, sc::kInvalidOpcode)};
  if (sqe.psdt() != kPsdtPrp) return {kInvalidField};
  if (sqe.fuse() != kFuseNone) return {Retry(sct::kGeneric, sc::kInvalidField)};
  switch (sqe.opc) {
    case admin::kDeleteIoSq: return DeleteIoSq(sqe);
    case admin::kCreateIoSq: return CreateIoSq(sqe);
    case admin::kGetLogPage: return GetLogPage(sqe);
    case admin::kDeleteIoCq: return DeleteIoCq(sqe);
    case admin::kCreateIoCq: return CreateIoCq(sqe);
    case admin::kIdentify: return Identify(sqe);
    case admin::kAbort: return Abort(sqe);
    case admin::kSetFeatures: return SetFeatures(sqe);
    case admin::kGetFeatures: return GetFeatures(sqe);
    case admin::kAsyncEventRequest: return AsyncEventRequest(sqe);
    case admin::kKeepAlive:
      RestartKeepAlive();
      return {kSuccess};
    case admin::kFormatNvm: return FormatNvm(sqe);
    case admin::kDoorbellBufferConfig: return DoorbellBufferConfig(sqe);
    case admin::kNamespaceManagement: return NamespaceManagement(sqe);
    case admin::kNamespaceAttachment: return NamespaceAttachment(sqe);
  }
  return {Dnr(sct::kGeneric, sc::kInvalidOpcode)};
}

spec::CompletionStatus Controller::MapData(const Sqe& sqe, uint64_t len, bool device_writes) {
  if (sqe.psdt() == kPsdtSglMptrContiguous) {
    SglDescriptor sgl1;
    std::memcpy(static_cast<void*>(&sgl1), reinterpret_cast<const uint8_t*>(&sqe) + offsetof(Sqe, prp1),
                sizeof(sgl1));  // DPTR, bytes 24..39
    CompletionStatus st = MapSgl(dma_, sgl1, len, device_writes, host_);
    if (staging_.pending()) [[unlikely]] return kDataTransferError;  // parked: bytes to fetch first
    return st;
  }
  CompletionStatus st = MapPrps(dma_, sqe.prp1, sqe.prp2, len, page_size_, device_writes, host_);
  // Bytes in fd-less memory not fetched yet: fail without side effects;
  // ProcessSq parks the command instead of completing it.
  if (staging_.pending()) [[unlikely]] return kDataTransferError;
  return st;
}

spec::CompletionStatus Controller::TransferToHost(const Sqe& sqe, std::span<const uint8_t> data) {
  if (data.size() > MaxTransferBytes()) return kInvalidField;
  CompletionStatus st = MapData(sqe, data.size(), true);
  if (!st.ok()) return st;
  host_.CopyIn(0, data);
  return kSuccess;
}

spec::CompletionStatus Controller::TransferFromHost(const Sqe& sqe, std::span<uint8_t> data) {
  if (data.size() > MaxTransferBytes()) return kInvalidField;
  CompletionStatus st = MapData(sqe, data.size(), false);
  if (!st.ok()) return st;
  host_.CopyOut(0, data);
  return kSuccess;
}

Controller::Outcome Controller::CreateIoCq(const Sqe& sqe) {
  const uint16_t qid = static_cast<uint16_t>(sqe.cdw10 & 0xFFFF);
  const uint32_t qsize0 = sqe.cdw10 >> 16;  // 0's based
  const bool pc = (sqe.cdw11 & 1) != 0;
  const bool ien = (sqe.cdw11 & 2) != 0;
  const uint16_t iv = static_cast<uint16_t>(sqe.cdw11 >> 16);
  if (cc_.iosqes() != 6 || cc_.iocqes() != 4) return {Dnr(sct::kCommandSpecific, sc::kInvalidQueueSize)};
  if (qid == 0 || qid > features_.ncqa || cqs_[qid]) {
    return {Dnr(sct::kCommandSpecific, sc::kInvalidQueueIdentifier)};
  }
  if (qsize0 == 0 || qsize0 > cap_.mqes()) return {Dnr(sct::kCommandSpecific, sc::kInvalidQueueSize)};
  if ((sqe.prp1 & (page_size_ - 1)) != 0) return {Dnr(sct::kGeneric, sc::kPrpOffsetInvalid)};
  if (ien && iv >= msix_vectors_) return {Dnr(sct::kCommandSpecific, sc::kInvalidInterruptVector)};
  if (!pc) return {kInvalidField};
  CompletionQueue cq;
  cq.qid = qid;
  cq.size = static_cast<uint16_t>(qsize0 + 1);
  cq.base = sqe.prp1;
  cq.ien = ien;
  cq.iv = iv;
  cqs_[qid] = std::move(cq);
  ResetQueueDoorbell(2u * qid + 1);
  return {kSuccess};
}

Controller::Outcome Controller::CreateIoSq(const Sqe& sqe) {
  const uint16_t qid = static_cast<uint16_t>(sqe.cdw10 & 0xFFFF);
  const uint32_t qsize0 = sqe.cdw10 >> 16;
  const bool pc = (sqe.cdw11 & 1) != 0;
  const uint16_t cqid = static_cast<uint16_t>(sqe.cdw11 >> 16);
  if (cqid == 0 || cqid > features_.ncqa) return {Dnr(sct::kCommandSpecific, sc::kInvalidQueueIdentifier)};
  if (!cqs_[cqid]) return {Dnr(sct::kCommandSpecific, sc::kCompletionQueueInvalid)};
  if (qid == 0 || qid > features_.nsqa || sqs_[qid]) {
    return {Dnr(sct::kCommandSpecific, sc::kInvalidQueueIdentifier)};
  }
  if (qsize0 == 0 || qsize0 > cap_.mqes()) return {Dnr(sct::kCommandSpecific, sc::kInvalidQueueSize)};
  if ((sqe.prp1 & (page_size_ - 1)) != 0) return {Dnr(sct::kGeneric, sc::kPrpOffsetInvalid)};
  if (!pc) return {kInvalidField};
  SubmissionQueue sq;
  sq.qid = qid;
  sq.size = static_cast<uint16_t>(qsize0 + 1);
  sq.base = sqe.prp1;
  sq.cqid = cqid;
  sqs_[qid] = sq;
  cqs_[cqid]->sq_count++;
  ResetQueueDoorbell(2u * qid);
  return {kSuccess};
}

Controller::Outcome Controller::DeleteIoSq(const Sqe& sqe) {
  const uint16_t qid = static_cast<uint16_t>(sqe.cdw10 & 0xFFFF);
  if (qid == 0 || qid >= sqs_.size() || !sqs_[qid]) {
    return {Dnr(sct::kCommandSpecific, sc::kInvalidQueueIdentifier)};
  }
  // Commands complete when fetched, so the ones in flight are those the
  // host submitted (tail moved) that were not fetched yet, e.g. because the
  // CQ was full: each completes Aborted - SQ Deletion.
  SubmissionQueue& sq = *sqs_[qid];
  const std::optional<uint32_t> tail = ReadHostDoorbell(2u * qid);
  if (tail && *tail < sq.size) sq.tail = static_cast<uint16_t>(*tail);
  while (sq.head != sq.tail) {
    const uint8_t* entry = dma_.Translate(sq.base + uint64_t{sq.head} * sizeof(Sqe), sizeof(Sqe), false);
    if (entry == nullptr) break;  // nothing readable to abort
    Sqe pending;
    std::memcpy(&pending, entry, sizeof(pending));
    sq.head = static_cast<uint16_t>((sq.head + 1) % sq.size);
    Complete(qid, pending.cid, {Retry(sct::kGeneric, sc::kAbortedSqDeletion)});
  }
  // Completions held by a delay fault are posted now, before the SQ goes
  // (those commands already ran). Dropped commands stay lost.
  for (auto it = delayed_.begin(); it != delayed_.end();) {
    if (it->sqid != qid) {
      ++it;
      continue;
    }
    Complete(qid, it->cid, it->outcome);
    it = delayed_.erase(it);
  }
  cqs_[sq.cqid]->sq_count--;
  sqs_[qid].reset();
  ResetQueueDoorbell(2u * qid);
  return {kSuccess};
}

Controller::Outcome Controller::DeleteIoCq(const Sqe& sqe) {
  const uint16_t qid = static_cast<uint16_t>(sqe.cdw10 & 0xFFFF);
  if (qid == 0 || qid >= cqs_.size() || !cqs_[qid]) {
    return {Dnr(sct::kCommandSpecific, sc::kInvalidQueueIdentifier)};
  }
  if (cqs_[qid]->sq_count != 0) return {Retry(sct::kCommandSpecific, sc::kInvalidQueueDeletion)};
  cqs_[qid].reset();
  ResetQueueDoorbell(2u * qid + 1);
  return {kSuccess};
}

Controller::Outcome Controller::Abort(const Sqe& sqe) {
  const uint16_t sqid = static_cast<uint16_t>(sqe.cdw10 & 0xFFFF);
  const uint16_t cid = static_cast<uint16_t>(sqe.cdw10 >> 16);
  if (sqid >= sqs_.size() || !sqs_[sqid]) return {kInvalidField};
  if (sqid == 0) {
    for (auto it = aer_cids_.begin(); it != aer_cids_.end(); ++it) {
      if (*it != cid) continue;
      aer_cids_.erase(it);
      Complete(0, cid, {Retry(sct::kGeneric, sc::kAbortRequested)});
      return {kSuccess, 0};  // DW0 bit 0 clear: aborted
    }
  }
  // Everything else completed when it was fetched: nothing left to abort.
  return {kSuccess, 1};
}

Controller::Outcome Controller::AsyncEventRequest(const Sqe& sqe) {
  if (aer_cids_.size() >= static_cast<size_t>(kAerl) + 1) {
    return {Retry(sct::kCommandSpecific, sc::kAsyncEventRequestLimitExceeded)};
  }
  aer_cids_.push_back(sqe.cid);
  Outcome deferred;
  deferred.deferred = true;
  DeliverEvents();
  return deferred;
}

}  // namespace nvmux::emu
