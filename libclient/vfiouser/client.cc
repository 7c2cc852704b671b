#include "libclient/vfiouser/client.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <utility>

#include "shm/base/log.h"

namespace nvmux::vfiouser {

MappedArea::MappedArea(MappedArea&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MappedArea& MappedArea::operator=(MappedArea&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedArea::~MappedArea() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

Client::Client(UniqueFd sock, ClientOptions options)
    : sock_(std::move(sock)), options_(std::move(options)) {}

Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::Connect(const std::string& socket_dir, ClientOptions options) {
  std::string path = socket_dir + "/cntrl";
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    return Fail(ENAMETOOLONG, "vfio-user: socket path '" + path + "' is longer than " +
                                  std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return ErrnoError("vfio-user: socket");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  while (::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno == EINTR) continue;
    return ErrnoError("vfio-user: connect to '" + path + "'");
  }
  return std::unique_ptr<Client>(new Client(std::move(sock), std::move(options)));
}

Error Client::Broken(const Error& cause) {
  broken_ = true;
  int code = cause.code;
  if (code != ETIMEDOUT && code != EPROTO) code = ENXIO;
  NVMUX_LOG(kWarning, "vfio-user client: connection unusable: %s", cause.ToString().c_str());
  return Fail(code, "vfio-user: connection lost: " + cause.message);
}

Result<Message> Client::CallLocked(Header header, std::span<const uint8_t> payload,
                                   std::span<const int> fds, bool raw_size) {
  if (broken_) return Fail(ENXIO, "vfio-user: connection already lost");
  header.msg_id = next_msg_id_++;
  if (raw_size) {
    // Send the header verbatim (a lying msg_size included).
    std::vector<uint8_t> bytes;
    AppendStruct(bytes, header);
    bytes.insert(bytes.end(), payload.begin(), payload.end());
    ssize_t n = ::send(sock_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n != static_cast<ssize_t>(bytes.size())) return Broken(ErrnoError("vfio-user: send"));
  } else {
    Status sent = SendMessage(sock_.get(), header, payload, fds);
    if (!sent) return Broken(sent.error());
  }
  auto reply = RecvMessage(sock_.get(), options_.timeout_ms, kMaxMessageSize, kMaxMsgFdsLimit);
  // An adopted connection may still carry late replies to the previous owner.
  for (int stale = 0; adopted_ && reply && stale < 16 && reply->header.msg_id != header.msg_id &&
                      (reply->header.flags & kFlagTypeMask) == kFlagTypeReply;
       ++stale)
    reply = RecvMessage(sock_.get(), options_.timeout_ms, kMaxMessageSize, kMaxMsgFdsLimit);
  if (!reply) return Broken(reply.error());
  const Header& rh = reply->header;
  if ((rh.flags & kFlagTypeMask) != kFlagTypeReply || rh.msg_id != header.msg_id ||
      rh.cmd != header.cmd) {
    return Broken(Fail(EPROTO, "vfio-user: reply does not match request (msg_id " +
                                   std::to_string(rh.msg_id) + " cmd " + std::to_string(rh.cmd) + ")"));
  }
  if ((rh.flags & kFlagError) != 0) {
    int code = rh.error_no != 0 ? static_cast<int>(rh.error_no) : EIO;
    return Fail(code, std::string("vfio-user: server rejected ") +
                          ToString(static_cast<Command>(header.cmd)));
  }
  return reply;
}

std::unique_ptr<Client> Client::Adopt(UniqueFd sock, ClientOptions options) {
  // Drop what the previous owner left half-read (it died mid-reply).
  uint8_t scratch[4096];
  while (::recv(sock.get(), scratch, sizeof scratch, MSG_DONTWAIT) > 0) {
  }
  std::unique_ptr<Client> c(new Client(std::move(sock), std::move(options)));
  c->adopted_ = true;
  c->next_msg_id_ = 0x8000;  // far from the previous owner's ids
  return c;
}

Result<Message> Client::Call(Command cmd, std::span<const uint8_t> payload, std::span<const int> fds,
                             uint32_t flags) {
  std::lock_guard<std::mutex> lock(mutex_);
  Header h;
  h.cmd = static_cast<uint16_t>(cmd);
  h.flags = flags;
  return CallLocked(h, payload, fds, false);
}

Result<Message> Client::CallRaw(const Header& header, std::span<const uint8_t> bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  return CallLocked(header, bytes, {}, true);
}

Result<Message> Client::ReceiveRequest(int timeout_ms, int cancel_fd) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (broken_) return Fail(ENXIO, "vfio-user: connection already lost");
  auto msg = RecvMessage(sock_.get(), timeout_ms, kMaxMessageSize, kMaxMsgFdsLimit, cancel_fd);
  if (!msg) {
    if (msg.error().code == ETIMEDOUT || msg.error().code == ECANCELED) return msg.error();
    return Broken(msg.error());
  }
  if ((msg->header.flags & kFlagTypeMask) != kFlagTypeCommand) {
    return Broken(Fail(EPROTO, "vfio-user: unexpected reply (msg_id " + std::to_string(msg->header.msg_id) +
                                   ") while waiting for a server request"));
  }
  return msg;
}

Status Client::SendReply(const Header& request, std::span<const uint8_t> payload, uint32_t error_no) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (broken_) return Fail(ENXIO, "vfio-user: connection already lost");
  Header h;
  h.msg_id = request.msg_id;
  h.cmd = request.cmd;
  h.flags = kFlagTypeReply | (error_no != 0 ? kFlagError : 0u);
  h.error_no = error_no;
  Status sent = SendMessage(sock_.get(), h, payload);
  if (!sent) return Broken(sent.error());
  return Ok();
}

Result<Capabilities> Client::Negotiate() {
  std::vector<uint8_t> payload;
  AppendStruct(payload, VersionPayload{kVersionMajor, kVersionMinor});
  std::string json = FormatCapabilities(options_.caps);
  payload.insert(payload.end(), json.begin(), json.end());
  payload.push_back(0);
  auto reply = Call(Command::kVersion, payload);
  if (!reply) return reply.error();
  auto version = ReadStruct<VersionPayload>(reply->payload);
  if (!version || version->major != kVersionMajor) {
    return Fail(EPROTO, "vfio-user: server speaks an unsupported protocol version");
  }
  std::span<const uint8_t> rest(reply->payload.data() + sizeof(VersionPayload),
                                reply->payload.size() - sizeof(VersionPayload));
  std::string_view text(reinterpret_cast<const char*>(rest.data()), rest.size());
  if (!text.empty() && text.back() == '\0') text.remove_suffix(1);
  auto caps = ParseCapabilities(text);
  if (!caps) return Fail(EPROTO, caps.error().message);
  server_max_fds_ = caps->max_msg_fds;
  return caps;
}

Result<DeviceInfo> Client::GetDeviceInfo() {
  std::vector<uint8_t> payload;
  AppendStruct(payload, DeviceInfo{});
  auto reply = Call(Command::kDeviceGetInfo, payload);
  if (!reply) return reply.error();
  auto info = ReadStruct<DeviceInfo>(reply->payload);
  if (!info) return Fail(EPROTO, "vfio-user: short DEVICE_GET_INFO reply");
  return *info;
}

Result<RegionDescription> Client::GetRegionInfo(uint32_t index) {
  // Ask with room for a capability chain of up to 8 sparse areas.
  std::vector<uint8_t> payload;
  RegionInfo req;
  req.argsz = sizeof(RegionInfo) + sizeof(SparseMmapCap) + 8 * sizeof(SparseMmapArea);
  req.index = index;
  AppendStruct(payload, req);
  auto reply = Call(Command::kDeviceGetRegionInfo, payload);
  if (!reply) return reply.error();
  auto info = ReadStruct<RegionInfo>(reply->payload);
  if (!info) return Fail(EPROTO, "vfio-user: short DEVICE_GET_REGION_INFO reply");
  RegionDescription out;
  out.index = info->index;
  out.flags = info->flags;
  out.size = info->size;
  out.file_offset = info->offset;
  if (!reply->fds.empty()) out.fd = std::move(reply->fds.front());
  if ((info->flags & kRegionFlagCaps) != 0 && info->cap_offset != 0) {
    uint32_t cap_at = info->cap_offset;
    for (int hops = 0; cap_at != 0 && hops < 16; ++hops) {
      auto cap = ReadStruct<CapHeader>(reply->payload, cap_at);
      if (!cap) return Fail(EPROTO, "vfio-user: region capability beyond the reply");
      if (cap->id == kCapSparseMmap) {
        auto sparse = ReadStruct<SparseMmapCap>(reply->payload, cap_at);
        if (!sparse) return Fail(EPROTO, "vfio-user: truncated sparse-mmap capability");
        for (uint32_t i = 0; i < sparse->nr_areas && i < 64; ++i) {
          auto area = ReadStruct<SparseMmapArea>(
              reply->payload, cap_at + sizeof(SparseMmapCap) + i * sizeof(SparseMmapArea));
          if (!area) return Fail(EPROTO, "vfio-user: truncated sparse-mmap area list");
          out.sparse_areas.push_back(*area);
        }
      }
      if (cap->next != 0 && cap->next <= cap_at) break;  // no loops
      cap_at = cap->next;
    }
  }
  return out;
}

Result<RegionIoFds> Client::GetRegionIoFds(uint32_t index) {
  uint32_t argsz = sizeof(RegionIoFdsRequest) + 8 * sizeof(SubRegionIoFd);
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::vector<uint8_t> payload;
    RegionIoFdsRequest req;
    req.argsz = argsz;
    req.index = index;
    AppendStruct(payload, req);
    auto reply = Call(Command::kDeviceGetRegionIoFds, payload);
    if (!reply) {
      int code = reply.error().code;
      if (!broken() && (code == ENOTSUP || code == ENOSYS || code == EINVAL))
        return Fail(ENOTSUP, "vfio-user: the server offers no io fds for region " + std::to_string(index) + " (" +
                                 reply.error().message + ")");
      return reply.error();
    }
    auto head = ReadStruct<RegionIoFdsRequest>(reply->payload);
    if (!head) return Fail(EPROTO, "vfio-user: short DEVICE_GET_REGION_IO_FDS reply");
    if (head->count == 0) return Fail(ENOTSUP, "vfio-user: the server offers no io fds for region " + std::to_string(index));
    if (head->argsz > argsz && reply->payload.size() <= sizeof(RegionIoFdsRequest)) {
      if (head->argsz > 64 * 1024) return Fail(EPROTO, "vfio-user: DEVICE_GET_REGION_IO_FDS wants an absurd argsz");
      argsz = head->argsz;  // ask again with room for every entry
      continue;
    }
    const size_t entry = (reply->payload.size() - sizeof(RegionIoFdsRequest)) / head->count;
    if (entry < sizeof(SubRegionIoFd))
      return Fail(EPROTO, "vfio-user: DEVICE_GET_REGION_IO_FDS reply shorter than its " + std::to_string(head->count) +
                              " sub-regions");
    RegionIoFds out;
    for (uint32_t i = 0; i < head->count; ++i) {
      auto sub = ReadStruct<SubRegionIoFd>(reply->payload, sizeof(RegionIoFdsRequest) + i * entry);
      if (!sub) return Fail(EPROTO, "vfio-user: truncated sub-region list");
      if (sub->fd_index >= reply->fds.size())
        return Fail(EPROTO, "vfio-user: sub-region " + std::to_string(i) + " names fd " + std::to_string(sub->fd_index) +
                                " of " + std::to_string(reply->fds.size()) + " passed");
      out.sub_regions.push_back(*sub);
    }
    out.fds = std::move(reply->fds);
    return out;
  }
  return Fail(EPROTO, "vfio-user: DEVICE_GET_REGION_IO_FDS reply kept growing");
}

