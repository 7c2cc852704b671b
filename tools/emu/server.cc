#include "tools/emu/server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "shm/base/log.h"

namespace nvmux::emu {

using namespace nvmux::vfiouser;

namespace {

constexpr uint32_t kBar4Size = MsixTable::kTableBytes;  // MSI-X table: up to 2048 vectors of 16 bytes
constexpr uint32_t kBar5Size = MsixTable::kPbaBytes;

// The vfio-user error numbers travel as positive errno values.
Error Invalid(const std::string& what) { return Fail(EINVAL, what); }

}  // namespace

Server::Server(Controller& controller, int doorbell_fd, uint32_t* doorbells, std::function<void()> on_doorbell)
    : controller_(controller),
      config_({Controller::kBar0Size, 0, 0, 0, kBar4Size, kBar5Size}, controller.msix_vectors()),
      doorbell_fd_(doorbell_fd),
      doorbells_(doorbells),
      on_doorbell_(std::move(on_doorbell)) {}

Server::~Server() {
  controller_.SetDmaMessenger(nullptr);
  listen_fd_.Reset();
  if (!socket_path_.empty()) ::unlink(socket_path_.c_str());
  if (created_dir_) ::rmdir(socket_dir_.c_str());
}

Result<std::unique_ptr<Server>> Server::Create(const std::string& socket_dir, Controller& controller,
                                               int doorbell_fd, uint32_t* doorbells,
                                               std::function<void()> on_doorbell) {
  std::unique_ptr<Server> server(new Server(controller, doorbell_fd, doorbells, std::move(on_doorbell)));
  server->socket_dir_ = socket_dir;
  const std::string path = socket_dir + "/cntrl";
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    return Fail(ENAMETOOLONG, "--socket '" + socket_dir + "': socket path '" + path + "' is longer than " +
                                  std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  if (::mkdir(socket_dir.c_str(), 0700) == 0) {
    server->created_dir_ = true;
  } else if (errno != EEXIST) {
    return ErrnoError("--socket '" + socket_dir + "': cannot create the directory");
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);

  struct stat st{};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Fail(EEXIST, "'" + path + "' exists and is not a socket");
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe.valid() && ::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      return Fail(EADDRINUSE, "'" + path + "': another server is listening there");
    }
    ::unlink(path.c_str());  // stale socket from a dead server
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError("socket");
  // Bound and listening under a name of the same length, then renamed.
  const std::string temp = socket_dir + "/.cnew";
  std::memcpy(addr.sun_path, temp.c_str(), temp.size() + 1);
  ::unlink(temp.c_str());  // a dead emulator's, never published
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoError("bind '" + temp + "'");
  }
  server->socket_path_ = temp;  // from here on the destructor removes it
  if (::listen(fd.get(), 4) != 0) return ErrnoError("listen '" + temp + "'");
  server->listen_fd_ = std::move(fd);
  server->remove_fd_.Reset(::eventfd(0, EFD_CLOEXEC));
  if (!server->remove_fd_.valid()) return ErrnoError("eventfd");
  server->kick_fd_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!server->kick_fd_.valid()) return ErrnoError("eventfd");
  controller.SetDmaMessenger(server.get());
  return server;
}

Status Server::Publish() {
  const std::string path = socket_dir_ + "/cntrl";
  if (::renameat2(AT_FDCWD, socket_path_.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST) return Fail(EADDRINUSE, "'" + path + "': another server started there meanwhile");
    return ErrnoError("naming the socket '" + path + "'");
  }
  socket_path_ = path;
  return Ok();
}

void Server::Remove() {
  {
    std::lock_guard<std::mutex> lock(client_mutex_);
    if (removed_.exchange(true)) return;
    // Refuses connects at once (a shut-down AF_UNIX listener answers
    // ECONNREFUSED); the socket thread closes it when it wakes.
    if (listen_fd_.valid()) ::shutdown(listen_fd_.get(), SHUT_RDWR);
    // Ends the connection now, even mid-message: the serving thread sees EOF.
    if (client_fd_ >= 0) ::shutdown(client_fd_, SHUT_RDWR);
  }
  uint64_t one = 1;
  (void)!::write(remove_fd_.get(), &one, sizeof(one));
}

