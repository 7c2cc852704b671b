// Controller: the admin queue — submission with data, polling (AENs,
// keep-alive, timeouts), synchronous commands and their conveniences,
// namespace refresh and controller reset.
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "libclient/core/controller_state.h"
#include "libclient/core/dma_page_map.h"
#include "libclient/core/prp.h"
#include "libclient/core/transport.h"
#include "libclient/core/sgl.h"
#include "libclient/core/qpair_state.h"
#include "libclient/shared/admin_wakeup.h"
#include "libclient/shared/fd_holders.h"
#include "libclient/shared/shared_admin_queue.h"
#include "shm/group.h"
#include "nvmux/controller.h"
#include "nvmux/spec/features.h"
#include "nvmux/spec/log_page.h"
#include "shm/base/clock.h"
#include "shm/base/format.h"
#include "shm/base/log.h"
#include "shm/base/scope_guard.h"

namespace nvmux {
namespace {

constexpr uint16_t kAbortedStatus = static_cast<uint16_t>(kAbortedSqDeletion << 1);
constexpr uint32_t kMaxAers = 4;

std::string StatusText(const spec::Cqe& c) {
  return "status " + std::to_string(c.sct()) + "/" + Hex(c.sc(), 2) + (c.dnr() ? " (do not retry)" : "");
}

}  // namespace

Status Controller::SubmitAdmin(const spec::Sqe& cmd, void* buffer, uint32_t length, CompletionFn fn, void* cb_arg) {
  spec::Sqe c = cmd;
  if (length > 0) {
    if (buffer == nullptr || !s_->env.IsDmaMemory(buffer, length))
      return Fail(EINVAL, "admin command " + Hex(cmd.opc, 2) + ": data buffer is not DMA memory (allocate it with "
                          "Env::AllocDma)");
    if (s_->transport != nullptr && s_->transport->SglOnly()) {
      // One contiguous buffer: one SGL Data Block descriptor (NVMe/TCP).
      IovaSegment seg{DmaPageMap::Iova(buffer), length};
      auto sgl = BuildSgl(std::span<const IovaSegment>(&seg, 1), SglList{});
      if (!sgl) return Fail(EINVAL, "admin command " + Hex(cmd.opc, 2) + ": " + sgl.error().message);
      SetDataSgl(c, *sgl);
    } else {
      // Two segments when the buffer straddles hugepages whose physical
      // addresses do not follow (IOVA = PA); one otherwise.
      IovaSegment segs[2];
      uint64_t first = DmaPageMap::ContiguousBytes(buffer, length);
      segs[0] = IovaSegment{DmaPageMap::Iova(buffer), first};
      if (first < length)
        segs[1] = IovaSegment{DmaPageMap::Iova(static_cast<const uint8_t*>(buffer) + first), length - first};
      auto prps = BuildPrps(std::span<const IovaSegment>(segs, first < length ? 2 : 1), PrpList{{}, 0});
      if (!prps)
        return Fail(EINVAL, "admin command " + Hex(cmd.opc, 2) + ": " + std::to_string(length) +
                                " bytes of data need a PRP list; admin data is limited to two pages (8 KiB, or less "
                                "when the buffer does not start on a page): " + prps.error().message);
      c.prp1 = prps->prp1;
      c.prp2 = prps->prp2;
    }
  }
  std::lock_guard<std::recursive_mutex> guard(s_->admin_mutex);
  if (s_->failed) return Fail(ENXIO, "controller " + s_->trid.ToString() + " has failed");
  NVMUX_TRY(s_->admin->Submit(c, [this, fn, cb_arg](const spec::Cqe& cpl) {
    s_->stats.completed++;
    if (fn != nullptr) fn(cb_arg, cpl);
  }));
  s_->stats.submitted++;
  return Ok();
}

ControllerState::AdminWait::~AdminWait() {
  if (wakeup.valid() && shared != nullptr) nvmux::ForgetAdminWakeup(*shared, slot, generation, wakeup.get());
  if (fd.valid() && shared != nullptr) ForgetVectorHolder(*shared, 0, slot, generation);
}

void ControllerState::ForgetAdminWakeup() {
  std::lock_guard<std::recursive_mutex> guard(admin_mutex);
  if (admin_wait.wakeup.valid() && shared_admin != nullptr) (void)shared_admin->SetWakeupFd(-1);
}

int ControllerState::AdminWaitFd() {
  std::lock_guard<std::recursive_mutex> guard(admin_mutex);
  const int vector = AdminVectorFd();
  // Without the admin interrupt nothing would wake a process whose
  // completion nobody routes: waiters poll then (-1), as before.
  if (vector < 0 || shared == nullptr || shared_admin == nullptr) return vector;
  if (!admin_wait.epoll.valid()) {
    // Our own wakeup, which whoever routes into our mailbox signals
    // (libclient/shared/admin_wakeup.h), beside the group's vector 0.
    UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
    UniqueFd wake(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    epoll_event ev{};
    ev.events = EPOLLIN;
    if (!ep.valid() || !wake.valid() || ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, wake.get(), &ev) != 0) {
      NVMUX_LOG(kWarning, "%s: no admin wakeup (%s): admin waits use the shared vector alone", trid.ToString().c_str(),
                std::strerror(errno));
      return vector;
    }
    if (Status st = shared_admin->SetWakeupFd(wake.get()); !st) {
      NVMUX_LOG(kWarning, "%s: no admin wakeup: %s", trid.ToString().c_str(), st.error().message.c_str());
      return vector;
    }
    admin_wait.shared = shared;
    admin_wait.slot = env.group().self_slot();
    admin_wait.generation = env.group().processes().self_generation();
    admin_wait.wakeup = std::move(wake);
    admin_wait.epoll = std::move(ep);
  }
  if (admin_wait.epoll_vector != vector) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    if (::epoll_ctl(admin_wait.epoll.get(), EPOLL_CTL_ADD, vector, &ev) != 0) return vector;
    admin_wait.epoll_vector = vector;
  }
  return admin_wait.epoll.get();
}