Result<IrqInfo> Client::GetIrqInfo(uint32_t index) {
  std::vector<uint8_t> payload;
  IrqInfo req;
  req.index = index;
  AppendStruct(payload, req);
  auto reply = Call(Command::kDeviceGetIrqInfo, payload);
  if (!reply) return reply.error();
  auto info = ReadStruct<IrqInfo>(reply->payload);
  if (!info) return Fail(EPROTO, "vfio-user: short DEVICE_GET_IRQ_INFO reply");
  return *info;
}

Status Client::SetIrqs(uint32_t index, uint32_t flags, uint32_t start, uint32_t count,
                       std::span<const int> fds) {
  std::vector<uint8_t> payload;
  IrqSet req;
  req.flags = flags;
  req.index = index;
  req.start = start;
  req.count = count;
  AppendStruct(payload, req);
  auto reply = Call(Command::kDeviceSetIrqs, payload, fds);
  if (!reply) return reply.error();
  return Ok();
}

Result<std::vector<uint8_t>> Client::ReadRegion(uint32_t region, uint64_t offset, uint32_t count) {
  std::vector<uint8_t> payload;
  AppendStruct(payload, RegionAccess{offset, region, count});
  auto reply = Call(Command::kRegionRead, payload);
  if (!reply) return reply.error();
  auto access = ReadStruct<RegionAccess>(reply->payload);
  if (!access || access->count != count || reply->payload.size() != sizeof(RegionAccess) + count) {
    return Fail(EPROTO, "vfio-user: REGION_READ reply has the wrong size");
  }
  return std::vector<uint8_t>(reply->payload.begin() + sizeof(RegionAccess), reply->payload.end());
}