void Server::Run(int stop_fd) {
  for (;;) {
    if (removed_.load() && listen_fd_.valid()) {
      std::lock_guard<std::mutex> lock(client_mutex_);  // Remove() may be using it
      listen_fd_.Reset();
      NVMUX_LOG(kWarning, "nvmux-emu: surprise removal: vfio-user socket closed");
    }
    pollfd pfds[3] = {{stop_fd, POLLIN, 0}, {remove_fd_.get(), POLLIN, 0}, {listen_fd_.get(), POLLIN, 0}};
    // Once removed, only stop_fd matters (remove_fd stays readable).
    const nfds_t n = listen_fd_.valid() ? 3 : 1;
    if (::poll(pfds, n, -1) < 0) {
      if (errno == EINTR) continue;
      NVMUX_LOG(kError, "nvmux-emu: poll: %s", std::strerror(errno));
      return;
    }
    if (pfds[0].revents != 0) return;
    if (n == 1 || pfds[1].revents != 0 || (pfds[2].revents & POLLIN) == 0) continue;
    UniqueFd client(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client.valid()) continue;
    NVMUX_LOG(kInfo, "nvmux-emu: client connected");
    ServeClient(std::move(client), stop_fd);
    if (::poll(pfds, 1, 0) > 0) return;  // stopping
  }
}

