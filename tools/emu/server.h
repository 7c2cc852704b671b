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
// QEMU maps its ROMs so) are recorded, and command data there is moved with
// VFIO_USER_DMA_READ/WRITE requests to the client (the server is the
// controller's DmaMessenger). Those requests carry their own msg_ids; the
// socket thread hands the client's replies to the waiting poller through a
// table of pending requests, without the controller mutex, so a poller
// waiting for a reply never blocks a register write (and vice versa). A
// request with no reply within kDmaReplyTimeoutMs, an error reply, or a
// reply whose size or address/count does not match fails (the command gets
// Data Transfer Error); a late reply is dropped. Transfers are split to
// the client's max_data_xfer_size (at most 1 MiB).
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
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "libclient/vfiouser/capabilities.h"
#include "libclient/vfiouser/framing.h"
#include "shm/base/result.h"
#include "shm/base/unique_fd.h"
#include "tools/emu/controller.h"
#include "tools/emu/fdless_staging.h"
#include "tools/emu/pci_config.h"

namespace nvmux::emu {

class Server : public DmaMessenger {
 public:
  static constexpr int kMessageTimeoutMs = 5000;
  // How long a DMA_READ/DMA_WRITE waits for the client's reply.
  static constexpr int kDmaReplyTimeoutMs = 3000;
  static constexpr uint32_t kMaxDmaMaps = 1024;

  // Listens on <socket_dir>/.cnew, creating socket_dir (one level) if
  // missing; Publish() renames it to cntrl, so a client that sees cntrl can
  // connect (never ECONNREFUSED between bind and listen). A stale cntrl is
  // replaced; a live one is EADDRINUSE.
  // doorbell_fd / doorbells: the BAR0-sized memfd and its doorbell page,
  // borrowed. on_doorbell: called after a trapped BAR0 write (wakes the poller).
  [[nodiscard]] static Result<std::unique_ptr<Server>> Create(const std::string& socket_dir, Controller& controller,
                                                            int doorbell_fd, uint32_t* doorbells,
                                                            std::function<void()> on_doorbell);
  ~Server() override;  // closes the socket and removes it (and the directory if created)
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Gives the listening socket its name, cntrl. EADDRINUSE when another
  // server took the name meanwhile.
  [[nodiscard]] Status Publish();
  // Serves until stop_fd is readable.
  void Run(int stop_fd);
  // Surprise removal, see above. Idempotent.
  void Remove();
  const std::string& socket_path() const { return socket_path_; }
  // The doorbell page's ioeventfd (non-blocking): readable after a kick.
  int kick_fd() const { return kick_fd_.get(); }

  // DmaMessenger: client memory by message, for the poller thread (never
  // the socket thread, which delivers the replies). False when no client
  // is connected, on an error or malformed reply, or after
  // kDmaReplyTimeoutMs per request.
  [[nodiscard]] bool DmaRead(uint64_t iova, std::span<uint8_t> out) override;
  [[nodiscard]] bool DmaWrite(uint64_t iova, std::span<const uint8_t> data) override;

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
  // One DMA_READ/DMA_WRITE request of at most the client's transfer size.
  bool DmaRequest(vfiouser::Command cmd, uint64_t iova, uint8_t* data, uint64_t count);
  // A reply-typed message: true if it answered (or answered too late) one
  // of our DMA requests, false if it answers nothing we sent.
  bool DeliverDmaReply(const vfiouser::Header& h, std::span<const uint8_t> payload);
  // Sends on the connection, serialised with the poller's DMA requests.
  Status Send(int client, const vfiouser::Header& h, std::span<const uint8_t> payload,
              std::span<const int> fds = {});
  uint32_t IrqCount(uint32_t index) const;

  Controller& controller_;
  PciConfig config_;
  int doorbell_fd_;
  uint32_t* doorbells_;
  std::function<void()> on_doorbell_;
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
  // Server-to-client DMA requests. send_mutex_ serialises every write to
  // the connection and guards dma_fd_ (-1 while no client is served);
  // dma_mutex_ guards the pending table. Never held together.
  struct PendingDma {
    uint16_t cmd;
    uint64_t iova;
    uint8_t* data;
    uint64_t count;
    bool done = false;
    bool ok = false;
  };
  std::mutex send_mutex_;
  int dma_fd_ = -1;
  std::mutex dma_mutex_;
  std::condition_variable dma_cv_;
  std::map<uint16_t, PendingDma*> pending_dma_;  // by msg_id
  std::deque<uint16_t> abandoned_dma_;           // timed out: late replies are dropped
  uint16_t next_dma_id_ = 0;
  std::atomic<uint64_t> dma_max_xfer_{vfiouser::kDefaultMaxDataXferSize};
  // Per connection.
  bool negotiated_ = false;
  vfiouser::Capabilities client_caps_;
};

}  // namespace nvmux::emu