Status Client::WriteRegion(uint32_t region, uint64_t offset, std::span<const uint8_t> data) {
  std::vector<uint8_t> payload;
  AppendStruct(payload, RegionAccess{offset, region, static_cast<uint32_t>(data.size())});
  payload.insert(payload.end(), data.begin(), data.end());
  auto reply = Call(Command::kRegionWrite, payload);
  if (!reply) return reply.error();
  return Ok();
}

Result<uint32_t> Client::Read32(uint32_t region, uint64_t offset) {
  auto bytes = ReadRegion(region, offset, 4);
  if (!bytes) return bytes.error();
  return *ReadStruct<uint32_t>(*bytes);
}

Result<uint64_t> Client::Read64(uint32_t region, uint64_t offset) {
  auto bytes = ReadRegion(region, offset, 8);
  if (!bytes) return bytes.error();
  return *ReadStruct<uint64_t>(*bytes);
}

Status Client::Write32(uint32_t region, uint64_t offset, uint32_t value) {
  return WriteRegion(region, offset, std::span(reinterpret_cast<const uint8_t*>(&value), 4));
}

Status Client::Write64(uint32_t region, uint64_t offset, uint64_t value) {
  return WriteRegion(region, offset, std::span(reinterpret_cast<const uint8_t*>(&value), 8));
}