int ControllerState::AdminVectorFd() {
  std::lock_guard<std::recursive_mutex> guard(admin_mutex);
  if (shared == nullptr || owns_device) {
    // Vector 0's eventfd; over NVMe/TCP an epoll fd over the admin
    // connection and the group's mailbox (TcpTransport::AdminEventFd).
    if (transport == nullptr) return -1;
    return transport->AdminEventFd();
  }
  if (admin_wait.fd.valid()) return admin_wait.fd.get();
  // A secondary: the primary's recorded vector 0, once per registration
  // (a failed take is retried when a primary records the vectors again).
  const uint32_t registered = std::atomic_ref<uint32_t>(shared->irq_holder_generation).load(std::memory_order_acquire);
  if (registered == 0 || registered == admin_wait.tried) return -1;
  admin_wait.tried = registered;
  auto fd = TakeVectorFd(*shared, env.group().processes(), 0);
  if (!fd) {
    NVMUX_LOG(kInfo, "%s: admin waits poll: %s", trid.ToString().c_str(), fd.error().message.c_str());
    return -1;
  }
  const int flags = ::fcntl(fd->get(), F_GETFL);
  if (flags >= 0 && (flags & O_NONBLOCK) == 0) (void)::fcntl(fd->get(), F_SETFL, flags | O_NONBLOCK);
  admin_wait.shared = shared;
  admin_wait.slot = env.group().self_slot();
  admin_wait.generation = env.group().processes().self_generation();
  RecordVectorHolder(*shared, 0, admin_wait.slot, admin_wait.generation, fd->get());
  admin_wait.fd = std::move(*fd);
  return admin_wait.fd.get();
}

int Controller::admin_event_fd() const { return s_->AdminWaitFd(); }

