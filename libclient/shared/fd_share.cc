#include "libclient/shared/fd_share.h"

#include <rte_eal.h>
#include <rte_errno.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "libclient/shared/shared_controller.h"
#include "shm/base/log.h"

namespace nvmux {
namespace {

constexpr char kAction[] = "nvmux_ctrl_fds";

struct Request {
  uint32_t index;
};
// Which fds follow, in this order: doorbells and connection always, then
// the kick and the MSI-X table when their bit is set.
constexpr uint32_t kHasKick = 1u << 0;
constexpr uint32_t kHasMsix = 1u << 1;
struct Reply {
  int32_t status;  // 0 or an errno
  uint32_t has;    // kHas* bits
  uint64_t offset;
  uint64_t bytes;
  MsixTableArea msix;
};
static_assert(sizeof(Reply) <= RTE_MP_MAX_PARAM_LEN);

std::mutex g_mutex;
std::map<uint32_t, Transport::Exported> g_offered;
bool g_registered = false;

int Serve(const rte_mp_msg* msg, const void* peer) {
  rte_mp_msg reply{};
  std::strncpy(reply.name, kAction, sizeof(reply.name) - 1);
  Reply r{};
  Request req{};
  std::memcpy(&req, msg->param, std::min<size_t>(sizeof req, static_cast<size_t>(msg->len_param)));
  {
    std::lock_guard<std::mutex> guard(g_mutex);
    auto it = g_offered.find(req.index);
    if (it == g_offered.end()) {
      r.status = ENOENT;
    } else {
      const Transport::Exported& e = it->second;
      r.offset = e.doorbell_file_offset;
      r.bytes = e.doorbell_bytes;
      reply.fds[0] = e.doorbell_fd;
      reply.fds[1] = e.connection_fd;
      reply.num_fds = 2;
      if (e.kick_fd >= 0) {
        reply.fds[reply.num_fds++] = e.kick_fd;
        r.has |= kHasKick;
      }
      if (e.msix_fd >= 0) {
        reply.fds[reply.num_fds++] = e.msix_fd;
        r.has |= kHasMsix;
        r.msix = e.msix;
      }
    }
  }
  std::memcpy(reply.param, &r, sizeof r);
  reply.len_param = sizeof r;
  return rte_mp_reply(&reply, static_cast<const char*>(peer));
}

}  // namespace

Status OfferFds(uint32_t index, const Transport::Exported& exported) {
  std::lock_guard<std::mutex> guard(g_mutex);
  if (!g_registered) {
    if (rte_mp_action_register(kAction, Serve) != 0 && rte_errno != EEXIST)
      return Fail(rte_errno, std::string("cannot serve controller fds over DPDK IPC: ") + rte_strerror(rte_errno));
    g_registered = true;
  }
  g_offered[index] = exported;
  return Ok();
}

void WithdrawFds(uint32_t index) {
  std::lock_guard<std::mutex> guard(g_mutex);
  g_offered.erase(index);
}

Result<SharedFds> RequestFds(uint32_t index) {
  // DPDK's primary gone (it died; a primary that took the group over is
  // DPDK's secondary): nobody serves IPC. Say so without asking.
  if (rte_eal_primary_proc_alive(nullptr) == 0)
    return Fail(ENXIO, "DPDK's primary process of the group is not running, so nobody serves fd requests");
  rte_mp_msg req{};
  std::strncpy(req.name, kAction, sizeof(req.name) - 1);
  Request r{index};
  std::memcpy(req.param, &r, sizeof r);
  req.len_param = sizeof r;
  struct rte_mp_reply replies{};
  timespec timeout{1, 0};
  if (rte_mp_request_sync(&req, &replies, &timeout) != 0 || replies.nb_received != 1) {
    if (replies.msgs) std::free(replies.msgs);
    return Fail(ENXIO, "the group's primary (nvmuxd) did not answer a request for controller " + std::to_string(index) +
                           "'s doorbells within 1 s: is nvmuxd alive?");
  }
  rte_mp_msg& m = replies.msgs[0];
  Reply rep{};
  std::memcpy(&rep, m.param, std::min<size_t>(sizeof rep, static_cast<size_t>(m.len_param)));
  SharedFds fds;
  int next = 0;
  auto take = [&]() { return next < m.num_fds ? UniqueFd(m.fds[next++]) : UniqueFd(); };
  fds.doorbells = take();
  fds.connection = take();
  if ((rep.has & kHasKick) != 0) fds.kick = take();
  if ((rep.has & kHasMsix) != 0) {
    fds.msix = take();
    fds.msix_area = rep.msix;
  }
  while (next < m.num_fds) UniqueFd(m.fds[next++]);  // none expected: closed
  std::free(replies.msgs);
  if (rep.status != 0)
    return Fail(rep.status == ENOENT ? ENOENT : rep.status,
                "the primary does not offer controller " + std::to_string(index) + " (detached?)");
  if (!fds.doorbells.valid()) return Fail(EPROTO, "the primary's reply for controller " + std::to_string(index) + " had no fd");
  fds.doorbell_file_offset = rep.offset;
  fds.doorbell_bytes = rep.bytes;
  return fds;
}

}  // namespace nvmux
