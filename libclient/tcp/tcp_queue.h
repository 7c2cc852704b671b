// TcpQueue: one NVMe/TCP connection and the queue engine that makes it look
// like a memory queue to the driver core (see ARCHITECTURE.md, "NVMe/TCP").
//
// The core writes SQEs into ring memory and rings the SQ tail doorbell (a
// word of this object); OnSqTail turns each new entry into a command
// capsule: its SGL data pointer (the transport asks the core for SGLs, see
// Transport::SglOnly) becomes in-capsule data when a write fits the queue's
// in-capsule size, else a transport SGL that the controller serves with R2T
// (the host answers with H2CData) or C2HData. Received capsule responses,
// and C2HData with SUCCESS, become CQEs written into the CQ ring with the
// phase the core expects, so the completion path runs unchanged (a
// completion that finds the CQ full waits for the host's head doorbell).
// Data leaves by sendmsg straight from the command's buffers and arrives by
// recvmsg straight into them, or out of the reader's receive buffer for the
// bytes that came with their header (pdu.h) (IOVA = virtual address for DMA
// memory).
//
// The socket is non-blocking and polled from OnCqEmpty (the core's
// completion polling); Connect and internal commands (Property Get/Set) wait
// with poll(2), bounded by the connect timeout.
//
// Thread safety: one thread at a time (the owner of the ring; the transport
// serialises the admin queue). Errors end the connection: broken() is then
// true and error() says why.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "libclient/core/queue_ring.h"
#include "libclient/tcp/pdu.h"
#include "shm/base/clock.h"
#include "shm/base/unique_fd.h"

namespace nvmux::tcp {

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string text;  // "ADDR port PORT", for messages
};

struct ConnectParams {
  uint16_t qid = 0;
  uint16_t entries = 32;       // queue entries (SQSIZE + 1)
  uint16_t cntlid = 0xFFFF;    // admin: dynamic; I/O: the admin queue's
  uint32_t kato_ms = 0;        // admin queue only
  std::string subnqn;
  std::string hostnqn;
  uint8_t hostid[16] = {};
  bool header_digest = false;
  bool data_digest = false;
  Nanos timeout = std::chrono::seconds(5);
};

// Text for a Fabrics Connect failure status (command specific 80h-84h).
std::string ConnectStatusText(const spec::Cqe& c);

class TcpQueue final : public QueueHook, private PduReader::Handler {
 public:
  // R2Ts a controller may have outstanding per command (ICReq MAXR2T + 1).
  static constexpr uint32_t kMaxR2t = 4;
  // Connects (TCP, ICReq/ICResp, Fabrics Connect), waiting at most
  // params.timeout. Errors: ECONNREFUSED/ETIMEDOUT/... naming the endpoint,
  // EPROTO (ICResp), ECONNABORTED/EACCES/EINVAL for a refused Connect with
  // its status decoded.
  static Result<std::unique_ptr<TcpQueue>> Connect(const Endpoint& ep, const ConnectParams& params);
  // Not connected yet: its doorbells exist (the core asks for them before
  // it creates the queue); Open connects (again), Close disconnects.
  TcpQueue(const Endpoint& ep, const ConnectParams& params) : ep_(ep), params_(params) {}
  ~TcpQueue();
  Status Open(const ConnectParams& params);
  void Close();
  // Fabrics Disconnect (I/O queues; the admin queue's association ends when
  // its connection closes), waited for at most 1 s, then Close. The status
  // is logged, never an error: the connection goes either way.
  void Disconnect();
  bool open() const { return fd_.valid(); }

  // The ring the core drives (REQUIRES: before the first doorbell).
  void AttachRing(spec::Sqe* sq, spec::Cqe* cq, uint32_t entries);
  Doorbells doorbells() {
    Doorbells d;
    d.sq_tail = sq_db_;
    d.cq_head = cq_db_;
    d.hook = this;
    return d;
  }
  // The doorbell words live elsewhere (a group's shared admin queue: every
  // process rings them, the engine of the process owning the connection
  // reads them). REQUIRES: before doorbells() is handed out; the words
  // outlive this queue.
  void UseDoorbellWords(uint32_t* sq_tail, uint32_t* cq_head) {
    sq_db_ = sq_tail;
    cq_db_ = cq_head;
  }
  // The connection's socket (-1 while closed), for waiting on it.
  int socket_fd() const { return fd_.get(); }
  // Writes smaller than this go inside the capsule (IOCCSZ * 16 - 64).
  void set_in_capsule_limit(uint32_t bytes) { in_capsule_ = bytes; }
  // Admin queue: a command the transport serves itself (Create/Delete I/O
  // queue). Returns the completion to post now, or nullopt to send it.
  using Intercept = std::function<std::optional<spec::Cqe>(const spec::Sqe&)>;
  void set_intercept(Intercept fn) { intercept_ = std::move(fn); }
  // Admin queue: called with each successful completion and its command
  // (the transport learns IOCCSZ from Identify Controller).
  using Snoop = std::function<void(const spec::Sqe&, std::span<const iovec> data)>;
  void set_snoop(Snoop fn) { snoop_ = std::move(fn); }

  // A Fabrics command (Property Get/Set) outside the ring, waited for.
  // Errors: ENXIO once the connection is broken, ETIMEDOUT.
  Result<spec::Cqe> Execute(spec::Sqe cmd, std::span<uint8_t> out_data = {}, std::span<uint8_t> in_data = {});