void Controller::ArmAdminEvent() {
  std::lock_guard<std::recursive_mutex> guard(s_->admin_mutex);
  if (s_->admin_wait.wakeup.valid()) {  // our own wakeup (a group's waiter)
    uint64_t count = 0;
    (void)!::read(s_->admin_wait.wakeup.get(), &count, sizeof(count));
  }
  if (s_->shared != nullptr && !s_->owns_device) {
    // A secondary blocks on its own duplicate (AdminVectorFd), not on the
    // transport's fd: drain that one, or a level-triggered poll spins.
    if (s_->admin_wait.fd.valid()) {
      uint64_t count = 0;
      (void)!::read(s_->admin_wait.fd.get(), &count, sizeof(count));
      return;
    }
  }
  if (s_->transport != nullptr) s_->transport->ArmAdminEvent();
}

Result<uint32_t> Controller::ProcessAdminCompletions() {
  std::lock_guard<std::recursive_mutex> guard(s_->admin_mutex);
  int64_t now = MonotonicNanos();
  if (!s_->CheckHealth(now)) {
    AbortAllAdmin();
    return Fail(ENXIO, "controller " + s_->trid.ToString() + " has failed");
  }
  if (s_->reset_requested.load(std::memory_order_relaxed) && s_->sync_admin_depth.load(std::memory_order_relaxed) == 0) {
    // An I/O timeout asked for it from a queue pair's poll, where a reset
    // (which aborts and re-creates every queue pair) cannot run.
    if (!s_->owns_device) {
      // A secondary's: the controller is the primary's, and resetting it
      // would pull every process's queues. Its commands stay outstanding
      // (Disconnect gives them up).
      s_->reset_requested = false;
      NVMUX_LOG(kError, "controller %s: an I/O timeout asked for a reset, which only the primary may do; not reset",
                s_->trid.ToString().c_str());
    } else {
      NVMUX_LOG(kWarning, "controller %s: resetting after an I/O timeout", s_->trid.ToString().c_str());
      if (Status st = Reset(); !st) {
        // Reset's init marks the controller failed itself (without a word).
        NVMUX_LOG(kError, "controller %s: the reset after an I/O timeout failed: %s", s_->trid.ToString().c_str(),
                  st.error().message.c_str());
        s_->failed = true;
        AbortAllAdmin();
        return Fail(ENXIO, "controller " + s_->trid.ToString() + " has failed");
      }
    }
  }
  uint64_t before = s_->stats.completed;
  Status polled = s_->admin->Poll();
  if (!polled) NVMUX_LOG(kWarning, "%s", polled.error().message.c_str());
  if (s_->keep_alive_interval_ns > 0 && now >= s_->next_keep_alive_ns) {
    s_->next_keep_alive_ns = now + s_->keep_alive_interval_ns;
    spec::Sqe ka;
    ka.opc = spec::admin::kKeepAlive;
    (void)SubmitAdmin(ka, nullptr, 0, nullptr, nullptr);
  }
  if (s_->admin_timeout_us > 0) {
    for (uint16_t cid : s_->admin->SubmittedBefore(now - static_cast<int64_t>(s_->admin_timeout_us) * 1000)) {
      if (s_->timed_out.count(cid)) continue;
      s_->timed_out.insert(cid);
      s_->stats.timeouts++;
      NVMUX_LOG(kWarning, "controller %s: admin command %u timed out", s_->trid.ToString().c_str(), cid);
      if (s_->timeout_fn) s_->timeout_fn(cid);
      if (s_->timeout_action == TimeoutAction::kAbort) {
        (void)AbortCommand(0, cid);
      } else if (s_->timeout_action == TimeoutAction::kReset) {
        (void)Reset();
        break;
      }
    }
  }
  // Not inside the reaper's device round trips (defer_events): the next
  // ordinary poll reads the Changed Namespace List (primary/reap_queues.h).
  if (s_->namespaces_changed && s_->defer_events == 0) {
    s_->namespaces_changed = false;
    if (s_->owns_device) {
      // Reading the Changed Namespace List clears the event so the
      // controller reports the next change.
      if (auto log = s_->env.AllocDma(4096, 4096, "ns-changed"); log)
        (void)GetLogPage(spec::lid::kChangedNamespaceList, 0xFFFFFFFFu, log->data(), 4096);
    }
    if (Status st = RefreshNamespaces(); !st) NVMUX_LOG(kWarning, "namespace refresh: %s", st.error().message.c_str());
    if (s_->aer_fn != nullptr) s_->aer_fn(s_->aer_arg, s_->pending_aen);
  }
  return static_cast<uint32_t>(s_->stats.completed - before);
}

