// Client: the raw client side of vfio-user, one connection to one device.
//
// Connect() opens <dir>/cntrl; Negotiate() must be the first request. Each
// call sends one request and waits (up to ClientOptions::timeout_ms) for its
// reply. A reply with the error flag becomes an Error carrying the server's
// errno. A transport failure — the server vanished, closed the socket, sent
// a malformed or mismatched reply, or did not answer in time — marks the
// client broken: that call returns ENXIO (connection lost), EPROTO
// (malformed reply) or ETIMEDOUT, and every later call returns ENXIO at once.
// Nothing here raises SIGPIPE or blocks without a deadline.
//
// Thread safety: all methods may be called from any thread; requests are
// serialised on an internal mutex.
// Ownership: the client owns its socket; MappedArea owns one mmap and may
// outlive the client.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "libclient/vfiouser/capabilities.h"
#include "libclient/vfiouser/framing.h"
#include "libclient/vfiouser/protocol.h"
#include "shm/base/result.h"
#include "shm/base/unique_fd.h"

namespace nvmux::vfiouser {

struct ClientOptions {
  int timeout_ms = 5000;
  Capabilities caps;  // what this client announces in VERSION
};

// DEVICE_GET_REGION_INFO, decoded.
struct RegionDescription {
  uint32_t index = 0;
  uint32_t flags = 0;
  uint64_t size = 0;
  uint64_t file_offset = 0;  // offset of region byte 0 in fd
  std::vector<SparseMmapArea> sparse_areas;
  UniqueFd fd;  // present for mmap-able regions
};

// DEVICE_GET_REGION_IO_FDS, decoded: sub-regions and the fds they use.
struct RegionIoFds {
  std::vector<SubRegionIoFd> sub_regions;
  std::vector<UniqueFd> fds;  // by fd_index
};

// Move-only owner of an mmap of a region area.
class MappedArea {
 public:
  MappedArea() = default;
  MappedArea(void* data, size_t size) : data_(data), size_(size) {}
  MappedArea(MappedArea&& other) noexcept;
  MappedArea& operator=(MappedArea&& other) noexcept;
  MappedArea(const MappedArea&) = delete;
  MappedArea& operator=(const MappedArea&) = delete;
  ~MappedArea();

  uint8_t* data() const { return static_cast<uint8_t*>(data_); }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

class Client {
 public:
  // Connects to <socket_dir>/cntrl. ENOENT/ECONNREFUSED if no server listens.
  [[nodiscard]] static Result<std::unique_ptr<Client>> Connect(const std::string& socket_dir,
                                                              ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // A connection that another process of the group set up and negotiated
  // (a primary taking a group over from a dead one): no VERSION exchange;
  // whatever the previous owner left unread is discarded, and replies to
  // its requests that arrive late are skipped.
  [[nodiscard]] static std::unique_ptr<Client> Adopt(UniqueFd sock, ClientOptions options = {});

  // VERSION: sends ours, returns the server's capabilities. EPROTO if the
  // server's major version differs or its JSON is malformed.
  [[nodiscard]] Result<Capabilities> Negotiate();
  [[nodiscard]] Result<DeviceInfo> GetDeviceInfo();
  // Region info including the sparse-mmap areas and the region's fd.
  [[nodiscard]] Result<RegionDescription> GetRegionInfo(uint32_t index);
  // The region's io fds (ioeventfds). ENOTSUP when the server offers none
  // (an error reply ENOTSUP/ENOSYS/EINVAL from servers that predate them),
  // EPROTO for a malformed reply (a sub-region naming a missing fd).
  [[nodiscard]] Result<RegionIoFds> GetRegionIoFds(uint32_t index);
  [[nodiscard]] Result<IrqInfo> GetIrqInfo(uint32_t index);
  // DEVICE_SET_IRQS; with kIrqSetDataEventfd, fds.size() must equal count.
  [[nodiscard]] Status SetIrqs(uint32_t index, uint32_t flags, uint32_t start, uint32_t count,
                               std::span<const int> fds = {});

  [[nodiscard]] Result<std::vector<uint8_t>> ReadRegion(uint32_t region, uint64_t offset, uint32_t count);
  [[nodiscard]] Status WriteRegion(uint32_t region, uint64_t offset, std::span<const uint8_t> data);
  [[nodiscard]] Result<uint32_t> Read32(uint32_t region, uint64_t offset);
  [[nodiscard]] Result<uint64_t> Read64(uint32_t region, uint64_t offset);
  [[nodiscard]] Status Write32(uint32_t region, uint64_t offset, uint32_t value);
  [[nodiscard]] Status Write64(uint32_t region, uint64_t offset, uint64_t value);

  // DMA_MAP of [fd_offset, fd_offset + size) of fd at IOVA iova.
  [[nodiscard]] Status DmaMap(int fd, uint64_t fd_offset, uint64_t iova, uint64_t size,
                              uint32_t flags = kDmaFlagRead | kDmaFlagWrite);
  [[nodiscard]] Status DmaUnmap(uint64_t iova, uint64_t size);
  [[nodiscard]] Status Reset();

  // mmaps sparse area `area` of region (read/write, shared).
  [[nodiscard]] Result<MappedArea> MapSparseArea(const RegionDescription& region, size_t area);

  // Sends one request and returns the reply; an error reply is an Error with
  // the server's errno. For tests, header fields other than msg_id/msg_size
  // can be chosen through `flags`.
  [[nodiscard]] Result<Message> Call(Command cmd, std::span<const uint8_t> payload,
                                     std::span<const int> fds = {}, uint32_t flags = 0);
  // Sends a message whose header is taken as is (msg_size included) and
  // reads one reply. For malformed-message tests.
  [[nodiscard]] Result<Message> CallRaw(const Header& header, std::span<const uint8_t> bytes);

  // Server-to-client requests (DMA_READ / DMA_WRITE), for a client that
  // serves memory it did not share: waits up to timeout_ms for one message
  // and returns it (ETIMEDOUT if none came; the connection stays usable).
  // A reply-typed message here is EPROTO. Not to be mixed with a Call
  // running on another thread (one reader per socket).
  [[nodiscard]] Result<Message> ReceiveRequest(int timeout_ms, int cancel_fd = -1);
  // Answers `request` with payload, or with an error reply carrying
  // error_no when it is non-zero. Tests may send any payload (malformed
  // replies included).
  [[nodiscard]] Status SendReply(const Header& request, std::span<const uint8_t> payload, uint32_t error_no = 0);

  bool broken() const { return broken_; }
  int socket_fd() const { return sock_.get(); }

 private:
  Client(UniqueFd sock, ClientOptions options);
  Result<Message> CallLocked(Header header, std::span<const uint8_t> payload,
                             std::span<const int> fds, bool raw_size);
  Error Broken(const Error& cause);

  UniqueFd sock_;
  ClientOptions options_;
  std::mutex mutex_;
  uint16_t next_msg_id_ = 1;
  bool broken_ = false;
  bool adopted_ = false;
  uint32_t server_max_fds_ = kDefaultMaxMsgFds;
};

}  // namespace nvmux::vfiouser