void Server::ServeClient(UniqueFd client, int stop_fd) {
  {
    std::lock_guard<std::mutex> lock(client_mutex_);
    if (removed_.load()) return;  // accepted just as the device went away
    client_fd_ = client.get();
  }
  negotiated_ = false;
  client_caps_ = Capabilities{};
  dma_max_xfer_.store(kDefaultMaxDataXferSize);
  controller_.SetClientKicks(false);  // until this client asks for the ioeventfd
  // A client that stops reading cannot block a sender (the poller's DMA
  // requests, our replies) for longer than this: the send fails instead.
  const timeval send_timeout{kMessageTimeoutMs / 1000, 0};
  (void)::setsockopt(client.get(), SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout));
  {
    std::lock_guard<std::mutex> lock(send_mutex_);
    dma_fd_ = client.get();
  }
  for (;;) {
    pollfd pfds[4] = {{stop_fd, POLLIN, 0},
                      {client.get(), POLLIN, 0},
                      {listen_fd_.get(), POLLIN, 0},
                      {remove_fd_.get(), POLLIN, 0}};
    if (::poll(pfds, 4, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (pfds[0].revents != 0 || pfds[3].revents != 0) break;
    // The current client first: a client that closed and reconnected shows
    // its hangup and the new connection in the same poll, and must not be
    // refused as a second client.
    if (pfds[1].revents != 0) {
      if (!HandleOne(client.get(), stop_fd)) break;
      continue;
    }
    if ((pfds[2].revents & POLLIN) != 0) {
      // One client at a time: turn others away rather than leave them hanging.
      UniqueFd extra(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      NVMUX_LOG(kWarning, "nvmux-emu: refused a second client while one is connected");
    }
  }
  {
    std::lock_guard<std::mutex> lock(client_mutex_);
    client_fd_ = -1;
  }
  {
    std::lock_guard<std::mutex> lock(send_mutex_);
    dma_fd_ = -1;  // before `client` closes: no request goes to a reused fd
  }
  {
    // Requests still waiting will get no reply.
    std::lock_guard<std::mutex> lock(dma_mutex_);
    for (auto& [id, pending] : pending_dma_) pending->done = true;
  }
  dma_cv_.notify_all();
  controller_.SetClientKicks(false);
  controller_.DropClient();
  NVMUX_LOG(kInfo, "nvmux-emu: client disconnected; DMA mappings dropped");
}

void Server::SendError(int client, const Header& request, int error_no) {
  Header h;
  h.msg_id = request.msg_id;
  h.cmd = request.cmd;
  h.flags = kFlagTypeReply | kFlagError;
  h.error_no = static_cast<uint32_t>(error_no);
  (void)Send(client, h, {});
}

Status Server::Send(int client, const Header& h, std::span<const uint8_t> payload, std::span<const int> fds) {
  std::lock_guard<std::mutex> lock(send_mutex_);
  return SendMessage(client, h, payload, fds);
}

bool Server::DmaRead(uint64_t iova, std::span<uint8_t> out) {
  const uint64_t chunk = std::max<uint64_t>(1, std::min<uint64_t>(dma_max_xfer_.load(), kDefaultMaxDataXferSize));
  for (uint64_t done = 0; done < out.size();) {
    const uint64_t n = std::min<uint64_t>(chunk, out.size() - done);
    if (!DmaRequest(Command::kDmaRead, iova + done, out.data() + done, n)) return false;
    done += n;
  }
  return true;
}

bool Server::DmaWrite(uint64_t iova, std::span<const uint8_t> data) {
  const uint64_t chunk = std::max<uint64_t>(1, std::min<uint64_t>(dma_max_xfer_.load(), kDefaultMaxDataXferSize));
  for (uint64_t done = 0; done < data.size();) {
    const uint64_t n = std::min<uint64_t>(chunk, data.size() - done);
    // DmaRequest only reads `data` for a DMA_WRITE.
    if (!DmaRequest(Command::kDmaWrite, iova + done, const_cast<uint8_t*>(data.data()) + done, n)) return false;
    done += n;
  }
  return true;
}

bool Server::DmaRequest(Command cmd, uint64_t iova, uint8_t* data, uint64_t count) {
  PendingDma pending{static_cast<uint16_t>(cmd), iova, data, count};
  uint16_t id;
  {
    std::lock_guard<std::mutex> lock(dma_mutex_);
    id = next_dma_id_++;
    pending_dma_[id] = &pending;
  }
  Header h;
  h.msg_id = id;
  h.cmd = static_cast<uint16_t>(cmd);
  h.flags = kFlagTypeCommand;
  std::vector<uint8_t> payload;
  AppendStruct(payload, DmaRw{iova, count});
  if (cmd == Command::kDmaWrite) payload.insert(payload.end(), data, data + count);
  bool sent = false;
  {
    std::lock_guard<std::mutex> lock(send_mutex_);
    if (dma_fd_ >= 0) {
      Status st = SendMessage(dma_fd_, h, payload);
      sent = static_cast<bool>(st);
      if (!sent) {
        // Part of a message may have gone: the stream cannot be trusted.
        NVMUX_LOG(kWarning, "nvmux-emu: sending %s failed (%s); dropping client", ToString(cmd),
                  st.error().ToString().c_str());
        ::shutdown(dma_fd_, SHUT_RDWR);
      }
    }
  }
  std::unique_lock<std::mutex> lock(dma_mutex_);
  const bool answered =
      sent && dma_cv_.wait_for(lock, std::chrono::milliseconds(kDmaReplyTimeoutMs), [&] { return pending.done; });
  pending_dma_.erase(id);
  if (sent && !answered) {
    NVMUX_LOG(kWarning, "nvmux-emu: no reply to %s (msg_id %u, [0x%llx, +0x%llx)) within %d ms", ToString(cmd), id,
              static_cast<unsigned long long>(iova), static_cast<unsigned long long>(count), kDmaReplyTimeoutMs);
    abandoned_dma_.push_back(id);
    if (abandoned_dma_.size() > 64) abandoned_dma_.pop_front();
  }
  return answered && pending.ok;
}

bool Server::DeliverDmaReply(const Header& h, std::span<const uint8_t> payload) {
  const auto cmd = static_cast<Command>(h.cmd);
  if (cmd != Command::kDmaRead && cmd != Command::kDmaWrite) return false;
  std::lock_guard<std::mutex> lock(dma_mutex_);
  auto it = pending_dma_.find(h.msg_id);
  if (it == pending_dma_.end() || it->second->done) {
    if (std::find(abandoned_dma_.begin(), abandoned_dma_.end(), h.msg_id) == abandoned_dma_.end()) return false;
    NVMUX_LOG(kInfo, "nvmux-emu: late %s reply (msg_id %u) dropped", ToString(cmd), h.msg_id);
    return true;
  }
  PendingDma& p = *it->second;
  const auto rw = ReadStruct<DmaRw>(payload);
  const bool echoes = rw && rw->address == p.iova && rw->count == p.count;
  const char* bad = nullptr;
  if (p.cmd != h.cmd) {
    bad = "answers a different command";
  } else if ((h.flags & kFlagError) != 0) {
    bad = "is an error reply";
  } else if (cmd == Command::kDmaRead) {
    if (!echoes || payload.size() != sizeof(DmaRw) + p.count) bad = "does not carry exactly the bytes asked for";
  } else if (!payload.empty() && (!echoes || payload.size() != sizeof(DmaRw))) {
    bad = "is malformed (neither empty nor the request's address and count)";
  }
  if (bad != nullptr) {
    NVMUX_LOG(kWarning, "nvmux-emu: %s reply (msg_id %u, %zu payload bytes, errno %u) %s: the transfer fails",
              ToString(cmd), h.msg_id, payload.size(), h.error_no, bad);
  } else if (cmd == Command::kDmaRead) {
    std::memcpy(p.data, payload.data() + sizeof(DmaRw), static_cast<size_t>(p.count));
  }
  p.ok = bad == nullptr;
  p.done = true;
  dma_cv_.notify_all();
  return true;
}

bool Server::HandleOne(int client, int stop_fd) {
  auto head = RecvHeader(client, kMessageTimeoutMs, kMaxMsgFdsLimit, stop_fd);
  if (!head) {
    if (head.error().code != ENOTCONN) {
      NVMUX_LOG(kWarning, "nvmux-emu: dropping client: %s", head.error().ToString().c_str());
    }
    return false;
  }
  const Header h = head->header;
  if (h.msg_size < sizeof(Header)) {
    NVMUX_LOG(kWarning, "nvmux-emu: msg_size %u below the header size; dropping client", h.msg_size);
    SendError(client, h, EINVAL);
    return false;
  }
  const uint64_t body = h.msg_size - sizeof(Header);
  if (h.msg_size > kMaxMessageSize || head->fds.size() > kDefaultMaxMsgFds) {
    const size_t nfds = head->fds.size();
    head->fds.clear();
    if (!Discard(client, body, kMessageTimeoutMs, stop_fd)) return false;
    NVMUX_LOG(kInfo, "nvmux-emu: refused message cmd %u: msg_size %u or %zu fds over the limit", h.cmd,
              h.msg_size, nfds);
    SendError(client, h, h.msg_size > kMaxMessageSize ? E2BIG : EINVAL);
    return true;
  }
  std::vector<uint8_t> payload(static_cast<size_t>(body));
  if (!RecvExact(client, payload, kMessageTimeoutMs, stop_fd)) return false;
  if ((h.flags & kFlagTypeMask) != kFlagTypeCommand) {
    // The answer to one of our DMA requests goes to the waiting poller.
    if ((h.flags & kFlagTypeMask) == kFlagTypeReply && DeliverDmaReply(h, payload)) return true;
    SendError(client, h, EINVAL);
    return true;
  }
  auto reply = Dispatch(h, payload, head->fds);
  if (!reply) {
    NVMUX_LOG(kInfo, "nvmux-emu: cmd %u failed: %s", h.cmd, reply.error().ToString().c_str());
    SendError(client, h, reply.error().code);
    return true;
  }
  if ((h.flags & kFlagNoReply) != 0) return true;
  Header rh;
  rh.msg_id = h.msg_id;
  rh.cmd = h.cmd;
  rh.flags = kFlagTypeReply;
  int fds[1] = {reply->fd};
  return static_cast<bool>(Send(client, rh, reply->payload, std::span<const int>(fds, reply->fd >= 0 ? 1 : 0)));
}

Result<Server::Reply> Server::Dispatch(const Header& h, std::span<const uint8_t> payload,
                                       std::vector<UniqueFd>& fds) {
  const auto cmd = static_cast<Command>(h.cmd);
  if (!negotiated_ && cmd != Command::kVersion) return Invalid("VERSION must be the first message");
  // Only DMA_MAP and SET_IRQS take fds; others arriving with some are closed.
  switch (cmd) {
    case Command::kVersion: return Version(payload);
    case Command::kDmaMap: return DmaMap(payload, fds);
    case Command::kDmaUnmap: return DmaUnmap(payload);
    case Command::kDeviceGetInfo: return GetInfo(payload);
    case Command::kDeviceGetRegionInfo: return GetRegionInfo(payload);
    case Command::kDeviceGetIrqInfo: return GetIrqInfo(payload);
    case Command::kDeviceSetIrqs: return SetIrqs(payload, fds);
    case Command::kRegionRead: return RegionAccess(payload, false);
    case Command::kRegionWrite: return RegionAccess(payload, true);
    case Command::kDeviceReset:
      controller_.Reset();
      return Reply{};
    case Command::kDeviceGetRegionIoFds: return GetRegionIoFds(payload);
    case Command::kDmaRead:
    case Command::kDmaWrite:
    case Command::kDirtyPages:
      return Fail(ENOTSUP, std::string(ToString(cmd)) + " is not supported");
  }
  return Fail(ENOSYS, "unknown command " + std::to_string(h.cmd));
}

Result<Server::Reply> Server::Version(std::span<const uint8_t> payload) {
  auto v = ReadStruct<VersionPayload>(payload);
  if (!v) return Invalid("VERSION payload shorter than 4 bytes");
  if (v->major != kVersionMajor) return Fail(ENOTSUP, "VERSION major " + std::to_string(v->major) + " unsupported");
  std::string_view json(reinterpret_cast<const char*>(payload.data()) + sizeof(VersionPayload),
                        payload.size() - sizeof(VersionPayload));
  if (!json.empty()) {
    if (json.back() != '\0') return Invalid("VERSION capabilities are not NUL-terminated");
    json.remove_suffix(1);
    if (json.find('\0') != std::string_view::npos) return Invalid("VERSION capabilities contain a NUL");
  }
  auto caps = ParseCapabilities(json);
  if (!caps) return caps.error();
  client_caps_ = *caps;
  dma_max_xfer_.store(caps->max_data_xfer_size);
  negotiated_ = true;
  Capabilities ours;
  ours.max_msg_fds = kDefaultMaxMsgFds;
  ours.max_data_xfer_size = kDefaultMaxDataXferSize;
  ours.max_dma_maps = kMaxDmaMaps;
  ours.pgsizes = 4096;
  Reply r;
  AppendStruct(r.payload, VersionPayload{kVersionMajor, std::min(v->minor, kVersionMinor)});
  std::string text = FormatCapabilities(ours);
  r.payload.insert(r.payload.end(), text.begin(), text.end());
  r.payload.push_back(0);
  return r;
}

Result<Server::Reply> Server::DmaMap(std::span<const uint8_t> payload, std::vector<UniqueFd>& fds) {
  auto m = ReadStruct<DmaMapPayload>(payload);
  if (!m || m->argsz < sizeof(DmaMapPayload)) return Invalid("DMA_MAP payload shorter than 32 bytes");
  if ((m->flags & ~(kDmaFlagRead | kDmaFlagWrite)) != 0) return Invalid("DMA_MAP flags unknown");
  if (fds.size() > 1) return Invalid("DMA_MAP takes at most one fd, got " + std::to_string(fds.size()));
  const bool readable = (m->flags & kDmaFlagRead) != 0, writable = (m->flags & kDmaFlagWrite) != 0;
  if (fds.empty()) {
    // The spec's fd-less region (QEMU maps its BIOS ROM so): command data
    // there moves by DMA_READ/DMA_WRITE; queues there are refused (CFS).
    NVMUX_TRY(controller_.MapDma(-1, 0, m->address, m->size, readable, writable));
    NVMUX_LOG(kInfo,
              "nvmux-emu: fd-less DMA region [0x%llx, +0x%llx) recorded; command data there is moved with "
              "VFIO_USER_DMA_READ/WRITE (queues there are a fatal error)",
              static_cast<unsigned long long>(m->address), static_cast<unsigned long long>(m->size));
    return Reply{};
  }
  NVMUX_TRY(controller_.MapDma(fds[0].get(), m->offset, m->address, m->size, readable, writable));
  return Reply{};
}

Result<Server::Reply> Server::DmaUnmap(std::span<const uint8_t> payload) {
  auto m = ReadStruct<DmaUnmapPayload>(payload);
  if (!m || m->argsz < sizeof(DmaUnmapPayload)) return Invalid("DMA_UNMAP payload shorter than 24 bytes");
  constexpr uint32_t kUnmapAll = 1u << 1;
  if (m->flags == kUnmapAll) {
    if (m->address != 0 || m->size != 0) return Invalid("DMA_UNMAP all: address and size must be 0");
    controller_.DropClient();
  } else if (m->flags != 0) {
    return Invalid("DMA_UNMAP flags unsupported (dirty bitmaps are not offered)");
  } else {
    NVMUX_TRY(controller_.UnmapDma(m->address, m->size));
  }
  Reply r;
  AppendStruct(r.payload, *m);
  return r;
}

Result<Server::Reply> Server::GetInfo(std::span<const uint8_t> payload) {
  auto in = ReadStruct<DeviceInfo>(payload);
  if (!in || in->argsz < sizeof(DeviceInfo)) return Invalid("DEVICE_GET_INFO argsz below 16");
  DeviceInfo info;
  info.flags = kDeviceFlagReset | kDeviceFlagPci;
  info.num_regions = kPciNumRegions;
  info.num_irqs = kPciNumIrqs;
  Reply r;
  AppendStruct(r.payload, info);
  return r;
}

uint32_t Server::RegionSize(uint32_t index) const {
  switch (index) {
    case kPciBar0Region: return Controller::kBar0Size;
    case kPciBar4Region: return kBar4Size;
    case kPciBar5Region: return kBar5Size;
    case kPciConfigRegion: return PciConfig::kSize;
  }
  return 0;
}

Result<Server::Reply> Server::GetRegionInfo(std::span<const uint8_t> payload) {
  auto in = ReadStruct<RegionInfo>(payload);
  if (!in || in->argsz < sizeof(RegionInfo)) return Invalid("DEVICE_GET_REGION_INFO argsz below 32");
  if (in->index >= kPciNumRegions) return Invalid("region index " + std::to_string(in->index) + " >= 9");
  RegionInfo info;
  info.index = in->index;
  info.size = RegionSize(in->index);
  if (info.size != 0) info.flags = kRegionFlagRead | kRegionFlagWrite;
  Reply r;
  const MsixTable* table = controller_.msix_table();
  if (in->index != kPciBar0Region && (in->index != kPciBar4Region || table == nullptr)) {
    AppendStruct(r.payload, info);
    return r;
  }
  // BAR0: the doorbell page is mmap-able from the doorbell memfd, whose file
  // offset 0 is BAR0 offset 0. BAR4: the whole MSI-X table, from its memfd.
  const bool bar0 = in->index == kPciBar0Region;
  const uint32_t needed = sizeof(RegionInfo) + sizeof(SparseMmapCap) + sizeof(SparseMmapArea);
  info.flags |= kRegionFlagMmap;
  info.offset = 0;
  info.argsz = needed;
  r.fd = bar0 ? doorbell_fd_ : table->fd();
  if (in->argsz < needed) {
    // No room for the capability chain: argsz says how much it needs and
    // the client asks again. The CAPS flag stays off in this reply: QEMU
    // refuses a CAPS flag whose cap_offset lies outside the argsz it sent.
    AppendStruct(r.payload, info);
    return r;
  }
  info.flags |= kRegionFlagCaps;
  info.cap_offset = sizeof(RegionInfo);
  AppendStruct(r.payload, info);
  SparseMmapCap cap;
  cap.nr_areas = 1;
  AppendStruct(r.payload, cap);
  AppendStruct(r.payload, bar0 ? SparseMmapArea{nvmux::spec::kDoorbellBase, 0x1000} : SparseMmapArea{0, kBar4Size});
  return r;
}

Result<Server::Reply> Server::GetRegionIoFds(std::span<const uint8_t> payload) {
  auto in = ReadStruct<RegionIoFdsRequest>(payload);
  if (!in || in->argsz < sizeof(RegionIoFdsRequest)) return Invalid("DEVICE_GET_REGION_IO_FDS argsz below 16");
  if (in->flags != 0 || in->count != 0) return Invalid("DEVICE_GET_REGION_IO_FDS: flags and count must be 0");
  if (in->index >= kPciNumRegions) return Invalid("region index " + std::to_string(in->index) + " >= 9");
  RegionIoFdsRequest head;
  head.index = in->index;
  Reply r;
  if (in->index != kPciBar0Region) {
    AppendStruct(r.payload, head);  // count 0: no io fds for this region
    return r;
  }
  head.count = 1;
  head.argsz = sizeof(RegionIoFdsRequest) + sizeof(SubRegionIoFd);
  AppendStruct(r.payload, head);
  if (in->argsz < head.argsz) return r;  // the client asks again with argsz = needed
  SubRegionIoFd sub;
  sub.offset = nvmux::spec::kDoorbellBase;
  sub.size = 0x1000;
  sub.fd_index = 0;
  sub.type = kIoFdTypeIoeventfd;
  AppendStruct(r.payload, sub);
  r.fd = kick_fd_.get();
  controller_.SetClientKicks(true);
  NVMUX_LOG(kInfo, "nvmux-emu: client took the doorbell ioeventfd: the poller may sleep until kicked");
  return r;
}

uint32_t Server::IrqCount(uint32_t index) const {
  switch (index) {
    case kPciIntxIrq: return 1;
    case kPciMsixIrq: return controller_.msix_vectors();
    // The error IRQ (QEMU registers one for AER recovery and warns when
    // there is none): offered and accepted, never raised, since the
    // emulated function has no PCIe errors to report.
    case kPciErrIrq: return 1;
  }
  return 0;
}

Result<Server::Reply> Server::GetIrqInfo(std::span<const uint8_t> payload) {
  auto in = ReadStruct<IrqInfo>(payload);
  if (!in || in->argsz < sizeof(IrqInfo)) return Invalid("DEVICE_GET_IRQ_INFO argsz below 16");
  if (in->index >= kPciNumIrqs) return Invalid("IRQ index " + std::to_string(in->index) + " >= 5");
  IrqInfo info;
  info.index = in->index;
  info.count = IrqCount(in->index);
  info.flags = info.count == 0 ? 0
               : kIrqInfoEventfd | (in->index == kPciIntxIrq ? kIrqInfoMaskable | kIrqInfoAutomasked
                                                             : kIrqInfoNoresize);
  Reply r;
  AppendStruct(r.payload, info);
  return r;
}

Result<Server::Reply> Server::SetIrqs(std::span<const uint8_t> payload, std::vector<UniqueFd>& fds) {
  auto s = ReadStruct<IrqSet>(payload);
  if (!s || s->argsz < sizeof(IrqSet)) return Invalid("DEVICE_SET_IRQS argsz below 20");
  if (s->index >= kPciNumIrqs) return Invalid("IRQ index " + std::to_string(s->index) + " >= 5");
  const uint32_t data = s->flags & (kIrqSetDataNone | kIrqSetDataBool | kIrqSetDataEventfd);
  const uint32_t action = s->flags & (kIrqSetActionMask | kIrqSetActionUnmask | kIrqSetActionTrigger);
  if (std::popcount(data) != 1 || std::popcount(action) != 1 || (s->flags & ~(data | action)) != 0) {
    return Invalid("DEVICE_SET_IRQS needs exactly one DATA_ and one ACTION_ flag");
  }
  // DATA_EVENTFD carries one fd per vector, or none at all: QEMU sends the
  // vectors it has no eventfd for that way (-1 entries of the VFIO ioctl),
  // which de-assigns them.
  if ((data != kIrqSetDataEventfd && !fds.empty()) ||
      (data == kIrqSetDataEventfd && !fds.empty() && fds.size() != s->count)) {
    return Invalid("DEVICE_SET_IRQS: " + std::to_string(fds.size()) + " fds for count " + std::to_string(s->count));
  }
  const uint32_t count = IrqCount(s->index);
  if (s->count == 0 && data == kIrqSetDataNone && action == kIrqSetActionTrigger) {
    if (s->index == kPciMsixIrq) controller_.ClearMsix();
    return Reply{};
  }
  if (s->start >= count || s->count > count - s->start) {
    return Invalid("DEVICE_SET_IRQS: vectors " + std::to_string(s->start) + "+" + std::to_string(s->count) +
                   " beyond the " + std::to_string(count) + " of index " + std::to_string(s->index));
  }
  if (s->index == kPciMsixIrq && action == kIrqSetActionTrigger && data == kIrqSetDataEventfd) {
    if (fds.empty()) fds.resize(s->count);  // invalid fds clear the vectors
    NVMUX_TRY(controller_.SetMsixEventfds(s->start, std::move(fds)));
  }
  // INTx and the error IRQ are never raised and masking is not modelled:
  // accepted as no-ops (their eventfds are closed).
  return Reply{};
}

Result<Server::Reply> Server::RegionAccess(std::span<const uint8_t> payload, bool write) {
  auto a = ReadStruct<vfiouser::RegionAccess>(payload);
  if (!a) return Invalid("REGION_READ/WRITE payload shorter than 16 bytes");
  const size_t expected = sizeof(vfiouser::RegionAccess) + (write ? a->count : 0);
  if (payload.size() != expected) {
    return Invalid("REGION access of " + std::to_string(a->count) + " bytes in a " +
                   std::to_string(payload.size()) + "-byte payload");
  }
  if (a->count == 0 || a->count > kDefaultMaxDataXferSize) {
    return Invalid("REGION access count " + std::to_string(a->count) + " outside 1..max_data_xfer_size");
  }
  const uint64_t size = a->region < kPciNumRegions ? RegionSize(a->region) : 0;
  if (a->offset >= size || a->count > size - a->offset) {
    return Invalid("REGION " + std::to_string(a->region) + " access [" + std::to_string(a->offset) + ", +" +
                   std::to_string(a->count) + ") outside its " + std::to_string(size) + " bytes");
  }
  Reply r;
  AppendStruct(r.payload, *a);
  if (controller_.removed()) {
    // A removed device: reads return all-ones, writes go nowhere.
    if (!write) r.payload.insert(r.payload.end(), a->count, 0xFF);
    return r;
  }
  std::vector<uint8_t> data(a->count, 0);
  if (write) std::memcpy(data.data(), payload.data() + sizeof(vfiouser::RegionAccess), a->count);
  const uint32_t off = static_cast<uint32_t>(a->offset);
  switch (a->region) {
    case kPciConfigRegion:
      if (write) {
        if (config_.Write(off, data)) {
          NVMUX_LOG(kInfo, "nvmux-emu: function level reset");
          controller_.Reset();
        }
        controller_.SetMsixEnabled(config_.msix_enabled());
      } else {
        config_.Read(off, data);
      }
      break;
    case kPciBar0Region: {
      auto done = Bar0Access(a->offset, data, write);
      if (!done) return done.error();
      break;
    }
    case kPciBar4Region:
      if (MsixTable* table = controller_.msix_table(); table == nullptr) {
        if (!write) std::fill(data.begin(), data.end(), 0);
      } else if (write) {
        table->WriteTable(off, data);
      } else {
        table->ReadTable(off, data);
      }
      break;
    case kPciBar5Region:
      if (const MsixTable* table = controller_.msix_table(); !write && table != nullptr) table->ReadPba(off, data);
      break;
  }
  if (!write) r.payload.insert(r.payload.end(), data.begin(), data.end());
  return r;
}

Result<Server::Reply> Server::Bar0Access(uint64_t offset, std::span<uint8_t> data, bool write) {
  const uint32_t off = static_cast<uint32_t>(offset);
  const uint32_t count = static_cast<uint32_t>(data.size());
  if (off < nvmux::spec::kDoorbellBase) {
    if (write) {
      uint64_t value = 0;
      std::memcpy(&value, data.data(), std::min<size_t>(data.size(), 8));
      NVMUX_TRY(controller_.WriteRegister(off, count, value));
      if (on_doorbell_) on_doorbell_();
    } else {
      auto value = controller_.ReadRegister(off, count);
      if (!value) return value.error();
      std::memcpy(data.data(), &*value, count);
    }
    return Reply{};
  }
  if (off < nvmux::spec::kDoorbellBase + 0x1000) {
    if (count != 4 || off % 4 != 0) return Invalid("doorbell access must be 4 bytes, aligned");
    if (write) {
      uint32_t value;
      std::memcpy(&value, data.data(), 4);
      controller_.WriteDoorbell(off, value);
      if (on_doorbell_) on_doorbell_();
    } else {
      uint32_t value =
          std::atomic_ref<uint32_t>(doorbells_[(off - nvmux::spec::kDoorbellBase) / 4]).load(std::memory_order_acquire);
      std::memcpy(data.data(), &value, 4);
    }
    return Reply{};
  }
  // [0x2000, 0x4000): reserved; reads zero, writes ignored.
  if (!write) std::memset(data.data(), 0, data.size());
  return Reply{};
}

}  // namespace nvmux::emu
