// NVMe/TCP PDUs (NVMe/TCP Transport Specification 1.0, section 3.6): the
// wire layouts, CRC32C digests, and PduReader, the receive state machine of
// one connection.
//
// Every PDU starts with an 8-byte common header (type, flags, HLEN, PDO,
// PLEN); the PDU-specific header follows to HLEN bytes, then the header
// digest (HDGSTF), padding up to PDO, the data, and the data digest (DDGSTF).
// PduReader checks each header against the layout of its type before it
// trusts a length: a malformed or truncated PDU is an error on its
// connection (EPROTO naming the field), never an overflow.
//
// Thread safety: values and pure functions; a PduReader belongs to the one
// thread that owns its connection.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "nvmux/spec/command.h"
#include "shm/base/result.h"

namespace nvmux::tcp {

namespace pdu {
inline constexpr uint8_t kIcReq = 0x00;
inline constexpr uint8_t kIcResp = 0x01;
inline constexpr uint8_t kH2CTermReq = 0x02;
inline constexpr uint8_t kC2HTermReq = 0x03;
inline constexpr uint8_t kCapsuleCmd = 0x04;
inline constexpr uint8_t kCapsuleResp = 0x05;
inline constexpr uint8_t kH2CData = 0x06;
inline constexpr uint8_t kC2HData = 0x07;
inline constexpr uint8_t kR2T = 0x09;

inline constexpr uint8_t kFlagHdgst = 0x01;
inline constexpr uint8_t kFlagDdgst = 0x02;
inline constexpr uint8_t kFlagLastPdu = 0x04;  // H2CData, C2HData
inline constexpr uint8_t kFlagSuccess = 0x08;  // C2HData: no CapsuleResp follows

inline constexpr uint8_t kDigestHeader = 0x01;  // ICReq/ICResp DGST bits
inline constexpr uint8_t kDigestData = 0x02;
}  // namespace pdu

const char* PduTypeName(uint8_t type);

struct CommonHeader {
  uint8_t type = 0;
  uint8_t flags = 0;
  uint8_t hlen = 0;
  uint8_t pdo = 0;
  uint32_t plen = 0;
};
static_assert(sizeof(CommonHeader) == 8);

struct IcReq {
  CommonHeader ch;
  uint16_t pfv = 0;    // PDU format version: 0
  uint8_t hpda = 0;    // host PDU data alignment, in dwords, 0's based
  uint8_t dgst = 0;    // kDigestHeader | kDigestData asked for
  uint32_t maxr2t = 0; // outstanding R2Ts per command, 0's based
  uint8_t rsvd[112] = {};
};
static_assert(sizeof(IcReq) == 128);

struct IcResp {
  CommonHeader ch;
  uint16_t pfv = 0;
  uint8_t cpda = 0;        // controller PDU data alignment, in dwords, 0's based
  uint8_t dgst = 0;        // digests enabled
  uint32_t maxh2cdata = 0; // largest H2CData payload the controller takes
  uint8_t rsvd[112] = {};
};
static_assert(sizeof(IcResp) == 128);

struct CapsuleCmd {
  CommonHeader ch;
  spec::Sqe sqe;
};
static_assert(sizeof(CapsuleCmd) == 72);

struct CapsuleResp {
  CommonHeader ch;
  spec::Cqe cqe;
};
static_assert(sizeof(CapsuleResp) == 24);

// H2CData, C2HData and R2T share one shape: command id, transfer tag (not in
// C2HData), offset and length of the data within the command's buffer.
struct DataHeader {
  CommonHeader ch;
  uint16_t cccid = 0;
  uint16_t ttag = 0;
  uint32_t offset = 0;  // DATAO / R2TO
  uint32_t length = 0;  // DATAL / R2TL
  uint32_t rsvd = 0;
};
static_assert(sizeof(DataHeader) == 24);

struct TermReq {
  CommonHeader ch;
  uint16_t fes = 0;     // fatal error status
  uint8_t fei[4] = {};  // field error information (unaligned on the wire)
  uint8_t rsvd[10] = {};
};
static_assert(sizeof(TermReq) == 24);

// The header length each PDU type has (HLEN), 0 for an unknown type.
uint8_t HeaderLength(uint8_t type);

// CRC32C (Castagnoli), as the digests use it: initial ~0, final xor ~0.
uint32_t Crc32c(const void* data, size_t bytes, uint32_t crc = 0);
uint32_t Crc32c(std::span<const iovec> iov, uint32_t crc = 0);

// What the connection negotiated (ICReq/ICResp), which the reader checks
// each PDU against.
struct Negotiated {
  bool header_digest = false;
  bool data_digest = false;
  uint32_t rx_align = 0;      // PDO alignment of received data PDUs in bytes (HPDA; 0: none)
  uint32_t maxh2cdata = 0;
};

// One received PDU: its header bytes (HLEN, digest stripped) and, for PDUs
// with data that is not placed into a command's buffer (TermReq), the data.
struct ReceivedPdu {
  std::span<const uint8_t> header;
  std::span<const uint8_t> data;
  const CommonHeader& ch() const { return *reinterpret_cast<const CommonHeader*>(header.data()); }
  template <typename T>
  const T& as() const { return *reinterpret_cast<const T*>(header.data()); }
};

// Reads PDUs from a byte stream through a receive buffer: one read takes
// whatever the socket holds (many small PDUs at a time, as SPDK's socket
// layer does), and headers and small payloads are parsed from there. Once a
// C2HData header says where its payload goes, the rest of a large payload
// is read straight into the command's buffers (readv onto its memory, with
// the buffer behind it for what follows): only bytes that arrived before
// their header was parsed are copied, at most one buffer's worth.
class PduReader {
 public:
  // Reads into iov like readv: bytes read, 0 at end of stream, -1 with errno
  // (EAGAIN: nothing more now).
  using ReadFn = std::function<ssize_t(const iovec* iov, int count)>;
  struct Handler {
    virtual ~Handler() = default;
    // A C2HData header: fill `out` with the buffer pieces for its DATAL bytes
    // at DATAO of command CCCID. Errors end the connection (EPROTO).
    virtual Status PlaceData(const DataHeader& h, std::vector<iovec>& out) = 0;
    // A complete PDU (after its data and digests were checked).
    virtual Status OnPdu(const ReceivedPdu& pdu) = 0;
  };
  // When Pump stops reading: at EAGAIN, or after one read whatever it
  // returned (a socket's queue: what did not fit in the buffer, or arrives
  // later, is for the next call; between calls the queue engine sends what
  // the completions so far submitted: QueueRing::Pop, TcpQueue::OnCqEmpty).
  enum class Drain { kUntilEagain, kOneRead };
  // Bytes read at a time into the buffer; a payload at least
  // kDirectThreshold long goes straight into its command's buffers.
  static constexpr size_t kBufferBytes = 64 * 1024;
  static constexpr size_t kDirectThreshold = 1024;

