// Server: the vfio-user server side of nvmux-emu.
//
// Listens on <dir>/cntrl (AF_UNIX, SOCK_STREAM) and serves one client at a
// time: further connections are accepted and closed at once while one is
// served. Every request gets a reply (unless it sets no_reply and succeeds);
// a malformed, oversized or unsupported request gets an error reply with an
// errno and the server carries on. Only a stream it cannot resynchronise
// (msg_size < 16, a peer silent mid-message for kMessageTimeoutMs, too many
// fds) ends that connection. When a client goes, its DMA mappings and
// interrupt fds are dropped; the controller keeps its state for the next one.
//
// Regions: BAR0 (16 KiB: registers trapped, doorbell page [0x1000,0x2000)
// offered as a sparse mmap of the doorbell memfd, the rest reads zero), BAR4
// MSI-X table, BAR5 MSI-X PBA, config space (PciConfig). IRQs: INTx and the
// error IRQ (accepted, never raised), MSI-X (eventfds, one per vector).
// DMA: regions with an fd are mapped; fd-less ones (the spec allows them;
// QEMU maps its ROMs so) are recorded but never accessed: nvmux-emu sends no
// VFIO_USER_DMA_READ/WRITE (DmaSpace::MapFdless says what commands get).
//
// Io fds (DEVICE_GET_REGION_IO_FDS): BAR0 offers one ioeventfd for the
// whole doorbell page (one sub-region [0x1000, 0x2000), no datamatch; the
// same eventfd for every client). A client that asks for it promises to
// write it after the doorbell stores described in Controller::SetClientKicks;
// the poller sleeps on it (kick_fd()). Other regions answer with no io fds.
//
// Surprise removal (Remove): the current connection is shut down, the
// listening socket closed (further connects are refused; the socket file
// stays until the destructor), and Run() then only waits for stop_fd.
//
// Thread safety: Run() runs on one thread; Remove() may be called from any
// thread, at any time after Create; Create/destructor on the owning thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "libclient/vfiouser/capabilities.h"
#include "libclient/vfiouser/framing.h"
#include "shm/base/result.h"
#include "shm/base/unique_fd.h"
#include "tools/emu/controller.h"
#include "tools/emu/pci_config.h"

namespace nvmux::emu {

class Server {
 public:
  static constexpr int kMessageTimeoutMs = 5000;
  static constexpr uint32_t kMaxDmaMaps = 1024;

  // Binds <socket_dir>/cntrl, creating socket_dir (one level) if missing.
  // A stale socket file is replaced; a live one is EADDRINUSE.
  // doorbell_fd / doorbells: the BAR0-sized memfd and its doorbell page,
  // borrowed. on_doorbell: called after a trapped BAR0 write (wakes the poller).
  [[nodiscard]] static Result<std::unique_ptr<Server>> Create(const std::string& socket_dir, Controller& controller,
                                                            int doorbell_fd, uint32_t* doorbells,
                                                            std::function<void()> on_doorbell);
  ~Server();  // closes the socket and removes it (and the directory if created)
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Serves until stop_fd is readable.
  void Run(int stop_fd);
  // Surprise removal, see above. Idempotent.
  void Remove();
  const std::string& socket_path() const { return socket_path_; }
  // The doorbell page's ioeventfd (non-blocking): readable after a kick.
  int kick_fd() const { return kick_fd_.get(); }

 private:
  struct Reply {
    std::vector<uint8_t> payload;
    int fd = -1;
  };

  Server(Controller& controller, int doorbell_fd, uint32_t* doorbells, std::function<void()> on_doorbell);
  void ServeClient(UniqueFd client, int stop_fd);
  // Handles one message; false ends the connection. A wait for the rest of
  // a message gives up when stop_fd becomes readable.
  bool HandleOne(int client, int stop_fd);
  void SendError(int client, const vfiouser::Header& request, int error_no);
  Result<Reply> Dispatch(const vfiouser::Header& h, std::span<const uint8_t> payload,
                         std::vector<UniqueFd>& fds);
  Result<Reply> Version(std::span<const uint8_t> payload);
  Result<Reply> DmaMap(std::span<const uint8_t> payload, std::vector<UniqueFd>& fds);
  Result<Reply> DmaUnmap(std::span<const uint8_t> payload);
  Result<Reply> GetInfo(std::span<const uint8_t> payload);
  Result<Reply> GetRegionInfo(std::span<const uint8_t> payload);
  Result<Reply> GetRegionIoFds(std::span<const uint8_t> payload);
  Result<Reply> GetIrqInfo(std::span<const uint8_t> payload);
  Result<Reply> SetIrqs(std::span<const uint8_t> payload, std::vector<UniqueFd>& fds);
  Result<Reply> RegionAccess(std::span<const uint8_t> payload, bool write);
  Result<Reply> Bar0Access(uint64_t offset, std::span<uint8_t> data, bool write);
  uint32_t RegionSize(uint32_t index) const;
  uint32_t IrqCount(uint32_t index) const;

  Controller& controller_;
  PciConfig config_;
  int doorbell_fd_;
  uint32_t* doorbells_;
  std::function<void()> on_doorbell_;
  std::vector<uint8_t> msix_table_;
  std::vector<uint8_t> msix_pba_;
  UniqueFd listen_fd_;
  std::string socket_dir_;
  std::string socket_path_;
  bool created_dir_ = false;
  UniqueFd remove_fd_;  // eventfd, readable once Remove() ran
  UniqueFd kick_fd_;    // eventfd handed out as BAR0's doorbell ioeventfd
  std::atomic<bool> removed_{false};
  // Held by Remove() and by the socket thread when it registers a client or
  // closes listen_fd_ after a removal.
  std::mutex client_mutex_;
  int client_fd_ = -1;  // GUARDED_BY(client_mutex_): the connection being served
  // Per connection.
  bool negotiated_ = false;
  vfiouser::Capabilities client_caps_;
};

}  // namespace nvmux::emu
