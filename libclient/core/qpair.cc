// IoQpair: lifecycle (allocate, create/delete on the device, failure),
// the submission engine (trackers, queueing, PRPs or SGLs, injected errors) and
// completion processing. The I/O commands themselves: qpair_commands.cc.
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <tuple>
#include <utility>

#include "libclient/core/controller_state.h"
#include "libclient/core/dma_page_map.h"
#include "libclient/core/io_queue.h"
#include "libclient/core/prp.h"
#include "libclient/core/sgl.h"
#include "libclient/core/transport.h"
#include "libclient/core/qpair_state.h"
#include "nvmux/poll_group.h"
#include "libclient/shared/fd_holders.h"
#include "libclient/shared/shared_admin_queue.h"
#include "shm/group.h"
#include "shm/base/clock.h"
#include "shm/base/format.h"
#include "shm/base/log.h"

namespace nvmux {
namespace {

constexpr uint32_t kPage = 4096;
constexpr uint32_t kPrpEntriesPerPage = kPage / 8;
constexpr uint16_t kAbortedStatus = static_cast<uint16_t>(kAbortedSqDeletion << 1);
constexpr uint16_t kAbortRequestedStatus = static_cast<uint16_t>(spec::sc::kAbortRequested << 1);
constexpr uint16_t kInvalidFieldStatus = static_cast<uint16_t>(spec::sc::kInvalidField << 1);
constexpr size_t kMaxSegments = 512;
constexpr size_t kMaxInjections = 16;

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

spec::Cqe StatusCqe(uint16_t status) {
  spec::Cqe c{};
  c.status = status;
  return c;
}

// Each I/O queue id's share of the CMB: its size over the ids the
// controller granted (a group's table holds fewer), in 4 KiB units.
uint64_t CmbShare(const ControllerState& cs, const Transport::CmbWindow& cmb) {
  size_t ids = cs.qid_used.size() - 1;
  if (cs.shared != nullptr) ids = std::min<size_t>(ids, kMaxSharedQids - 1);
  return ids == 0 ? 0 : cmb.bytes / ids / kPage * kPage;
}

}  // namespace

// ---- allocation and lifecycle ----

Result<std::unique_ptr<IoQpair>> Controller::AllocIoQpair(const IoQpairOptions& options) {
  ControllerState& cs = *s_;
  IoQpairOptions o = options;
  uint32_t max_entries = cs.data.cap.mqes() + 1u;
  // The controller's default is clamped to CAP.MQES + 1 (as ControllerOptions
  // says): SPDK's TCP target offers 128 entries, below the default 256.
  if (o.io_queue_size == 0) o.io_queue_size = std::min(cs.options.io_queue_size, max_entries);
  if (o.io_queue_size < 2 || o.io_queue_size > max_entries)
    return Fail(EINVAL, "I/O queue size " + std::to_string(o.io_queue_size) + " is out of range (2.." +
                            std::to_string(max_entries) + ", CAP.MQES + 1)");
  if (o.io_queue_requests == 0) o.io_queue_requests = std::max(cs.options.io_queue_requests, o.io_queue_size);
  if (o.io_queue_requests < o.io_queue_size - 1)
    return Fail(EINVAL, "I/O queue requests " + std::to_string(o.io_queue_requests) +
                            " must be at least the queue size - 1 (" + std::to_string(o.io_queue_size - 1) + ")");
  if (o.qprio > 3) return Fail(EINVAL, "queue priority " + std::to_string(o.qprio) + " is out of range (0..3)");
  if (cs.failed) return Fail(ENXIO, "controller " + cs.trid.ToString() + " has failed");

  size_t sq_bytes = RoundUp(size_t{o.io_queue_size} * sizeof(spec::Sqe), kPage);
  size_t cq_bytes = RoundUp(size_t{o.io_queue_size} * sizeof(spec::Cqe), kPage);
  auto check_user = [&](const char* which, void* buffer, size_t size, size_t entry) -> Status {
    if (buffer == nullptr) return Ok();
    size_t need = size_t{o.io_queue_size} * entry;
    if (reinterpret_cast<uintptr_t>(buffer) % kPage != 0)
      return Fail(EINVAL, std::string(which) + " buffer " + Hex(reinterpret_cast<uintptr_t>(buffer)) +
                              " is not 4 KiB-aligned");
    if (size < need)
      return Fail(EINVAL, std::string(which) + " buffer of " + std::to_string(size) + " bytes is too small: " +
                              std::to_string(o.io_queue_size) + " entries need " + std::to_string(need));
    if (!cs.env.IsDmaMemory(buffer, need))
      return Fail(EINVAL, std::string(which) + " buffer " + Hex(reinterpret_cast<uintptr_t>(buffer)) +
                              " is not DMA memory (allocate it with Env::AllocDma)");
    return Ok();
  };
  NVMUX_TRY(check_user("SQ", o.sq_buffer, o.sq_buffer_size, sizeof(spec::Sqe)));
  NVMUX_TRY(check_user("CQ", o.cq_buffer, o.cq_buffer_size, sizeof(spec::Cqe)));

  auto q = std::make_unique<QpairState>();
  q->cs = &cs;
  q->ctrlr = this;
  q->options = o;
  q->spin = SpinBudget(o.hybrid_spin_us);
  q->entries = o.io_queue_size;
  // SQs in the Controller Memory Buffer: queue id q owns the q-th equal
  // share (CmbShare), the same in every process of a group, so queue ids
  // (shared, reaped) are the whole allocator. Decided before the id.
  std::optional<Transport::CmbWindow> cmb;
  uint64_t share = 0;
  if (cs.options.use_cmb_sqs && o.sq_buffer == nullptr) {
    cmb = cs.transport->Cmb();
    share = cmb ? CmbShare(cs, *cmb) : 0;
    if (!cmb || share < sq_bytes) {
      NVMUX_LOG(kWarning, "controller %s: use_cmb_sqs: %s; this queue's SQ is in host memory",
                cs.trid.ToString().c_str(),
                !cmb ? "no CMB that can hold SQs is enabled (in a group: nvmuxd --use-cmb-sqs)"
                     : ("its share of the CMB (" + std::to_string(share) + " bytes per queue id) is smaller than the " +
                        std::to_string(sq_bytes) + "-byte SQ (use a smaller io_queue_size)").c_str());
      cmb.reset();
    }
  }
  // The driver's ring memory: whichever of SQ and CQ the caller did not supply.
  size_t own = (o.sq_buffer || cmb ? 0 : sq_bytes) + (o.cq_buffer ? 0 : cq_bytes);
  if (own > 0) {
    auto rings = cs.env.AllocDma(own, kPage, "io-rings");
    if (!rings) return rings.error();
    q->rings = std::move(*rings);
  }
  uint32_t trackers = q->entries - 1;
  auto prps = cs.env.AllocDma(size_t{trackers} * kPage, kPage, "io-prp-lists");
  if (!prps) return prps.error();
  q->prp_pages = std::move(*prps);
  q->requests.reset(new Request[o.io_queue_requests]);
  for (uint32_t i = o.io_queue_requests; i-- > 0;) q->FreeRequest(&q->requests[i]);
  q->trackers.assign(trackers, nullptr);
  for (uint32_t cid = trackers; cid-- > 0;) q->free_cids.push_back(static_cast<uint16_t>(cid));
  q->injections.reserve(kMaxInjections);

  {
    std::lock_guard<std::recursive_mutex> guard(cs.admin_mutex);
    if (cs.shared != nullptr) {
      // The group's allocator: ids are recorded against this process's slot
      // so the reaper can delete the queues if it dies (marked first: such a
      // process is never reaped without deleting them, shm/process_table.h).
      cs.env.group().processes().MarkDeviceUser();
      auto lock = cs.shared_admin->lock().Lock();
      if (!lock) return lock.error();
      size_t limit = std::min<size_t>(cs.qid_used.size(), kMaxSharedQids);
      for (size_t id = 1; id < limit; ++id) {
        SharedQid& sq = cs.shared->qids[id];
        if (sq.state == static_cast<uint32_t>(QidState::kFree)) {
          sq = SharedQid{static_cast<uint32_t>(QidState::kInUse), cs.env.group().self_slot(),
                         cs.env.group().processes().self_generation(), 0, 0, 0};
          q->qid = static_cast<uint16_t>(id);
          break;
        }
      }
    } else {
      for (size_t id = 1; id < cs.qid_used.size(); ++id) {
        if (!cs.qid_used[id]) {
          cs.qid_used[id] = true;
          q->qid = static_cast<uint16_t>(id);
          break;
        }
      }
    }
    if (q->qid == 0)
      return Fail(ENOSPC, "no free I/O queue id: the controller granted " + std::to_string(cs.qid_used.size() - 1) +
                              " I/O queues and all are in use (a group's nvmuxd asks for at most --io-queues)");
    cs.qpairs.push_back(q.get());
  }
  auto* base = static_cast<uint8_t*>(q->rings.data());
  auto* sq = o.sq_buffer ? static_cast<spec::Sqe*>(o.sq_buffer) : reinterpret_cast<spec::Sqe*>(base);
  auto* cq = o.cq_buffer ? static_cast<spec::Cqe*>(o.cq_buffer)
                         : reinterpret_cast<spec::Cqe*>(base + (o.sq_buffer || cmb ? 0 : sq_bytes));
  if (cmb) {
    uint64_t at = uint64_t{q->qid - 1u} * share;
    sq = reinterpret_cast<spec::Sqe*>(cmb->cpu + at);
    q->sq_cmb_address = cmb->controller_address + at;
  }
  q->ring = std::make_unique<QueueRing>(sq, cq, q->entries, cs.doorbells(q->qid));
  QpairState* raw = q.get();
  std::unique_ptr<IoQpair> handle(new IoQpair(std::move(q)));
  raw->handle = handle.get();
  // Before anything reaches the device: on failure the handle's destruction
  // frees the queue id and the memory, nothing is half-created.
  if (o.mode != CompletionMode::kPoll) NVMUX_TRY(raw->ObtainInterrupt());
  if (!o.create_only) NVMUX_TRY(handle->Connect());
  return handle;
}

IoQpair::IoQpair(std::unique_ptr<QpairState> state) : s_(std::move(state)) {}

IoQpair::~IoQpair() {
  if (s_->poll_group != nullptr) (void)s_->poll_group->Remove(*this);  // destroying a member is safe
  if (!s_->ctrlr_gone) {
    std::lock_guard<std::recursive_mutex> guard(s_->cs->admin_mutex);
    Disconnect();
    // The next owner of this queue id (maybe another process, in event
    // mode) finds its vector unmasked.
    if (s_->vector_masked) s_->SetVectorMasked(false);
    if (s_->cs->shared != nullptr) {
      // Withdrawn before the queue id is freed and the fd closed.
      if (s_->irq_fd.valid())
        ForgetVectorHolder(*s_->cs->shared, s_->qid, s_->cs->env.group().self_slot(),
                           s_->cs->env.group().processes().self_generation());
      auto lock = s_->cs->shared_admin->lock().Lock();
      if (lock) s_->cs->shared->qids[s_->qid] = SharedQid{};
    } else {
      s_->cs->qid_used[s_->qid] = false;
    }
    std::erase(s_->cs->qpairs, s_.get());
  } else {
    s_->AbortOutstanding();
  }
}

QpairState::~QpairState() = default;

Status QpairState::CreateOnDevice() {
  // A ring is one physically contiguous range for the device (no PRP list:
  // CDW11.PC = 1). With IOVA = PA (uio_pci_generic) that holds within a 2 MiB
  // hugepage only; Env::AllocDma keeps buffers up to 2 MiB inside one, so
  // only a larger ring, or one the caller placed across pages, can break it.
  for (auto [ring_memory, bytes, which] :
       {std::tuple<const void*, uint64_t, const char*>{sq_cmb_address ? nullptr : ring->sq_memory(),
                                                       uint64_t{entries} * sizeof(spec::Sqe), "SQ"},
        std::tuple<const void*, uint64_t, const char*>{ring->cq_memory(), uint64_t{entries} * sizeof(spec::Cqe), "CQ"}})
    if (ring_memory != nullptr && DmaPageMap::ContiguousBytes(ring_memory, bytes) < bytes)
      return Fail(EINVAL, std::string("I/O queue ") + std::to_string(qid) + ": its " + which + " of " +
                              std::to_string(bytes) + " bytes is not physically contiguous (IOVA = physical "
                              "addresses, uio_pci_generic): use at most " +
                              std::to_string(DmaPageMap::kPageBytes / sizeof(spec::Sqe)) +
                              " entries (io_queue_size), or vfio-pci with an IOMMU");
  std::memset(static_cast<void*>(ring->cq_memory()), 0, size_t{entries} * sizeof(spec::Cqe));
  ring->Reset();
  // Shadow doorbells may have been switched on or off by a controller reset
  // since the ring was made.
  Doorbells db = cs->doorbells(qid);
  // The queue id may have been used before (by a process that died, or a
  // deleted queue pair): its shadow and EventIdx slots still hold the old
  // queue's tail and head. A device need not clear them on Create (QEMU's
  // hw/nvme does not), and a stale EventIdx ahead of the new tail would
  // keep the "needs event" rule from ever ringing the real doorbell: the
  // queue would stall at its first command. Nothing uses the slots while
  // the queue is off the device, so they start at 0 here.
  if (db.shadow()) {
    for (uint32_t* slot : {db.shadow_sq_tail, db.shadow_cq_head, db.eventidx_sq, db.eventidx_cq})
      std::atomic_ref<uint32_t>(*slot).store(0, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  ring->SetDoorbells(db);
  if (cs->transport->ConnectsIoQueues()) {
    // Fabrics: the queue is this process's own connection (Fabrics Connect
    // with the queue id), not admin commands. Nothing of it outlives the
    // connection, which closes with the process: the reaper has nothing to
    // delete (on_device stays 0) and the rings are ordinary memory.
    Status st = cs->transport->ConnectIoQueue(qid, entries, ring->sq_memory(), ring->cq_memory());
    if (!st) return Fail(st.error().code, "connecting I/O queue " + std::to_string(qid) + ": " + st.error().message);
    state = QpairLifecycle::kConnected;
    connected_before_reset = true;
    return Ok();
  }
  // An SQ in the CMB is named by its controller address (no IOVA: the
  // controller reads it from its own memory).
  uint64_t sq_iova = sq_cmb_address != 0 ? sq_cmb_address : DmaPageMap::Iova(ring->sq_memory());
  uint64_t cq_iova = DmaPageMap::Iova(ring->cq_memory());
  IoQueueCommands c = CreateIoQueueCommands(qid, entries, sq_iova, cq_iova);
  if (irq_fd.valid()) {
    // IEN with vector = qid; counts a previous owner of the vector left are dropped.
    c.create_cq.cdw11 |= 2u | (static_cast<uint32_t>(qid) << 16);
    uint64_t stale = 0;
    (void)!::read(irq_fd.get(), &stale, sizeof(stale));
  }
  // Intent before the commands: if this process dies from here on, the
  // reaper deletes whatever part of the queue pair reached the device.
  if (cs->shared != nullptr) {
    // The rings too: the reaper keeps them out of reuse until the device
    // confirmed the queue's deletion.
    cs->shared->qids[qid].sq_iova = sq_cmb_address != 0 ? 0 : GroupAddress(ring->sq_memory());
    cs->shared->qids[qid].cq_iova = GroupAddress(ring->cq_memory());
    cs->shared->qids[qid].on_device = 1;
  }
  c.create_sq.cdw11 |= static_cast<uint32_t>(options.qprio) << 1;
  auto cq = ctrlr->SyncAdmin(c.create_cq);
  if (!cq && cs->shared != nullptr) cs->shared->qids[qid].on_device = 0;
  if (!cq) return Fail(cq.error().code, "creating I/O completion queue " + std::to_string(qid) + ": " + cq.error().message);
  auto sqr = ctrlr->SyncAdmin(c.create_sq);
  if (!sqr) {
    (void)ctrlr->SyncAdmin(DeleteIoQueueCommands(qid).delete_cq);
    if (cs->shared != nullptr) cs->shared->qids[qid].on_device = 0;
    return Fail(sqr.error().code, "creating I/O submission queue " + std::to_string(qid) + ": " + sqr.error().message);
  }
  state = QpairLifecycle::kConnected;
  connected_before_reset = true;
  if (cs->shared != nullptr) cs->shared->qids[qid].on_device = 1;
  return Ok();
}

void QpairState::DeleteOnDevice() {
  if (state != QpairLifecycle::kConnected && state != QpairLifecycle::kFailed) return;
  if (cs->transport->ConnectsIoQueues()) {
    // (A failed controller answers nothing: close without Disconnect.)
    cs->transport->DisconnectIoQueue(qid, !cs->failed && state == QpairLifecycle::kConnected);
  } else if (!cs->failed) {
    IoQueueDeleteCommands d = DeleteIoQueueCommands(qid);
    auto sq = ctrlr->SyncAdmin(d.delete_sq);
    if (!sq) NVMUX_LOG(kWarning, "deleting I/O submission queue %u: %s", qid, sq.error().message.c_str());
    auto cq = ctrlr->SyncAdmin(d.delete_cq);
    if (!cq) NVMUX_LOG(kWarning, "deleting I/O completion queue %u: %s", qid, cq.error().message.c_str());
  }
  state = QpairLifecycle::kDisconnected;
  connected_before_reset = false;
  if (cs->shared != nullptr) cs->shared->qids[qid].on_device = 0;
}

void QpairState::AbortOutstanding() {
  spec::Cqe aborted = StatusCqe(kAbortedStatus);
  for (size_t cid = 0; cid < trackers.size(); ++cid) {
    if (Request* r = trackers[cid]) {
      trackers[cid] = nullptr;
      free_cids.push_back(static_cast<uint16_t>(cid));
      aborted.cid = static_cast<uint16_t>(cid);
      Complete(r, aborted);
    }
  }
  while (Request* r = queued.Pop()) {
    if (r->fused_partner) Complete(r->fused_partner, aborted);
    Complete(r, aborted);
  }
  while (Request* r = held.Pop()) Complete(r, aborted);
  DeliverFinished();
}

uint16_t IoQpair::id() const { return s_->qid; }
Controller& IoQpair::controller() const { return *s_->ctrlr; }
bool IoQpair::failed() const { return s_->state == QpairLifecycle::kFailed || s_->cs->failed; }
bool IoQpair::connected() const { return s_->state == QpairLifecycle::kConnected; }
bool IoQpair::sq_in_cmb() const { return s_->sq_cmb_address != 0; }
uint64_t IoQpair::sq_cmb_address() const { return s_->sq_cmb_address; }
uint32_t IoQpair::outstanding() const { return s_->outstanding; }

const QpairStatistics& IoQpair::statistics() const {
  s_->stats.sq_doorbell_writes = s_->ring->sq_doorbell_writes();
  s_->stats.cq_doorbell_writes = s_->ring->cq_doorbell_writes();
  s_->stats.shadow_doorbell_updates = s_->ring->shadow_doorbell_updates();
  if (const QueueHook* hook = s_->ring->doorbells().hook) {
    const EngineCounters e = hook->counters();
    s_->stats.tcp_pdus_sent = e.pdus_sent;
    s_->stats.tcp_pdus_received = e.pdus_received;
    s_->stats.tcp_in_capsule_writes = e.in_capsule_writes;
    s_->stats.tcp_r2ts = e.r2ts;
    s_->stats.tcp_h2c_data = e.h2c_data;
    s_->stats.tcp_c2h_data = e.c2h_data;
    s_->stats.tcp_send_calls = e.send_calls;
    s_->stats.tcp_header_digest = e.header_digest;
    s_->stats.tcp_data_digest = e.data_digest;
  }
  return s_->stats;
}

Status IoQpair::Connect() {
  if (s_->state == QpairLifecycle::kConnected) return Fail(EALREADY, "queue pair " + std::to_string(s_->qid) + " is already connected");
  if (s_->cs->failed) return Fail(ENXIO, "controller " + s_->cs->trid.ToString() + " has failed");
  std::lock_guard<std::recursive_mutex> guard(s_->cs->admin_mutex);
  return s_->CreateOnDevice();
}

void IoQpair::Disconnect() {
  s_->AbortOutstanding();
  std::lock_guard<std::recursive_mutex> guard(s_->cs->admin_mutex);
  s_->DeleteOnDevice();
}

Status IoQpair::Reconnect() {
  if (s_->state == QpairLifecycle::kConnected || s_->state == QpairLifecycle::kFailed) Disconnect();
  return Connect();
}

// ---- requests ----

Request* QpairState::AllocRequest() {
  Request* r = free_requests;
  if (r == nullptr) return nullptr;
  free_requests = r->next;
  free_request_count--;
  return r;
}

void QpairState::FreeRequest(Request* r) {
  r->parent = nullptr;
  r->fused_partner = nullptr;
  r->has_error = false;
  r->fused_first = false;
  r->next = free_requests;
  free_requests = r;
  free_request_count++;
}

bool QpairState::Injected(Request* r) {
  for (ErrorInjection& e : injections) {
    if (e.opcode != r->cmd.opc || e.count == 0) continue;
    e.count--;
    r->cpl = StatusCqe(static_cast<uint16_t>((uint32_t{e.sct} << 9) | (uint32_t{e.sc} << 1)));
    // The write of a compare-and-write never goes alone: it shares the
    // compare's fate, as a device aborts it (0/09) when the compare fails.
    Request* w = std::exchange(r->fused_partner, nullptr);
    if (w != nullptr) w->cpl = StatusCqe(static_cast<uint16_t>(spec::sc::kAbortedFailedFused << 1));
    if (e.do_not_submit) {
      r->hold_until_ns = e.timeout_us == 0 ? INT64_MAX : MonotonicNanos() + static_cast<int64_t>(e.timeout_us) * 1000;
      held.Push(r);
      if (w != nullptr) {
        w->hold_until_ns = r->hold_until_ns;
        held.Push(w);
      }
    } else {
      finished.Push(r);
      if (w != nullptr) finished.Push(w);
    }
    return true;
  }
  return false;
}

namespace {

// Appends [va, va + bytes) as IOVA-contiguous segments: one with IOVA = VA;
// split where the physical pages do not follow each other with IOVA = PA.
Status AppendContiguous(const void* va, uint64_t bytes, IovaSegment* out, size_t& n) {
  const uint8_t* p = static_cast<const uint8_t*>(va);
  while (bytes > 0) {
    if (n == kMaxSegments)
      return Fail(EINVAL, "payload needs more than " + std::to_string(kMaxSegments) + " scatter-gather elements");
    uint64_t run = DmaPageMap::ContiguousBytes(p, bytes);
    out[n++] = IovaSegment{DmaPageMap::Iova(p), run};
    p += run;
    bytes -= run;
  }
  return Ok();
}

// Collects the caller's scatter-gather elements for `bytes` of payload.
Result<size_t> GatherSgl(const Request& r, const DmaPageMap& pages, IovaSegment* out) {
  void* arg = r.parent ? r.parent->arg : r.arg;
  r.reset_sgl(arg, r.payload_offset);
  uint64_t left = r.data_bytes;
  size_t n = 0;
  while (left > 0) {
    if (n == kMaxSegments)
      return Fail(EINVAL, "payload needs more than " + std::to_string(kMaxSegments) + " scatter-gather elements");
    Sge e = r.next_sge(arg);
    if (e.address == nullptr || e.length == 0)
      return Fail(EINVAL, "scatter-gather list ended " + std::to_string(left) + " bytes short of the payload");
    uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(e.length, left));
    if (!pages.Contains(e.address, len))
      return Fail(EINVAL, "scatter-gather element is not DMA memory (allocate it with Env::AllocDma)");
    NVMUX_TRY(AppendContiguous(e.address, len, out, n));
    left -= len;
  }
  return n;
}

// The caller's elements as an SGL in the tracker's page. SGLS bits 1:0 =
// 10b: the controller wants dword-aligned addresses and lengths (base spec,
// Identify Controller SGLS).
Result<Sgl> BuildDataSgl(std::span<const IovaSegment> segs, uint8_t* page, uint32_t sgls) {
  if ((sgls & 0x3) == 0x2) {
    for (size_t i = 0; i < segs.size(); ++i)
      if (segs[i].iova % 4 != 0 || segs[i].length % 4 != 0)
        return Fail(EINVAL, "scatter-gather element " + std::to_string(i) + " is not dword aligned, which the "
                                "controller's SGL support requires (SGLS bits 1:0 = 10b)");
  }
  SglList list{std::span<spec::SglDescriptor>(reinterpret_cast<spec::SglDescriptor*>(page), kSglDescriptorsPerPage),
               DmaPageMap::Iova(page), kSglDescriptorsPerPage};
  return BuildSgl(segs, list);
}

// Builds the data pointer in a free tracker and pushes the command (and a
// fused partner right behind it). REQUIRES: enough free trackers.
void IssueToDevice(QpairState& q, Request* r) {
  uint16_t cid = q.free_cids.back();
  uint64_t first_page_left = 0;
  const bool sgl_only = q.cs->sgl_only;
  if (r->data_bytes > 0 && r->next_sge == nullptr && !sgl_only &&
      r->data_bytes <= (first_page_left = kPage - (DmaPageMap::Iova(r->data) & (kPage - 1))) + kPage) {
    // The common case, without a list: one or two pages go in PRP1/PRP2
    // (dword alignment was checked at submission).
    // (The second page by its own address: with IOVA = PA it may lie in
    // another hugepage.)
    r->cmd.prp1 = DmaPageMap::Iova(r->data);
    r->cmd.prp2 =
        r->data_bytes > first_page_left ? DmaPageMap::Iova(static_cast<const uint8_t*>(r->data) + first_page_left) : 0;
  } else if (r->data_bytes > 0) {
    Result<Prps> prps = Fail(EINVAL, "");
    PrpList list{std::span<uint64_t>(reinterpret_cast<uint64_t*>(q.PrpPage(cid)), kPrpEntriesPerPage),
                 DmaPageMap::Iova(q.PrpPage(cid))};
    bool sgl = false;
    if (sgl_only && r->next_sge == nullptr) {
      IovaSegment seg{DmaPageMap::Iova(r->data), r->data_bytes};
      Result<Sgl> built = BuildSgl(std::span<const IovaSegment>(&seg, 1), SglList{});
      if (built) {
        SetDataSgl(r->cmd, *built);
        sgl = true;
      } else {
        prps = built.error();
      }
    } else if (r->next_sge == nullptr) {
      IovaSegment segs[kMaxSegments];
      size_t n = 0;
      Status split = AppendContiguous(r->data, r->data_bytes, segs, n);
      prps = split ? BuildPrps(std::span<const IovaSegment>(segs, n), list) : Result<Prps>(split.error());
    } else {
      IovaSegment segs[kMaxSegments];
      auto n = GatherSgl(*r, q.cs->env.dma_pages(), segs);
      prps = n ? (sgl_only ? Result<Prps>(Fail(EINVAL, "SGL only")) : BuildPrps(std::span<const IovaSegment>(segs, *n), list))
               : Result<Prps>(n.error());
      if (n && !prps && ((q.cs->data.ctrlr.sgls & 0x3) != 0 || sgl_only)) {
        // PRPs cannot describe elements that start or end inside a page;
        // an SGL can. Same tracker page, as 256 descriptors.
        Result<Sgl> built =
            BuildDataSgl(std::span<const IovaSegment>(segs, *n), q.PrpPage(cid), q.cs->data.ctrlr.sgls);
        if (built) {
          SetDataSgl(r->cmd, *built);
          sgl = true;
        } else {
          prps = built.error();
        }
      }
    }
    if (!sgl && !prps) {
      NVMUX_LOG(kWarning, "queue pair %u: cannot describe the payload: %s", q.qid, prps.error().message.c_str());
      r->cpl = StatusCqe(kInvalidFieldStatus);
      q.finished.Push(r);
      if (r->fused_partner) {
        r->fused_partner->cpl = StatusCqe(kInvalidFieldStatus);
        q.finished.Push(r->fused_partner);
      }
      return;
    }
    if (!sgl) {
      r->cmd.prp1 = prps->prp1;
      r->cmd.prp2 = prps->prp2;
    }
  }
  if (r->md != nullptr) r->cmd.mptr = DmaPageMap::Iova(r->md);
  q.free_cids.pop_back();
  r->cmd.cid = cid;
  q.trackers[cid] = r;
  q.StartTimeout(r);
  (void)q.ring->Push(r->cmd);  // cannot be full: trackers < entries
  q.stats.submitted++;
  if (Request* w = r->fused_partner) {
    r->fused_partner = nullptr;
    w->fused_partner = nullptr;
    // The write goes right behind the compare (fused commands are adjacent).
    uint16_t wcid = q.free_cids.back();
    if (w->data_bytes > 0) {
      IovaSegment seg{DmaPageMap::Iova(w->data), w->data_bytes};
      PrpList list{std::span<uint64_t>(reinterpret_cast<uint64_t*>(q.PrpPage(wcid)), kPrpEntriesPerPage),
                   DmaPageMap::Iova(q.PrpPage(wcid))};
      if (sgl_only) {
        if (auto built = BuildSgl(std::span<const IovaSegment>(&seg, 1), SglList{})) SetDataSgl(w->cmd, *built);
      } else {
        auto prps = BuildPrps(std::span<const IovaSegment>(&seg, 1), list);
        w->cmd.prp1 = prps ? prps->prp1 : 0;
        w->cmd.prp2 = prps ? prps->prp2 : 0;
      }
    }
    q.free_cids.pop_back();
    w->cmd.cid = wcid;
    q.trackers[wcid] = w;
    q.StartTimeout(w);
    (void)q.ring->Push(w->cmd);
    q.stats.submitted++;
  }
}

}  // namespace

void QpairState::Submit(Request* r) {
  if (!injections.empty() && Injected(r)) return;
  // Behind requests already waiting, or when no tracker is free: wait (in
  // order). ProcessCompletions issues waiting requests as trackers free up.
  if (free_cids.size() < (r->fused_partner ? 2u : 1u) || !queued.empty()) {
    queued.Push(r);
    stats.queued++;
    return;
  }
  IssueToDevice(*this, r);
}

void QpairState::Complete(Request* r, const spec::Cqe& cpl) {
  if (Request* p = r->parent) {
    // The first error wins, except that a failed compare of a fused pair
    // explains its write's abort.
    if (IsError(cpl) && (!p->has_error || r->fused_first)) {
      p->has_error = true;
      p->cpl = cpl;
    } else if (!p->has_error && p->children_left == 1) {
      p->cpl = cpl;
    }
    FreeRequest(r);
    if (--p->children_left > 0) return;
    CompletionFn fn = p->fn;
    void* arg = p->arg;
    spec::Cqe result = p->cpl;
    FreeRequest(p);
    outstanding--;
    if (fn) fn(arg, result);
    return;
  }
  CompletionFn fn = r->fn;
  void* arg = r->arg;
  FreeRequest(r);
  outstanding--;
  if (fn) fn(arg, cpl);
}

void QpairState::DeliverFinished() {
  while (Request* r = finished.Pop()) Complete(r, r->cpl);
}

Result<uint32_t> IoQpair::ProcessCompletions(uint32_t max) {
  QpairState& q = *s_;
  q.stats.polls++;
  if (q.state != QpairLifecycle::kConnected || q.cs->failed.load(std::memory_order_relaxed)) {
    if (q.state == QpairLifecycle::kConnected) q.state = QpairLifecycle::kFailed;
    q.AbortOutstanding();
    return Fail(ENXIO, "queue pair " + std::to_string(q.qid) + " of " + q.cs->trid.ToString() +
                           (q.cs->failed ? ": the controller has failed" : " is not connected"));
  }
  // The idle poll (most polls at low queue depth): with nothing at the CQ
  // head, nothing to ring, to deliver, to issue or to time out, the full
  // path below would change nothing but the counters. About a fifth of its
  // instructions (BENCHMARKS.md, QD1): at QD1 the poll that finds the
  // completion follows an idle one, so this shortens the detection delay.
  if (q.ring->Idle() && q.finished.empty() && q.held.empty() && q.queued.empty() && !q.TimeoutsDue()) [[likely]] {
    q.stats.idle_polls++;
    if (q.outstanding > 0 && ++q.idle_since_check >= 4096) [[unlikely]] {
      q.idle_since_check = 0;
      if (!q.cs->CheckHealth(MonotonicNanos())) return ProcessCompletions(max);
    }
    return 0u;
  }
  uint32_t n = 0;
  while (max == 0 || n < max) {
    std::optional<spec::Cqe> c = q.ring->Pop();
    if (!c) break;
    if (c->cid >= q.trackers.size() || q.trackers[c->cid] == nullptr) {
      NVMUX_LOG(kError, "queue pair %u: completion for command id %u, which is not outstanding", q.qid, c->cid);
      continue;
    }
    Request* r = q.trackers[c->cid];
    q.trackers[c->cid] = nullptr;
    q.free_cids.push_back(c->cid);
    ++n;
    q.Complete(r, *c);
  }
  if (n != 0 && q.vector_control != nullptr && !q.vector_masked && q.options.mode == CompletionMode::kHybrid)
    q.SetVectorMasked(true);  // spinning again: no interrupts wanted (qpair_events.cc)
  // Commands the device may still complete: the command ids in use.
  q.ring->RingCq(static_cast<uint32_t>(q.trackers.size() - q.free_cids.size()));
  if (!q.finished.empty()) q.DeliverFinished();
  if (!q.held.empty()) {
    int64_t now = MonotonicNanos();
    RequestList still;
    while (Request* r = q.held.Pop()) {
      if (r->hold_until_ns <= now)
        q.finished.Push(r);
      else
        still.Push(r);
    }
    q.held = still;
    q.DeliverFinished();
  }
  // Waiting requests go to the device in order, as far as trackers allow
  // (not through Submit, which would queue them behind each other again).
  while (!q.queued.empty() && q.free_cids.size() >= (q.queued.head->fused_partner ? 2u : 1u))
    IssueToDevice(q, q.queued.Pop());
  q.ring->RingSq();
  if (q.TimeoutsDue()) [[unlikely]] q.PollTimeouts();  // qpair_timeout.cc
  q.stats.completed += n;
  if (n == 0) {
    q.stats.idle_polls++;
    // A device that stopped answering: look at the controller now and then.
    if (q.outstanding > 0 && ++q.idle_since_check >= 4096) {
      q.idle_since_check = 0;
      if (!q.cs->CheckHealth(MonotonicNanos())) return ProcessCompletions(max);
    }
  } else {
    q.idle_since_check = 0;
  }
  return n;
}

Status IoQpair::AddErrorInjection(const ErrorInjection& injection) {
  for (ErrorInjection& e : s_->injections) {
    if (e.opcode == injection.opcode) {
      e = injection;
      return Ok();
    }
  }
  if (s_->injections.size() >= kMaxInjections)
    return Fail(ENOMEM, "at most " + std::to_string(kMaxInjections) + " error injections per queue pair");
  s_->injections.push_back(injection);
  return Ok();
}

void IoQpair::RemoveErrorInjection(uint8_t opcode) {
  std::erase_if(s_->injections, [opcode](const ErrorInjection& e) { return e.opcode == opcode; });
}

Status IoQpair::Abort(void* cb_arg) {
  QpairState& q = *s_;
  for (size_t cid = 0; cid < q.trackers.size(); ++cid) {
    Request* r = q.trackers[cid];
    if (r && (r->parent ? r->parent->arg : r->arg) == cb_arg) return q.ctrlr->AbortCommand(q.qid, static_cast<uint16_t>(cid));
  }
  RequestList keep;
  bool found = false;
  while (Request* r = q.queued.Pop()) {
    if (!found && (r->parent ? r->parent->arg : r->arg) == cb_arg) {
      found = true;
      r->cpl = StatusCqe(kAbortRequestedStatus);
      q.finished.Push(r);
      if (Request* w = r->fused_partner) {  // the write of a compare-and-write goes with its compare
        r->fused_partner = nullptr;
        w->cpl = r->cpl;
        q.finished.Push(w);
      }
    } else {
      keep.Push(r);
    }
  }
  q.queued = keep;
  // Requests an injection holds back ("do not submit") are outstanding too.
  // A held compare-and-write is two requests of one parent: both go.
  RequestList still;
  Request* held_parent = nullptr;
  while (Request* r = q.held.Pop()) {
    bool sibling = held_parent != nullptr && r->parent == held_parent;
    if (sibling || (!found && (r->parent ? r->parent->arg : r->arg) == cb_arg)) {
      if (!found) held_parent = r->parent;
      found = true;
      r->cpl = StatusCqe(kAbortRequestedStatus);
      q.finished.Push(r);
    } else {
      still.Push(r);
    }
  }
  q.held = still;
  if (!found) return Fail(ENOENT, "no outstanding request with that callback argument on queue pair " + std::to_string(q.qid));
  return Ok();
}

}  // namespace nvmux