void Controller::AbortAllAdmin() { s_->admin->AbortAll(kAbortedStatus); }

Result<spec::Cqe> Controller::SyncAdmin(const spec::Sqe& cmd, void* buffer, uint32_t length) {
  // A reset an I/O timeout asked for waits until no SyncAdmin runs: its
  // callers (queue creation and deletion, namespace refresh) are steps of
  // something a reset would pull out from under them.
  s_->sync_admin_depth.fetch_add(1, std::memory_order_relaxed);
  ScopeGuard undepth([this] { s_->sync_admin_depth.fetch_sub(1, std::memory_order_relaxed); });
  struct Waiter {
    const SharedAdminQueue* group = nullptr;
    bool done = false;
    uint32_t wake_seq = 0;  // as the group's router numbered its wakeup
    spec::Cqe cpl{};
  };
  // Shared so that a completion after a timeout writes nowhere harmful.
  auto waiter = std::make_shared<Waiter>();
  waiter->group = s_->shared_admin;
  auto* holder = new std::shared_ptr<Waiter>(waiter);
  CompletionFn fn = [](void* arg, const spec::Cqe& cpl) {
    auto* h = static_cast<std::shared_ptr<Waiter>*>(arg);
    (*h)->done = true;
    (*h)->cpl = cpl;
    if ((*h)->group != nullptr) (*h)->wake_seq = (*h)->group->delivering_wake_seq();
    delete h;
  };
  if (Status st = SubmitAdmin(cmd, buffer, length, fn, holder); !st) {
    delete holder;
    return st.error();
  }
  const int64_t start = MonotonicNanos();
  const int64_t deadline = start + int64_t{s_->options.admin_timeout_ms} * 1'000'000;
  // Most admin commands complete within microseconds: poll that long, then
  // sleep on the admin interrupt. In a group the vector's eventfd is
  // shared: whoever drains it first routes this completion to our mailbox
  // and signals our own wakeup (AdminWaitFd), so a sleep ends when the
  // completion is here. Slices only bound the sleep should a wakeup not
  // come (a router that cannot take our eventfd: no ptrace access, as in a
  // group shared by several users), and keep the keep-alive and timeout
  // checks of ProcessAdminCompletions going. They stay short for that
  // case: a slice is spent only while one of our commands is outstanding.
  constexpr int64_t kSpinNs = 200'000;
  constexpr int kSliceMs = 5;
  bool slept_out = false;
  uint32_t settled = 0;  // the group's settled wakeup number when the sleep ran out
  for (;;) {
    const int64_t now = MonotonicNanos();
    const int fd = now - start >= kSpinNs ? s_->AdminWaitFd() : -1;
    if (slept_out && fd >= 0) {
      // The wakeup came after the slice ran out (a slow device or a loaded
      // machine): late, not missed.
      pollfd late{fd, POLLIN, 0};
      if (::poll(&late, 1, 0) > 0) slept_out = false;
    }
    if (fd >= 0) ArmAdminEvent();  // drain, then process
    auto n = ProcessAdminCompletions();
    if (!n && !waiter->done) return n.error();
    if (waiter->done) {
      // Found right after a sleep that ran to the end of its slice. Alone,
      // it arrived meanwhile and the interrupt did not wake us. In a group,
      // only if another process routed it and had signalled our wakeup (or
      // found none to signal) before the sleep ran out; if we routed it
      // ourselves, or its router had not signalled yet, it came late.
      const bool missed = slept_out && (waiter->group == nullptr ||
                                        (waiter->wake_seq != 0 && static_cast<int32_t>(waiter->wake_seq - settled) <= 0));
      if (missed) {
        std::lock_guard<std::recursive_mutex> guard(s_->admin_mutex);
        s_->stats.missed_wakeups++;
      }
      break;
    }
    if (MonotonicNanos() > deadline)
      return Fail(ETIMEDOUT, "admin command " + Hex(cmd.opc, 2) + " did not complete within " +
                                 std::to_string(s_->options.admin_timeout_ms) + " ms");
    if (fd < 0) continue;
    pollfd p{fd, POLLIN, 0};
    const bool woken = ::poll(&p, 1, kSliceMs) > 0;
    slept_out = !woken;
    if (slept_out && s_->shared_admin != nullptr) settled = s_->shared_admin->wakeups_settled();
    std::lock_guard<std::recursive_mutex> guard(s_->admin_mutex);
    s_->stats.blocks++;
    if (woken) s_->stats.wakeups++;
  }
  s_->last_admin = waiter->cpl;
  if (IsError(waiter->cpl))
    return Fail(EIO, "admin command " + Hex(cmd.opc, 2) + " failed: " + StatusText(waiter->cpl));
  return waiter->cpl;
}

