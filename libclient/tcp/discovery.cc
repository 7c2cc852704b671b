// ReadDiscoveryLog (nvmux/discovery.h): a discovery controller needs no I/O
// queues, namespaces or DMA memory, so it is driven here directly over one
// admin connection: enable (Property Set CC.EN), Get Log Page 70h in host
// memory, shutdown notification, disconnect.
#include "nvmux/discovery.h"

#include <cstring>
#include <thread>

#include "libclient/tcp/tcp_transport.h"
#include "nvmux/spec/nvme.h"
#include "shm/base/clock.h"
#include "shm/base/format.h"

namespace nvmux {
namespace {

constexpr uint8_t kFabricsOpcode = 0x7F;
constexpr uint8_t kLidDiscovery = 0x70;
constexpr size_t kEntryBytes = 1024;
constexpr uint64_t kMaxRecords = 4096;  // 4 MiB of log, far beyond real services

Result<uint64_t> PropertyGet(tcp::TcpQueue& q, uint32_t offset, bool eight) {
  spec::Sqe cmd;
  cmd.opc = kFabricsOpcode;
  cmd.nsid = 0x04;
  cmd.cdw10 = eight ? 1 : 0;
  cmd.cdw11 = offset;
  auto c = q.Execute(cmd);
  if (!c) return c.error();
  if (c->sct() != 0 || c->sc() != 0) return Fail(EIO, "Property Get " + Hex(offset, 2) + ": " + tcp::ConnectStatusText(*c));
  return eight ? (uint64_t{c->cdw1} << 32) | c->cdw0 : c->cdw0;
}

Status PropertySet(tcp::TcpQueue& q, uint32_t offset, uint32_t value) {
  spec::Sqe cmd;
  cmd.opc = kFabricsOpcode;
  cmd.nsid = 0x00;
  cmd.cdw11 = offset;
  cmd.cdw12 = value;
  auto c = q.Execute(cmd);
  if (!c) return c.error();
  if (c->sct() != 0 || c->sc() != 0) return Fail(EIO, "Property Set " + Hex(offset, 2) + ": " + tcp::ConnectStatusText(*c));
  return Ok();
}

// Waits for CSTS & mask == want, for at most `timeout`.
Status WaitCsts(tcp::TcpQueue& q, uint32_t mask, uint32_t want, Nanos timeout, const char* what) {
  const int64_t deadline = MonotonicNanos() + timeout.count();
  for (;;) {
    auto csts = PropertyGet(q, spec::kRegCsts, false);
    if (!csts) return csts.error();
    if ((*csts & 2) != 0) return Fail(EIO, std::string("discovery controller fatal status (CSTS.CFS) while ") + what);
    if ((*csts & mask) == want) return Ok();
    if (MonotonicNanos() > deadline)
      return Fail(ETIMEDOUT, std::string("discovery controller: ") + what + " did not finish within " +
                                 std::to_string(timeout.count() / 1'000'000) + " ms");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

Status GetLog(tcp::TcpQueue& q, uint64_t offset, std::span<uint8_t> out) {
  spec::Sqe cmd;
  cmd.opc = spec::admin::kGetLogPage;
  const uint32_t numd = static_cast<uint32_t>(out.size() / 4 - 1);
  cmd.cdw10 = kLidDiscovery | ((numd & 0xFFFF) << 16);
  cmd.cdw11 = numd >> 16;
  cmd.cdw12 = static_cast<uint32_t>(offset);
  cmd.cdw13 = static_cast<uint32_t>(offset >> 32);
  auto c = q.Execute(cmd, out);
  if (!c) return c.error();
  if (c->sct() != 0 || c->sc() != 0)
    return Fail(EIO, "Get Log Page (discovery, offset " + std::to_string(offset) + ") failed: status " +
                         std::to_string(c->sct()) + "/" + Hex(c->sc(), 2));
  return Ok();
}

std::string Field(const uint8_t* p, size_t n) {
  std::string s(reinterpret_cast<const char*>(p), strnlen(reinterpret_cast<const char*>(p), n));
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

DiscoveryEntry ParseEntry(const uint8_t* e, const TransportId& from) {
  DiscoveryEntry d;
  d.trtype = e[0];
  d.adrfam = e[1];
  d.subtype = e[2];
  d.treq = e[3];
  std::memcpy(&d.portid, e + 4, 2);
  std::memcpy(&d.cntlid, e + 6, 2);
  std::memcpy(&d.asqsz, e + 8, 2);
  std::memcpy(&d.eflags, e + 10, 2);
  d.trsvcid = Field(e + 32, 32);
  d.subnqn = Field(e + 256, 256);
  d.traddr = Field(e + 512, 256);
  d.sectype = e[768];
  if (d.trtype == 3 && (d.adrfam == 1 || d.adrfam == 2)) {
    std::string text = std::string("trtype:tcp adrfam:") + (d.adrfam == 1 ? "ipv4" : "ipv6") + " traddr:" + d.traddr +
                       " trsvcid:" + d.trsvcid + " subnqn:" + d.subnqn;
    if (!from.hostnqn.empty()) text += " hostnqn:" + from.hostnqn;
    if (auto t = TransportId::Parse(text)) {
      d.trid = *t;
      d.trid_ok = true;
    }
  }
  return d;
}

}  // namespace

bool IsDiscoveryTrid(const TransportId& trid) {
  return trid.trtype == TransportType::kTcp && trid.subnqn == TransportId::kDiscoveryNqn;
}

Result<DiscoveryLog> ReadDiscoveryLog(const TransportId& trid, const ControllerOptions& options) {
  if (!IsDiscoveryTrid(trid))
    return Fail(EINVAL, "'" + trid.ToString() + "' is not a discovery service: give trtype:tcp with traddr and trsvcid, "
                        "and subnqn " + std::string(TransportId::kDiscoveryNqn) + " or none");
  auto ep = tcp::ResolveEndpoint(trid);
  if (!ep) return ep.error();
  tcp::HostIdentity host = tcp::DefaultHostIdentity();
  if (!trid.hostnqn.empty()) host.nqn = trid.hostnqn;
  tcp::ConnectParams p;
  p.entries = 32;
  p.subnqn = trid.subnqn;
  p.hostnqn = host.nqn;
  std::memcpy(p.hostid, host.id, 16);
  p.header_digest = options.tcp_header_digest;
  p.data_digest = options.tcp_data_digest;
  p.timeout = std::chrono::milliseconds(options.connect_timeout_ms);
  auto q = tcp::TcpQueue::Connect(*ep, p);
  if (!q) return q.error();
  const std::string where = "discovery service " + ep->text + ": ";
  auto fail = [&](const Error& e) { return Fail(e.code, where + e.message); };

  auto cap = PropertyGet(**q, spec::kRegCap, true);
  if (!cap) return fail(cap.error());
  const Nanos to = std::chrono::milliseconds(500) * std::max<uint64_t>((*cap >> 24) & 0xFF, 1);
  if (Status st = PropertySet(**q, spec::kRegCc, 1 | (6u << 16) | (4u << 20)); !st) return fail(st.error());
  if (Status st = WaitCsts(**q, 1, 1, to, "enabling"); !st) return fail(st.error());

  DiscoveryLog log;
  std::vector<uint8_t> buf;
  bool consistent = false;
  for (int attempt = 0; attempt < 10 && !consistent; ++attempt) {
    std::vector<uint8_t> header(kEntryBytes);
    if (Status st = GetLog(**q, 0, header); !st) return fail(st.error());
    uint64_t gen, numrec;
    std::memcpy(&gen, header.data(), 8);
    std::memcpy(&numrec, header.data() + 8, 8);
    if (numrec > kMaxRecords)
      return Fail(EPROTO, where + "the log claims " + std::to_string(numrec) + " records (at most " +
                              std::to_string(kMaxRecords) + " are read)");
    buf.assign(numrec * kEntryBytes, 0);
    // In pieces of at most 64 KiB: a log larger than one transfer.
    for (size_t at = 0; at < buf.size();) {
      size_t n = std::min<size_t>(buf.size() - at, 64 * 1024);
      if (Status st = GetLog(**q, kEntryBytes + at, std::span<uint8_t>(buf.data() + at, n)); !st) return fail(st.error());
      at += n;
    }
    if (Status st = GetLog(**q, 0, std::span<uint8_t>(header.data(), 16)); !st) return fail(st.error());
    uint64_t gen_after;
    std::memcpy(&gen_after, header.data(), 8);
    consistent = gen_after == gen;
    log.generation = gen;
  }
  if (!consistent) return Fail(EAGAIN, where + "the discovery log changed during each of 10 reads");
  for (size_t i = 0; i < buf.size() / kEntryBytes; ++i) log.entries.push_back(ParseEntry(buf.data() + i * kEntryBytes, trid));
  // Shutdown notification (normal), then the connection closes.
  if (PropertySet(**q, spec::kRegCc, 1 | (6u << 16) | (4u << 20) | (1u << 14)))
    (void)WaitCsts(**q, 0xC, 0x8, std::chrono::seconds(1), "shutting down");
  return log;
}

}  // namespace nvmux