  void OnSqTail() override;
  void OnCqEmpty() override;
  EngineCounters counters() const override {
    EngineCounters c = counters_;
    c.header_digest = negotiated_.header_digest;
    c.data_digest = negotiated_.data_digest;
    return c;
  }

  bool broken() const { return !error_; }
  const Error& error() const { return error_.error(); }
  uint16_t cntlid() const { return cntlid_; }
  uint16_t qid() const { return params_.qid; }
  const Negotiated& negotiated() const { return negotiated_; }

 private:
  struct Command {
    bool active = false;
    bool internal = false;
    bool to_controller = false;
    spec::Sqe sqe;
    uint32_t length = 0;
    std::vector<iovec> iov;
    // R2Ts (a write beyond the in-capsule size): the controller asks for
    // the data in order, up to kMaxR2t at a time; an R2T is outstanding
    // until its last H2CData PDU left the socket.
    uint32_t r2t_next = 0;     // the offset the next R2T must ask for
    uint32_t r2t_pending = 0;  // R2Ts whose data is not all sent yet
    bool by_r2t = false;       // a write whose data goes by R2T (counted in r2t_writes_)
  };
  struct TxItem {
    uint8_t header[256] = {};
    uint32_t header_len = 0;
    std::vector<iovec> data;
    uint32_t digest = 0;
    bool has_digest = false;
    size_t sent = 0;  // of header + data + digest
    size_t total = 0;
    int32_t r2t_done_cid = -1;  // the last H2CData of an R2T of this command: its sending ends the R2T
    bool capsule_data = false;  // a command capsule carrying its write's data (Flush)
  };
  // The PDUs waiting to be sent, oldest first: a ring of items reused with
  // their data vectors, so that once it has grown to the queue's depth no
  // PDU allocates.
  class TxRing {
   public:
    TxItem& Push();  // a cleared item at the back
    TxItem& front() { return at(0); }
    TxItem& at(size_t i) { return items_[(head_ + i) % items_.size()]; }
    void PopFront() {
      head_ = (head_ + 1) % items_.size();
      --count_;
    }
    bool empty() const { return count_ == 0; }
    size_t size() const { return count_; }
    void clear() { head_ = count_ = 0; }

   private:
    std::vector<TxItem> items_;
    size_t head_ = 0;
    size_t count_ = 0;
  };

  Status Handshake();
  Status WaitFor(const std::function<bool()>& done, const char* what);
  void Break(Error e);
  void TakeNewEntries();
  bool Send(Command& cmd, uint16_t cid);
  void Complete(const spec::Cqe& cqe);
  bool PostCompletion(const spec::Cqe& cqe);  // false: the CQ is full
  void PostHeld();
  Status Flush();
  void SendNew();  // TakeNewEntries, then Flush (an error breaks the connection)
  void Receive();
  void QueueData(uint16_t cid, uint16_t ttag, uint32_t offset, uint32_t length, const Command& cmd);
  // The data pieces an SQE's SGL names, into `iov` (cleared first).
  Status DataIov(const spec::Sqe& sqe, std::vector<iovec>& iov, uint32_t& length);
  Command& Slot(uint16_t cid);
  Command* Find(uint16_t cid);  // the outstanding command `cid`, or null
  uint32_t DataOffset(uint32_t header_len) const;

  Status PlaceData(const DataHeader& h, std::vector<iovec>& out) override;
  Status OnPdu(const ReceivedPdu& pdu) override;
  Status HandlePdu(const ReceivedPdu& pdu);

  EngineCounters counters_;  // by the thread owning the queue
  UniqueFd fd_;
  UniqueFd readiness_;  // an epoll set of fd_ alone (EPOLLIN): the lockless check before a recv
  Endpoint ep_;
  ConnectParams params_;
  Negotiated negotiated_;
  PduReader reader_;
  Status error_ = Ok();
  uint16_t cntlid_ = 0;
  bool icresp_ = false;

  spec::Sqe* sq_ = nullptr;
  spec::Cqe* cq_ = nullptr;
  uint32_t entries_ = 0;
  uint32_t sq_tail_db_ = 0;  // the doorbells, unless UseDoorbellWords named others
  uint32_t cq_head_db_ = 0;
  uint32_t* sq_db_ = &sq_tail_db_;
  uint32_t* cq_db_ = &cq_head_db_;
  uint32_t sq_head_ = 0;  // next ring entry to send
  uint32_t cq_tail_ = 0;
  uint16_t phase_ = 1;
  uint32_t wire_outstanding_ = 0;
  uint32_t r2t_writes_ = 0;  // outstanding writes whose data goes by R2T (OnCqEmpty)
  uint32_t wire_limit_ = 1;
  uint32_t in_capsule_ = 0;
  uint32_t tx_align_ = 4;  // CPDA in bytes

  std::vector<Command> commands_;  // by command id (the core's ids are small)
  Command internal_;              // the one internal command (kInternalCid)
  TxRing tx_;
  std::vector<iovec> scratch_iov_;  // DataIov's output, swapped into the command's
  Intercept intercept_;
  Snoop snoop_;
  std::optional<spec::Cqe> internal_done_;
  // Completions waiting for CQ space (the host has not rung the head
  // doorbell past them yet), oldest first. At most the host's outstanding
  // commands: it cannot submit more than its trackers allow.
  std::deque<spec::Cqe> held_;
};

}  // namespace nvmux::tcp