Result<uint32_t> Controller::GetFeature(uint8_t fid, uint32_t cdw11, void* buffer, uint32_t length, uint32_t nsid) {
  spec::Sqe c;
  c.opc = spec::admin::kGetFeatures;
  c.nsid = nsid;
  c.cdw10 = fid;
  c.cdw11 = cdw11;
  auto cpl = SyncAdmin(c, buffer, length);
  if (!cpl) return cpl.error();
  return cpl->cdw0;
}

Result<uint32_t> Controller::SetFeature(uint8_t fid, uint32_t cdw11, uint32_t cdw12, void* buffer, uint32_t length,
                                        uint32_t nsid) {
  spec::Sqe c;
  c.opc = spec::admin::kSetFeatures;
  c.nsid = nsid;
  c.cdw10 = fid;
  c.cdw11 = cdw11;
  c.cdw12 = cdw12;
  auto cpl = SyncAdmin(c, buffer, length);
  if (!cpl) return cpl.error();
  return cpl->cdw0;
}

Status Controller::GetLogPage(uint8_t lid, uint32_t nsid, void* buffer, uint32_t length, uint64_t offset) {
  if (length == 0 || length % 4 != 0)
    return Fail(EINVAL, "log page length " + std::to_string(length) + " must be a non-zero multiple of 4");
  // In pieces of at most one page, each with its offset (LPOL/LPOU).
  for (uint32_t done = 0; done < length;) {
    uint32_t n = std::min<uint32_t>(length - done, 4096);
    uint32_t numd = n / 4 - 1;
    uint64_t off = offset + done;
    spec::Sqe c;
    c.opc = spec::admin::kGetLogPage;
    c.nsid = nsid;
    c.cdw10 = lid | ((numd & 0xFFFFu) << 16);
    c.cdw11 = numd >> 16;
    c.cdw12 = static_cast<uint32_t>(off);
    c.cdw13 = static_cast<uint32_t>(off >> 32);
    auto cpl = SyncAdmin(c, static_cast<uint8_t*>(buffer) + done, n);
    if (!cpl) return cpl.error();
    done += n;
  }
  return Ok();
}

Status Controller::Identify(uint8_t cns, uint32_t nsid, void* buffer, uint16_t cntid) {
  spec::Sqe c;
  c.opc = spec::admin::kIdentify;
  c.nsid = nsid;
  c.cdw10 = cns | (static_cast<uint32_t>(cntid) << 16);
  auto cpl = SyncAdmin(c, buffer, 4096);
  if (!cpl) return cpl.error();
  return Ok();
}

