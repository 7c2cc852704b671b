#include "tools/common/discovery_format.h"

#include <sstream>

#include "tools/common/json_writer.h"

namespace nvmux::tools {
namespace {

std::string Trtype(uint8_t v) {
  switch (v) {
    case 1: return "rdma";
    case 2: return "fc";
    case 3: return "tcp";
    case 254: return "loop";
  }
  return "unrecognized (" + std::to_string(v) + ")";
}

std::string Adrfam(uint8_t v) {
  switch (v) {
    case 1: return "ipv4";
    case 2: return "ipv6";
    case 3: return "infiniband";
    case 4: return "fibre-channel";
    case 254: return "loop";
  }
  return "unrecognized (" + std::to_string(v) + ")";
}

std::string Subtype(uint8_t v) {
  switch (v) {
    case DiscoveryEntry::kReferral: return "discovery subsystem referral";
    case DiscoveryEntry::kNvmSubsystem: return "nvme subsystem";
    case DiscoveryEntry::kCurrentDiscovery: return "current discovery subsystem";
  }
  return "unrecognized (" + std::to_string(v) + ")";
}

std::string Treq(uint8_t v) {
  std::string s;
  switch (v & 0x3) {
    case 0: s = "not specified"; break;
    case 1: s = "required"; break;
    case 2: s = "not required"; break;
    default: s = "reserved"; break;
  }
  if ((v & 0x4) != 0) s += ", sq flow control disable supported";
  return s;
}

std::string Eflags(uint16_t v) {
  if (v == 0) return "none";
  std::string s;
  if ((v & 0x1) != 0) s += "explicit discovery connections, ";
  if ((v & 0x2) != 0) s += "duplicate discovery information, ";
  if ((v & 0x4) != 0) s += "no cdc connectivity, ";
  if (s.empty()) return "0x" + std::to_string(v);
  s.resize(s.size() - 2);
  return s;
}

std::string Sectype(uint8_t v) {
  switch (v) {
    case 0: return "none";
    case 1: return "tls12";
    case 2: return "tls13";
  }
  return "unrecognized (" + std::to_string(v) + ")";
}

}  // namespace

std::string FormatDiscoveryLog(const DiscoveryLog& log) {
  std::ostringstream o;
  o << "\nDiscovery Log Number of Records " << log.entries.size() << ", Generation counter " << log.generation << "\n";
  for (size_t i = 0; i < log.entries.size(); ++i) {
    const DiscoveryEntry& e = log.entries[i];
    o << "=====Discovery Log Entry " << i << "======\n"
      << "trtype:  " << Trtype(e.trtype) << "\n"
      << "adrfam:  " << Adrfam(e.adrfam) << "\n"
      << "subtype: " << Subtype(e.subtype) << "\n"
      << "treq:    " << Treq(e.treq) << "\n"
      << "portid:  " << e.portid << "\n"
      << "trsvcid: " << e.trsvcid << "\n"
      << "subnqn:  " << e.subnqn << "\n"
      << "traddr:  " << e.traddr << "\n"
      << "eflags:  " << Eflags(e.eflags) << "\n";
    if (e.trtype == 3) o << "sectype: " << Sectype(e.sectype) << "\n";
  }
  return o.str();
}

std::string DiscoveryLogJson(const DiscoveryLog& log) {
  JsonWriter w(0);
  w.BeginObject();
  w.Key("genctr").Uint(log.generation);
  w.Key("numrec").Uint(log.entries.size());
  w.Key("records").BeginArray();
  for (const DiscoveryEntry& e : log.entries) {
    w.BeginObject();
    w.Key("trtype").String(Trtype(e.trtype));
    w.Key("adrfam").String(Adrfam(e.adrfam));
    w.Key("subtype").String(Subtype(e.subtype));
    w.Key("treq").String(Treq(e.treq));
    w.Key("portid").Uint(e.portid);
    w.Key("trsvcid").String(e.trsvcid);
    w.Key("subnqn").String(e.subnqn);
    w.Key("traddr").String(e.traddr);
    w.Key("eflags").String(Eflags(e.eflags));
    if (e.trid_ok) w.Key("trid").String(e.trid.ToString());
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return std::move(w).Take();
}

}  // namespace nvmux::tools
