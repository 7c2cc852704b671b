#include "nvmux/transport_id.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <map>

namespace nvmux {
namespace {

constexpr const char* kAllowedKeys = "trtype, traddr, trsvcid, subnqn, adrfam, ns, hostnqn";

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

Error Bad(const std::string& what) { return Fail(EINVAL, "bad transport id: " + what); }

bool ParseHex(std::string_view s, unsigned max, unsigned& out) {
  if (s.empty() || s.size() > 4) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, 16);
  return ec == std::errc() && p == s.data() + s.size() && out <= max;
}

// "0000:04:00.0" or "04:00.0" -> "0000:04:00.0".
Result<std::string> NormalisePciAddress(std::string_view a) {
  std::string_view rest = a;
  unsigned domain = 0, bus, dev, fn;
  size_t colons = static_cast<size_t>(std::count(a.begin(), a.end(), ':'));
  if (colons == 2) {
    size_t c = rest.find(':');
    if (!ParseHex(rest.substr(0, c), 0xFFFF, domain)) colons = 0;
    rest = rest.substr(c + 1);
  }
  size_t c = rest.find(':'), dot = rest.find('.');
  if (colons < 1 || c == std::string_view::npos || dot == std::string_view::npos || dot < c ||
      !ParseHex(rest.substr(0, c), 0xFF, bus) || !ParseHex(rest.substr(c + 1, dot - c - 1), 0x1F, dev) ||
      !ParseHex(rest.substr(dot + 1), 0x7, fn))
    return Bad("traddr '" + std::string(a) + "' is not a PCI address (expected DDDD:BB:DD.F, e.g. 0000:04:00.0)");
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%04x:%02x:%02x.%x", domain, bus, dev, fn);
  return std::string(buf);
}

}  // namespace

const char* ToString(TransportType type) {
  switch (type) {
    case TransportType::kVfioUser: return "vfiouser";
    case TransportType::kPcie: return "pcie";
    case TransportType::kTcp: return "tcp";
  }
  return "?";
}

const char* ToString(AddressFamily family) {
  switch (family) {
    case AddressFamily::kNone: return "";
    case AddressFamily::kIpv4: return "ipv4";
    case AddressFamily::kIpv6: return "ipv6";
  }
  return "?";
}