Result<uint32_t> Controller::CreateNamespace(const spec::IdentifyNamespace& data) {
  auto buf = s_->env.AllocDma(sizeof data, 4096, "ns-mgmt");
  if (!buf) return buf.error();
  std::memcpy(buf->data(), &data, sizeof data);
  spec::Sqe c;
  c.opc = spec::admin::kNamespaceManagement;
  c.cdw10 = spec::kNsMgmtCreate;
  auto cpl = SyncAdmin(c, buf->data(), sizeof data);
  if (!cpl) return cpl.error();
  return cpl->cdw0;
}

Status Controller::DeleteNamespace(uint32_t nsid) {
  spec::Sqe c;
  c.opc = spec::admin::kNamespaceManagement;
  c.nsid = nsid;
  c.cdw10 = spec::kNsMgmtDelete;
  auto cpl = SyncAdmin(c);
  if (!cpl) return cpl.error();
  return Ok();
}

namespace {

Status Attachment(Controller& ctrlr, Env& env, uint32_t nsid, std::span<const uint16_t> controllers, uint8_t sel) {
  if (controllers.empty() || controllers.size() > 2047)
    return Fail(EINVAL, "controller list of " + std::to_string(controllers.size()) + " entries (allowed 1..2047)");
  auto buf = env.AllocDma(4096, 4096, "ns-attach");
  if (!buf) return buf.error();
  auto* ids = static_cast<uint16_t*>(buf->data());
  ids[0] = static_cast<uint16_t>(controllers.size());
  for (size_t i = 0; i < controllers.size(); ++i) ids[i + 1] = controllers[i];
  spec::Sqe c;
  c.opc = spec::admin::kNamespaceAttachment;
  c.nsid = nsid;
  c.cdw10 = sel;
  auto cpl = ctrlr.SyncAdmin(c, buf->data(), 4096);
  if (!cpl) return cpl.error();
  return Ok();
}

}  // namespace

Status Controller::AttachNamespace(uint32_t nsid, std::span<const uint16_t> controllers) {
  NVMUX_TRY(Attachment(*this, s_->env, nsid, controllers, spec::kNsAttach));
  return RefreshNamespaces();
}

Status Controller::DetachNamespace(uint32_t nsid, std::span<const uint16_t> controllers) {
  NVMUX_TRY(Attachment(*this, s_->env, nsid, controllers, spec::kNsDetach));
  return RefreshNamespaces();
}

Status Controller::Format(uint32_t nsid, uint8_t lbaf, bool md_extended, uint8_t pi, uint8_t ses) {
  if (lbaf > 15) return Fail(EINVAL, "LBA format " + std::to_string(lbaf) + " is out of range (0..15)");
  if (pi > 3) return Fail(EINVAL, "protection information type " + std::to_string(pi) + " is out of range (0..3)");
  if (ses > 2) return Fail(EINVAL, "secure erase setting " + std::to_string(ses) + " is out of range (0..2)");
  spec::Sqe c;
  c.opc = spec::admin::kFormatNvm;
  c.nsid = nsid;
  c.cdw10 = (lbaf & 0xFu) | (md_extended ? 1u << 4 : 0u) | (static_cast<uint32_t>(pi) << 5) |
            (static_cast<uint32_t>(ses) << 9);
  auto cpl = SyncAdmin(c);
  if (!cpl) return cpl.error();
  return RefreshNamespaces();
}

Status Controller::AbortCommand(uint16_t sqid, uint16_t cid) {
  spec::Sqe c;
  c.opc = spec::admin::kAbort;
  c.cdw10 = sqid | (static_cast<uint32_t>(cid) << 16);
  return SubmitAdmin(c, nullptr, 0, nullptr, nullptr);
}

void Controller::SetAerCallback(CompletionFn fn, void* cb_arg) {
  std::lock_guard<std::recursive_mutex> guard(s_->admin_mutex);
  s_->aer_fn = fn;
  s_->aer_arg = cb_arg;
}

