// Controller: attach (the init state machine driven to ready), accessors,
// shutdown. Admin submission and polling: controller_admin.cc.
#include "nvmux/controller.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>

#include "libclient/core/controller_attach.h"
#include "libclient/core/controller_shutdown.h"
#include "libclient/core/controller_state.h"
#include "libclient/core/dma_page_map.h"
#include "libclient/core/group_role.h"
#include "libclient/core/io_queue.h"
#include "libclient/core/qpair_state.h"
#include "libclient/shared/shared_admin_queue.h"
#include "libclient/shared/shared_registry.h"
#include "shm/group.h"
#include "nvmux/spec/features.h"
#include "nvmux/spec/log_page.h"
#include "shm/base/clock.h"
#include "shm/base/format.h"
#include "shm/base/log.h"
#include "shm/base/scope_guard.h"
#include "shm/base/test_point.h"

namespace nvmux {
namespace {

constexpr uint32_t kPage = 4096;
// Trackers hold one PRP list page (512 entries): transfers up to 1 MiB
// always fit, whatever the buffer's offset in its first page.
constexpr uint32_t kMaxTransferCap = 1u << 20;

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

}  // namespace

void ControllerState::Fail(const std::string& why) {
  if (failed.exchange(true)) return;
  NVMUX_LOG(kError, "controller %s failed: %s", trid.ToString().c_str(), why.c_str());
}

bool ControllerState::CheckHealth(int64_t now_ns) {
  if (failed.load(std::memory_order_relaxed)) return false;
  int64_t due = next_health_check_ns.load(std::memory_order_relaxed);
  if (now_ns < due || !next_health_check_ns.compare_exchange_strong(due, now_ns + 10'000'000)) return true;
  if (transport->Lost()) {
    removed = true;
    Fail("the connection to the device is gone (surprise removal or server exit)");
    // The primary tells the group at once: secondaries' I/O fails now, not
    // when the entry is retired (under vfio the kernel's removal waits for
    // every process of the group to close the device).
    if (shared != nullptr && owns_device) {
      std::atomic_ref<uint32_t>(shared->removed).store(1, std::memory_order_release);
      std::atomic_ref<uint32_t>(shared->failed).store(1, std::memory_order_release);
    }
    return false;
  }
  auto csts = transport->registers().Read32(spec::kRegCsts);
  if (!csts) {
    if (csts.error().code == ENXIO) removed = true;
    Fail("reading CSTS: " + csts.error().message);
  } else if (*csts == 0xFFFFFFFFu) {
    removed = true;
    Fail("CSTS reads all ones: the device is gone");
  } else if (spec::Csts{*csts}.cfs()) {
    Fail("controller fatal status (CSTS.CFS = 1)");
  }
  if (shared != nullptr && owns_device) {
    // The primary tells the group what it saw.
    if (csts) std::atomic_ref<uint32_t>(shared->csts).store(*csts, std::memory_order_release);
    if (removed) std::atomic_ref<uint32_t>(shared->removed).store(1, std::memory_order_release);
    if (failed) std::atomic_ref<uint32_t>(shared->failed).store(1, std::memory_order_release);
  }
  return !failed;
}

Controller::Controller(std::unique_ptr<ControllerState> state) : s_(std::move(state)) { s_->handle = this; }

// ControllerAttach's states (controller_attach.h); AttachController, which
// drives them to the end, is in controller_attach.cc.
Result<std::unique_ptr<Controller>> ControllerAttach::Prepare(Env& env, const TransportId& trid,
                                                              std::unique_ptr<Transport> transport,
                                                              const ControllerOptions& options,
                                                              const GroupRole* role) {
  const ControllerOptions& o = options;
  if (o.admin_queue_size < 2 || o.admin_queue_size > 4096)
    return Fail(EINVAL, "admin queue size " + std::to_string(o.admin_queue_size) + " is out of range (2..4096)");
  if (o.num_io_queues == 0)
    return Fail(EINVAL, "number of I/O queues 0 is out of range (1..65535)");
  if (o.io_queue_size < 2 || o.io_queue_size > 65536)
    return Fail(EINVAL, "I/O queue size " + std::to_string(o.io_queue_size) + " is out of range (2..65536)");
  if (role != nullptr) {
    // A controller the group already has: imported, or adopted.
    auto imported = role->Import(env, trid, o, transport);
    if (!imported) return imported.error();
    if (*imported) return std::unique_ptr<Controller>(new Controller(std::move(*imported)));
  }
  auto s = std::make_unique<ControllerState>(env, trid, o, std::move(transport));
  NVMUX_TRY(s->transport->PrepareDevice());
  // SQs in the CMB (use_cmb_sqs): not strict, a controller without a usable
  // one still attaches, its SQs in host memory.
  if (o.use_cmb_sqs)
    if (Status st = s->transport->EnableCmb(); !st)
      NVMUX_LOG(kWarning, "controller %s: use_cmb_sqs: %s; I/O SQs stay in host memory", trid.ToString().c_str(),
                st.error().message.c_str());
  // CAP first: its MQES bounds the admin queue, its DSTRD places the doorbells.
  auto cap = s->transport->registers().Read64(spec::kRegCap);
  if (!cap) return cap.error();
  s->data.cap = spec::Cap{*cap};
  if (s->options.admin_queue_size > s->data.cap.mqes() + 1u)
    s->options.admin_queue_size = static_cast<uint16_t>(s->data.cap.mqes() + 1u);
  if (role != nullptr && s->options.admin_queue_size > role->MaxAdminEntries())
    s->options.admin_queue_size = role->MaxAdminEntries();
  AdminLayout layout;
  layout.entries = s->options.admin_queue_size;
  layout.sq_bytes = RoundUp(size_t{layout.entries} * sizeof(spec::Sqe), kPage);
  layout.cq_bytes = RoundUp(size_t{layout.entries} * sizeof(spec::Cqe), kPage);
  if (role != nullptr) {
    NVMUX_TRY(role->Share(*s, layout));
    return std::unique_ptr<Controller>(new Controller(std::move(s)));
  }
  auto mem = env.AllocDma(layout.bytes(), kPage, "admin-queue", shm::DmaOwner::kProcess);
  if (!mem) return mem.error();
  s->admin_memory = std::move(*mem);
  auto* base = static_cast<uint8_t*>(s->admin_memory.data());
  s->admin_ring = std::make_unique<QueueRing>(reinterpret_cast<spec::Sqe*>(base),
                                              reinterpret_cast<spec::Cqe*>(base + layout.sq_bytes), layout.entries,
                                              s->doorbells(0));
  s->admin = std::make_unique<AdminQueue>(*s->admin_ring);
  return std::unique_ptr<Controller>(new Controller(std::move(s)));
}

Status ControllerAttach::Finish(Controller& controller) {
  Controller* ctrlr = &controller;
  const TransportId& trid = ctrlr->trid();
  if (const GroupRole* role = ctrlr->state().role) NVMUX_TRY(role->Publish(*ctrlr));
  NVMUX_TRY(ctrlr->ArmAdminBackground());
  NVMUX_LOG(kInfo, "attached %s: %zu namespace(s)", trid.ToString().c_str(), ctrlr->active_namespaces().size());
  return Ok();
}

Status Controller::RunInit() {
  std::unique_ptr<ControllerInit> init = StartInit();
  while (init->state() != InitState::kReady && init->state() != InitState::kFailed) {
    InitState before = init->state();
    if (init->Step() == before) std::this_thread::yield();
  }
  return FinishInit(*init);
}

std::unique_ptr<ControllerInit> Controller::StartInit() {
  uint16_t entries = s_->options.admin_queue_size;
  size_t sq_bytes = RoundUp(size_t{entries} * sizeof(spec::Sqe), kPage);
  size_t cq_bytes = RoundUp(size_t{entries} * sizeof(spec::Cqe), kPage);
  auto* base = static_cast<uint8_t*>(s_->admin_memory.data());
  std::memset(base, 0, sq_bytes + cq_bytes + kPage);
  s_->admin->ResetRing();
  // Shadow doorbells: off until this init's Doorbell Buffer Config succeeds
  // (a reset disables them on the device). The two pages are allocated once,
  // when the options want shadow doorbells (group DMA memory for a primary,
  // so secondaries reach them), and zeroed: the device seeds them with the
  // queues' current values.
  s_->shadow_doorbells = false;
  if (s_->shared != nullptr) std::atomic_ref<uint32_t>(s_->shared->shadow_doorbells).store(0, std::memory_order_release);
  if (!s_->shadow_memory && s_->options.shadow_doorbells) {
    // Group-owned like the admin queue: secondaries' queues use it after the primary died.
    auto shadow = s_->env.AllocDma(2 * kPage, kPage, "shadow-doorbells",
                                   s_->shared != nullptr && s_->owns_device ? shm::DmaOwner::kGroup
                                                                           : shm::DmaOwner::kProcess);
    if (shadow) {
      s_->shadow_memory = std::move(*shadow);
      // Recorded at once (still off): if this primary dies before publishing,
      // whoever reclaims the entry frees the pages (shared_registry.h).
      if (s_->shared != nullptr && s_->owns_device) {
        s_->shared->shadow_doorbell_iova = GroupAddress(s_->shadow_memory.data());
        s_->shared->eventidx_iova = s_->shared->shadow_doorbell_iova + kPage;
      }
    } else {
      NVMUX_LOG(kWarning, "controller %s: no DMA memory for shadow doorbells (%s); using real doorbells only",
                s_->trid.ToString().c_str(), shadow.error().message.c_str());
    }
  }
  InitOptions io;
  if (s_->shadow_memory) {
    std::memset(s_->shadow_memory.data(), 0, 2 * kPage);
    io.shadow_doorbell_iova = DmaPageMap::Iova(s_->shadow_memory.data());
    io.eventidx_iova = DmaPageMap::Iova(static_cast<uint8_t*>(s_->shadow_memory.data()) + kPage);
  }
  io.asq_iova = DmaPageMap::Iova(base);
  io.acq_iova = DmaPageMap::Iova(base + sq_bytes);
  io.admin_entries = entries;
  io.io_queues = s_->options.num_io_queues;
  io.arbitration = static_cast<uint8_t>(s_->options.arbitration);
  io.admin_timeout = std::chrono::milliseconds(s_->options.admin_timeout_ms);
  io.sgl_data = s_->transport->SglOnly();
  return std::make_unique<ControllerInit>(
      s_->transport->registers(), *s_->admin, SystemClock::Get(), io,
      IdentifyBuffer{base + sq_bytes + cq_bytes, DmaPageMap::Iova(base + sq_bytes + cq_bytes)});
}

Status Controller::FinishInit(const ControllerInit& init) {
  if (init.state() == InitState::kFailed) {
    s_->failed = true;
    return Fail(init.error().code,
                "controller " + s_->trid.ToString() + ": initialisation failed: " + init.error().message);
  }
  ControllerData fresh = init.data();
  std::vector<uint32_t> nsids = std::move(fresh.active_nsids);
  std::vector<spec::IdentifyNamespace> datas = std::move(fresh.namespaces);
  s_->data = std::move(fresh);
  s_->shadow_doorbells = s_->data.shadow_doorbells;
  if (s_->shared != nullptr && s_->shadow_doorbells) {
    // (StartInit gave the init machine these two pages.)
    s_->shared->shadow_doorbell_iova = GroupAddress(s_->shadow_memory.data());
    s_->shared->eventidx_iova = GroupAddress(static_cast<uint8_t*>(s_->shadow_memory.data()) + kPage);
    std::atomic_ref<uint32_t>(s_->shared->shadow_doorbells).store(1, std::memory_order_release);
  }
  uint64_t page = uint64_t{1} << (12 + s_->data.cap.mpsmin());
  s_->max_transfer = s_->data.ctrlr.mdts == 0
                         ? kMaxTransferCap
                         : static_cast<uint32_t>(std::min<uint64_t>(kMaxTransferCap, (uint64_t{1} << s_->data.ctrlr.mdts) * page));
  size_t queues = size_t{std::min(s_->data.io_sq_granted, s_->data.io_cq_granted)} + 1;
  if (s_->qid_used.size() != queues) {
    std::vector<bool> used(queues, false);
    for (size_t q = 0; q < std::min(queues, s_->qid_used.size()); ++q) used[q] = s_->qid_used[q];
    s_->qid_used = std::move(used);
  }
  s_->qid_used[0] = true;
  s_->SetNamespaces(std::move(nsids), std::move(datas));
  if (s_->role != nullptr) s_->role->AfterInit(*s_->handle);
  return Ok();
}

Doorbells ControllerState::doorbells(uint16_t qid) {
  Doorbells d = transport->QueueDoorbells(qid, data.cap.dstrd());
  const int kick = transport->DoorbellKickFd();
  if (qid == 0) {
    // The admin queue keeps the real doorbells (as Linux does, and as the
    // emulator expects); each write is kicked.
    d.kick_fd = kick;
    return d;
  }
  uint8_t* shadow = nullptr;
  if (shared != nullptr && !owns_device) {
    // A secondary: the primary's pages, by group address (the same in every process).
    if (std::atomic_ref<uint32_t>(shared->shadow_doorbells).load(std::memory_order_acquire) != 0 &&
        shared->eventidx_iova == shared->shadow_doorbell_iova + kPage)
      shadow = reinterpret_cast<uint8_t*>(shared->shadow_doorbell_iova);
  } else if (shadow_doorbells) {
    shadow = static_cast<uint8_t*>(shadow_memory.data());
  }
  // The shadow page has the doorbell registers' layout: SQ y tail at
  // 2y * (4 << CAP.DSTRD), CQ y head one stride after (NVMe base spec 5.8).
  const size_t stride = size_t{4} << data.cap.dstrd();
  const size_t sq_at = size_t{2} * qid * stride;
  if (shadow == nullptr || sq_at + stride + 4 > kPage) return d;
  d.shadow_sq_tail = reinterpret_cast<uint32_t*>(shadow + sq_at);
  d.shadow_cq_head = reinterpret_cast<uint32_t*>(shadow + sq_at + stride);
  d.eventidx_sq = reinterpret_cast<uint32_t*>(shadow + kPage + sq_at);
  d.eventidx_cq = reinterpret_cast<uint32_t*>(shadow + kPage + sq_at + stride);
  d.kick_fd = kick;
  return d;
}

Controller::~Controller() {
  if (detached_ || !BeginDetach()) return;
  // The synchronous detach: the same shutdown machine a DetachContext
  // steps, polled to the end here.
  ControllerShutdown shutdown(s_->transport->registers(), SystemClock::Get(),
                              ControllerShutdown::Timeout(s_->data.ctrlr.rtd3e), s_->trid.ToString());
  while (!shutdown.done()) {
    ShutdownState before = shutdown.state();
    if (shutdown.Step() == before) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

bool Controller::BeginDetach() {
  std::lock_guard<std::recursive_mutex> guard(s_->admin_mutex);
  if (detach_begun_) return false;
  detach_begun_ = true;
  if (!s_->qpairs.empty())
    NVMUX_LOG(kError, "controller %s destroyed with %zu queue pair(s) still allocated (free them first)",
              s_->trid.ToString().c_str(), s_->qpairs.size());
  s_->ForgetAdminWakeup();  // before the mailbox goes (Leave) and the eventfd is closed
  if (s_->role != nullptr) s_->role->Leave(*s_);
  for (QpairState* q : s_->qpairs) q->ctrlr_gone = true;
  AbortAllAdmin();  // commands never answered (a SyncAdmin timed out on them) complete, freeing their waiters
  s_->alive.reset();
  if (s_->role != nullptr) s_->role->Retire(*s_);
  // A normal shutdown notification only for a healthy controller we own.
  return !s_->failed && s_->owns_device;
}

const TransportId& Controller::trid() const { return s_->trid; }
const ControllerOptions& Controller::options() const { return s_->options; }
const spec::IdentifyController& Controller::data() const { return s_->data.ctrlr; }
spec::Cap Controller::cap() const { return s_->data.cap; }
spec::Vs Controller::vs() const { return s_->data.vs; }
uint32_t Controller::max_transfer_size() const { return s_->max_transfer; }
uint16_t Controller::max_sges() const { return static_cast<uint16_t>(s_->max_transfer / kPage + 1); }
bool Controller::sgl_supported() const { return (s_->data.ctrlr.sgls & 0x3) != 0; }
uint16_t Controller::io_queues_granted() const { return static_cast<uint16_t>(s_->qid_used.size() - 1); }
bool Controller::failed() const { return s_->failed; }
bool Controller::removed() const { return s_->removed; }
Env& Controller::env() const { return s_->env; }
const AdminStatistics& Controller::admin_statistics() const { return s_->stats; }
spec::Cqe Controller::LastAdminCompletion() const { return s_->last_admin; }

Result<uint32_t> Controller::ReadRegister32(uint32_t offset) {
  if (offset >= spec::kDoorbellBase)
    return Fail(EINVAL, "register offset " + Hex(offset) + " is not below the doorbells (0x1000)");
  return s_->transport->registers().Read32(offset);
}

bool Controller::supports_log_page(uint8_t lid) const {
  switch (lid) {
    case spec::lid::kErrorInformation:
    case spec::lid::kSmartHealth:
    case spec::lid::kFirmwareSlot:
      return true;  // mandatory
    case spec::lid::kChangedNamespaceList:
      return (s_->data.ctrlr.oaes & spec::kOaesNsAttributeNotices) != 0;
    case spec::lid::kCommandsSupportedAndEffects:
      return (s_->data.ctrlr.lpa & 0x2) != 0;
    default:
      return false;
  }
}

bool Controller::supports_feature(uint8_t fid) const {
  switch (fid) {
    case spec::fid::kArbitration:
    case spec::fid::kPowerManagement:
    case spec::fid::kTemperatureThreshold:
    case spec::fid::kNumberOfQueues:
    case spec::fid::kInterruptCoalescing:
    case spec::fid::kInterruptVectorConfig:
    case spec::fid::kAsyncEventConfig:
      return true;  // mandatory for I/O controllers
    case spec::fid::kVolatileWriteCache:
      return (s_->data.ctrlr.vwc & 1) != 0;
    case spec::fid::kKeepAliveTimer:
      return s_->data.ctrlr.kas != 0;
    default:
      return false;
  }
}

std::span<const uint32_t> Controller::active_namespaces() const { return s_->data.active_nsids; }

Namespace* Controller::GetNamespace(uint32_t nsid) {
  std::lock_guard<std::recursive_mutex> guard(s_->admin_mutex);
  for (auto& ns : s_->namespaces)
    if (ns->id() == nsid) return ns.get();
  return nullptr;
}

}  // namespace nvmux