Status Client::DmaMap(int fd, uint64_t fd_offset, uint64_t iova, uint64_t size, uint32_t flags) {
  std::vector<uint8_t> payload;
  DmaMapPayload req;
  req.flags = flags;
  req.offset = fd_offset;
  req.address = iova;
  req.size = size;
  AppendStruct(payload, req);
  int fds[1] = {fd};
  auto reply = Call(Command::kDmaMap, payload, std::span<const int>(fds, fd >= 0 ? 1 : 0));
  if (!reply) return reply.error();
  return Ok();
}

Status Client::DmaUnmap(uint64_t iova, uint64_t size) {
  std::vector<uint8_t> payload;
  DmaUnmapPayload req;
  req.address = iova;
  req.size = size;
  AppendStruct(payload, req);
  auto reply = Call(Command::kDmaUnmap, payload);
  if (!reply) return reply.error();
  return Ok();
}

Status Client::Reset() {
  auto reply = Call(Command::kDeviceReset, {});
  if (!reply) return reply.error();
  return Ok();
}

Result<MappedArea> Client::MapSparseArea(const RegionDescription& region, size_t area) {
  if (area >= region.sparse_areas.size()) {
    return Fail(EINVAL, "vfio-user: region " + std::to_string(region.index) + " has " +
                            std::to_string(region.sparse_areas.size()) + " sparse areas, asked for #" +
                            std::to_string(area));
  }
  if (!region.fd.valid()) return Fail(EINVAL, "vfio-user: region has no fd to mmap");
  const SparseMmapArea& a = region.sparse_areas[area];
  void* p = ::mmap(nullptr, a.size, PROT_READ | PROT_WRITE, MAP_SHARED, region.fd.get(),
                   static_cast<off_t>(region.file_offset + a.offset));
  if (p == MAP_FAILED) return ErrnoError("vfio-user: mmap of sparse area");
  return MappedArea(p, a.size);
}

}  // namespace nvmux::vfiouser