void Controller::SetAdminTimeout(uint64_t timeout_us, TimeoutAction action, TimeoutFn fn) {
  std::lock_guard<std::recursive_mutex> guard(s_->admin_mutex);
  s_->admin_timeout_us = timeout_us;
  s_->timeout_action = action;
  s_->timeout_fn = std::move(fn);
}

void Controller::SetIoTimeout(uint64_t timeout_us, TimeoutAction action, IoTimeoutFn fn) {
  std::lock_guard<std::recursive_mutex> guard(s_->admin_mutex);
  s_->io_timeout_us = timeout_us;
  s_->io_timeout_action = action;
  s_->io_timeout_fn = std::move(fn);
  // Queue pairs copy the fields above under this lock when they see it.
  s_->io_timeout_generation.fetch_add(1, std::memory_order_release);
}

void Controller::SubmitAer() {
  spec::Sqe c;
  c.opc = spec::admin::kAsyncEventRequest;
  Status st = s_->admin->Submit(c, [this](const spec::Cqe& cpl) {
    s_->aers_outstanding--;
    if (cpl.sct() == 0 && cpl.sc() == kAbortedSqDeletion) return;  // reset or failure: not re-armed here
    if (IsError(cpl)) {
      // Asynchronous Event Request Limit Exceeded or similar: stop arming.
      NVMUX_LOG(kNotice, "AER completed with %s; not re-armed", StatusText(cpl).c_str());
      return;
    }
    OnEvent(cpl);
    s_->aers_outstanding++;
    SubmitAer();
  });
  if (!st) {
    NVMUX_LOG(kWarning, "cannot arm an AER: %s", st.error().message.c_str());
    s_->aers_outstanding--;
  }
  s_->aers_outstanding++;
}

void Controller::OnEvent(const spec::Cqe& cpl) {
  s_->stats.aens++;
  uint8_t type = static_cast<uint8_t>(cpl.cdw0 & 0x7);
  uint8_t info = static_cast<uint8_t>((cpl.cdw0 >> 8) & 0xFF);
  if (type == spec::aer::kTypeNotice && info == spec::aer::kInfoNoticeNsAttrChanged) {
    s_->namespaces_changed = true;  // refreshed (and reported) after this poll
    s_->pending_aen = cpl;
  } else if (s_->aer_fn != nullptr) {
    s_->aer_fn(s_->aer_arg, cpl);
  }
}

Status Controller::ArmAdminBackground() {
  std::lock_guard<std::recursive_mutex> guard(s_->admin_mutex);
  if (s_->shared_admin != nullptr) {
    s_->shared_admin->SetEventHandler([this](const spec::Cqe& cpl) { OnEvent(cpl); });
    if (!s_->owns_device) {
      // The primary arms the group's AERs and sets the KATO. Keep Alive is
      // sent by every process that polls the shared admin queue (at half
      // the KATO in force, read back from the device), so a device that
      // enforces it keeps the controller while the primary is dead.
      ArmKeepAlive();
      return Ok();
    }
  }
  // Namespace attribute notices must be enabled to be reported.
  if (s_->data.ctrlr.oaes & spec::kOaesNsAttributeNotices) {
    auto st = SetFeature(spec::fid::kAsyncEventConfig, 0xFFu | spec::kOaesNsAttributeNotices);
    if (!st) NVMUX_LOG(kNotice, "enabling namespace notices: %s", st.error().message.c_str());
  }
  uint32_t aers = std::min<uint32_t>(kMaxAers, s_->data.ctrlr.aerl + 1u);
  aers = std::min<uint32_t>(aers, s_->options.admin_queue_size / 2u);
  if (s_->shared_admin != nullptr) {
    if (Status st = s_->shared_admin->ArmGroupAers(aers); !st)
      NVMUX_LOG(kWarning, "cannot arm the group's AERs: %s", st.error().message.c_str());
  } else {
    for (uint32_t i = 0; i < aers; ++i) SubmitAer();
  }
  if (s_->data.ctrlr.kas != 0 && s_->options.keep_alive_timeout_ms > 0) {
    // KATO in ms (KAS is the granularity, 100 ms units; the device may round up).
    auto st = SetFeature(spec::fid::kKeepAliveTimer, s_->options.keep_alive_timeout_ms);
    if (!st) NVMUX_LOG(kNotice, "setting the keep-alive timeout: %s", st.error().message.c_str());
    ArmKeepAlive();
  }
  return Ok();
}