Result<TransportId> TransportId::Parse(std::string_view text) {
  std::map<std::string, std::string> kv;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i == text.size()) break;
    size_t end = i;
    while (end < text.size() && !std::isspace(static_cast<unsigned char>(text[end]))) ++end;
    std::string_view token = text.substr(i, end - i);
    i = end;
    size_t sep = token.find_first_of(":=");
    if (sep == std::string_view::npos || sep == 0)
      return Bad("'" + std::string(token) + "' is not key:value (keys: " + kAllowedKeys + ")");
    std::string key = Lower(token.substr(0, sep));
    std::string value(token.substr(sep + 1));
    static const char* const kKeys[] = {"trtype", "traddr", "trsvcid", "subnqn", "adrfam", "ns", "hostnqn"};
    if (std::find_if(std::begin(kKeys), std::end(kKeys), [&](const char* k) { return key == k; }) == std::end(kKeys))
      return Bad("unknown key '" + key + "' (allowed: " + kAllowedKeys + ")");
    if (value.empty()) return Bad("key '" + key + "' has no value");
    if (!kv.emplace(key, value).second) return Bad("key '" + key + "' given twice");
  }
  auto get = [&](const char* k) -> std::optional<std::string> {
    auto it = kv.find(k);
    return it == kv.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  TransportId id;
  auto trtype = get("trtype");
  if (!trtype) return Bad("missing trtype (allowed: vfiouser, pcie, tcp)");
  std::string t = Lower(*trtype);
  if (t == "vfiouser") id.trtype = TransportType::kVfioUser;
  else if (t == "pcie") id.trtype = TransportType::kPcie;
  else if (t == "tcp") id.trtype = TransportType::kTcp;
  else return Bad("trtype '" + *trtype + "' is not supported (allowed: vfiouser, pcie, tcp)");

  auto traddr = get("traddr");
  if (!traddr) {
    // trtype alone: every controller of that type (a group's secondary
    // probes the ones its primary published); nothing to connect to.
    if (kv.size() > 1)
      return Bad(std::string("trtype ") + nvmux::ToString(id.trtype) + " needs traddr (or give trtype alone: "
                 "every controller of that type a group's primary published)");
    return id;
  }
  if (auto adrfam = get("adrfam")) {
    std::string f = Lower(*adrfam);
    if (f == "ipv4") id.adrfam = AddressFamily::kIpv4;
    else if (f == "ipv6") id.adrfam = AddressFamily::kIpv6;
    else return Bad("adrfam '" + *adrfam + "' (allowed: ipv4, ipv6)");
  }
  if (auto ns = get("ns")) {
    uint32_t v = 0;
    auto [p, ec] = std::from_chars(ns->data(), ns->data() + ns->size(), v);
    if (ec != std::errc() || p != ns->data() + ns->size() || v == 0 || v == 0xFFFFFFFF)
      return Bad("ns '" + *ns + "' (allowed: a namespace id 1..4294967294)");
    id.nsid = v;
  }
  id.hostnqn = get("hostnqn").value_or("");
  switch (id.trtype) {
    case TransportType::kVfioUser:
      if (traddr->front() != '/')
        return Bad("vfiouser traddr '" + *traddr + "' must be an absolute path to the socket directory");
      while (traddr->size() > 1 && traddr->back() == '/') traddr->pop_back();
      id.traddr = *traddr;
      if (get("trsvcid") || id.adrfam != AddressFamily::kNone)
        return Bad("trtype vfiouser takes traddr (and subnqn, ns, hostnqn) only");
      // SPDK's host needs a subnqn here (without one it takes the address for
      // a discovery service); we accept it and check it against the NQN the
      // controller reports when it attaches.
      id.subnqn = get("subnqn").value_or("");
      break;
    case TransportType::kPcie: {
      auto bdf = NormalisePciAddress(*traddr);
      if (!bdf) return bdf.error();
      id.traddr = *bdf;
      if (get("trsvcid") || get("subnqn") || id.adrfam != AddressFamily::kNone)
        return Bad("trtype pcie takes traddr (and ns, hostnqn) only");
      break;
    }
    case TransportType::kTcp: {
      if (id.adrfam == AddressFamily::kNone) id.adrfam = AddressFamily::kIpv4;
      unsigned char addr[16];
      int af = id.adrfam == AddressFamily::kIpv4 ? AF_INET : AF_INET6;
      if (inet_pton(af, traddr->c_str(), addr) != 1)
        return Bad("tcp traddr '" + *traddr + "' is not an " + nvmux::ToString(id.adrfam) + " address");
      id.traddr = *traddr;
      auto port = get("trsvcid");
      if (!port) return Bad("trtype tcp needs trsvcid (the port, e.g. 4420)");
      unsigned v = 0;
      auto [p, ec] = std::from_chars(port->data(), port->data() + port->size(), v);
      if (ec != std::errc() || p != port->data() + port->size() || v == 0 || v > 65535)
        return Bad("trsvcid '" + *port + "' (allowed: a port 1..65535)");
      id.trsvcid = std::to_string(v);
      id.subnqn = get("subnqn").value_or(std::string(kDiscoveryNqn));
      break;
    }
  }
  return id;
}

std::string TransportId::Key() const {
  if (trtype == TransportType::kTcp) return ToString();
  TransportId plain = *this;
  plain.subnqn.clear();
  return plain.ToString();
}

Status CheckSubsystemNqn(const TransportId& trid, std::string_view reported) {
  if (trid.trtype == TransportType::kTcp || trid.subnqn.empty()) return Ok();
  std::string_view nqn = reported.substr(0, reported.find('\0'));
  while (!nqn.empty() && nqn.back() == ' ') nqn.remove_suffix(1);
  if (nqn == trid.subnqn) return Ok();
  return Fail(ENODEV, "controller " + trid.Key() + " is subsystem '" + std::string(nqn) +
                          "', not the subnqn '" + trid.subnqn + "' the transport id names (leave subnqn out, or use '" +
                          std::string(nqn) + "')");
}

std::string TransportId::ToString() const {
  std::string s = std::string("trtype:") + nvmux::ToString(trtype);
  if (adrfam != AddressFamily::kNone) s += std::string(" adrfam:") + nvmux::ToString(adrfam);
  if (!traddr.empty()) s += " traddr:" + traddr;
  if (!trsvcid.empty()) s += " trsvcid:" + trsvcid;
  if (!subnqn.empty()) s += " subnqn:" + subnqn;
  if (nsid) s += " ns:" + std::to_string(*nsid);
  if (!hostnqn.empty()) s += " hostnqn:" + hostnqn;
  return s;
}

}  // namespace nvmux