  // Before ICResp arrives: only ICResp (or C2HTermReq) is accepted.
  void SetNegotiated(const Negotiated& n) {
    negotiated_ = n;
    connected_ = true;
  }
  // Reads what is available; Ok when the source has nothing more now.
  // Errors: EPROTO (malformed PDU, digest mismatch), ECONNRESET (end of
  // stream), the read's errno. The reader stays failed after an error.
  Status Pump(const ReadFn& read, Handler& handler, Drain drain = Drain::kUntilEagain);
  uint64_t pdus() const { return pdus_; }
  uint64_t reads() const { return reads_; }
  // Payload bytes copied out of the receive buffer (the rest went straight
  // into the commands' buffers).
  uint64_t copied_bytes() const { return copied_; }

  // Checks a complete header (HLEN bytes, digest not included) against its
  // type's layout and the negotiated parameters; the data length it
  // announces in `data_bytes`. Pure: what the fuzz target drives too.
  static Status CheckHeader(std::span<const uint8_t> header, const Negotiated& n, bool connected,
                            uint32_t& data_bytes);

 private:
  enum class Phase { kCommon, kHeader, kPad, kData, kDataDigest };
  Status Fail(const std::string& why);
  Status Finish(Handler& handler);
  // Takes `bytes` already stored where the current phase wants them (or, in
  // kPad, skipped) and moves the state machine on.
  Status Advance(uint32_t bytes, Handler& handler);
  // Parses buffered bytes until the buffer is empty or an error.
  Status Consume(Handler& handler);
  uint32_t PhaseLeft() const;

  Negotiated negotiated_;
  bool connected_ = false;
  Phase phase_ = Phase::kCommon;
  uint8_t header_[256 + 4] = {};  // HLEN (<= 128) + header digest
  uint32_t got_ = 0;              // bytes of the current phase received
  uint32_t header_bytes_ = 0;     // HLEN + digest
  uint32_t pad_ = 0;
  uint32_t data_bytes_ = 0;
  std::vector<iovec> data_iov_;   // where the rest of the data goes (consumed as it arrives)
  std::vector<iovec> digest_iov_; // all of it, for the data digest
  std::vector<uint8_t> small_;    // TermReq data
  uint8_t digest_[4] = {};
  std::vector<uint8_t> buffer_;   // kBufferBytes once the first read needs it
  size_t buffer_pos_ = 0;         // [pos, end): received, not parsed yet
  size_t buffer_end_ = 0;
  Status error_ = Ok();
  uint64_t pdus_ = 0;
  uint64_t reads_ = 0;
  uint64_t copied_ = 0;
};

}  // namespace nvmux::tcp