void Controller::ArmKeepAlive() {
  s_->keep_alive_interval_ns = 0;
  if (s_->data.ctrlr.kas == 0) return;
  // The KATO in force, as the device reports it (a secondary did not set
  // it; the device may have rounded what the primary asked for). Keep Alive
  // is sent at half of it, from Poll.
  auto kato = GetFeature(spec::fid::kKeepAliveTimer);
  if (!kato) {
    NVMUX_LOG(kNotice, "reading the keep-alive timeout: %s", kato.error().message.c_str());
    if (!s_->owns_device || s_->options.keep_alive_timeout_ms == 0) return;
    kato = s_->options.keep_alive_timeout_ms;  // what was asked for
  }
  if (*kato == 0) return;
  s_->keep_alive_interval_ns = int64_t{*kato} * 500'000;
  s_->next_keep_alive_ns = MonotonicNanos() + s_->keep_alive_interval_ns;
}

Status Controller::RefreshNamespaces() {
  std::lock_guard<std::recursive_mutex> guard(s_->admin_mutex);
  auto page = s_->env.AllocDma(4096, 4096, "identify");
  if (!page) return page.error();
  NVMUX_TRY(Identify(spec::cns::kActiveNamespaceList, 0, page->data()));
  std::vector<uint32_t> nsids;
  const auto* list = static_cast<const uint32_t*>(page->data());
  for (size_t i = 0; i < 1024 && list[i] != 0; ++i) nsids.push_back(list[i]);
  std::vector<spec::IdentifyNamespace> datas;
  for (uint32_t nsid : nsids) {
    std::memset(page->data(), 0, 4096);
    NVMUX_TRY(Identify(spec::cns::kNamespace, nsid, page->data()));
    datas.push_back(*static_cast<const spec::IdentifyNamespace*>(page->data()));
  }
  s_->SetNamespaces(std::move(nsids), std::move(datas));
  if (s_->shared != nullptr && s_->owns_device) {
    // What secondaries see when they attach from now on.
    auto lock = s_->shared_admin->lock().Lock();
    SharedController& c = *s_->shared;
    c.num_namespaces = static_cast<uint32_t>(std::min<size_t>(s_->data.active_nsids.size(), kMaxSharedNamespaces));
    for (uint32_t i = 0; i < c.num_namespaces; ++i) {
      c.nsids[i] = s_->data.active_nsids[i];
      c.namespaces[i] = s_->data.namespaces[i];
    }
    c.namespace_generation++;
  }
  return Ok();
}

Status Controller::Reset() {
  std::lock_guard<std::recursive_mutex> guard(s_->admin_mutex);
  NVMUX_LOG(kNotice, "resetting controller %s", s_->trid.ToString().c_str());
  for (QpairState* q : s_->qpairs) q->AbortOutstanding();
  AbortAllAdmin();
  s_->timed_out.clear();
  s_->reset_requested = false;  // this is the reset an I/O timeout asked for
  s_->failed = false;
  s_->next_health_check_ns = 0;
  NVMUX_TRY(RunInit());
  NVMUX_TRY(ArmAdminBackground());
  for (QpairState* q : s_->qpairs) {
    if (!q->connected_before_reset) continue;
    if (Status st = q->CreateOnDevice(); !st) {
      NVMUX_LOG(kError, "reset: re-creating queue pair %u: %s", q->qid, st.error().message.c_str());
      q->state = QpairLifecycle::kFailed;
    }
  }
  return Ok();
}

}  // namespace nvmux
