#include "tools/identify/identify_json.h"

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "nvmux/spec/bits.h"
#include "nvmux/spec/log_page.h"

#include "tools/identify/identify_format.h"
#include "tools/common/json_writer.h"

namespace nvmux::identify {
using tools::JsonWriter;
namespace {

// Shorthands: one key and its value.
void U(JsonWriter& w, std::string_view key, uint64_t value) { w.Key(key).Uint(value); }
void S(JsonWriter& w, std::string_view key, std::string_view value) { w.Key(key).String(value); }
void Ascii(JsonWriter& w, std::string_view key, const char* data, size_t size) {
  w.Key(key).String(AsciiField(data, size));
}
// 128-bit counter: a number when it fits in 64 bits, else a decimal string.
void Counter(JsonWriter& w, std::string_view key, const uint8_t (&le)[16]) {
  w.Key(key);
  if (const auto v = Uint128ToU64(le)) {
    w.Uint(*v);
  } else {
    w.String(Uint128Decimal(le));
  }
}
// `key`: write(w, *value), or null when the optional is empty.
template <typename T, typename Write>
void OrNull(JsonWriter& w, std::string_view key, const std::optional<T>& value, Write write) {
  w.Key(key);
  if (value) {
    write(w, *value);
  } else {
    w.Null();
  }
}

void Registers(JsonWriter& w, const IdentifyReport& r) {
  w.Key("registers").BeginObject();
  const auto& cap = r.cap;
  w.Key("cap").BeginObject();
  U(w, "raw", cap.raw);
  U(w, "mqes", cap.mqes());
  U(w, "cqr", cap.cqr());
  U(w, "ams", cap.ams());
  U(w, "to", cap.to());
  U(w, "dstrd", cap.dstrd());
  U(w, "nssrs", cap.nssrs());
  U(w, "css", cap.css());
  U(w, "bps", cap.bps());
  U(w, "mpsmin", cap.mpsmin());
  U(w, "mpsmax", cap.mpsmax());
  U(w, "pmrs", cap.pmrs());
  U(w, "cmbs", cap.cmbs());
  w.EndObject();
  w.Key("vs").BeginObject();
  U(w, "raw", r.vs.raw);
  U(w, "mjr", r.vs.mjr());
  U(w, "mnr", r.vs.mnr());
  U(w, "ter", r.vs.ter());
  std::string version = std::to_string(r.vs.mjr()) + "." + std::to_string(r.vs.mnr());
  if (r.vs.ter() != 0) {
    version += "." + std::to_string(r.vs.ter());
  }
  S(w, "version", version);
  w.EndObject();
  w.Key("cc").BeginObject();
  U(w, "raw", r.cc.raw);
  U(w, "en", r.cc.en());
  U(w, "css", r.cc.css());
  U(w, "mps", r.cc.mps());
  U(w, "ams", r.cc.ams());
  U(w, "shn", r.cc.shn());
  U(w, "iosqes", r.cc.iosqes());
  U(w, "iocqes", r.cc.iocqes());
  w.EndObject();
  w.Key("csts").BeginObject();
  U(w, "raw", r.csts.raw);
  U(w, "rdy", r.csts.rdy());
  U(w, "cfs", r.csts.cfs());
  U(w, "shst", r.csts.shst());
  U(w, "nssro", r.csts.nssro());
  U(w, "pp", r.csts.pp());
  w.EndObject();
  w.EndObject();
}

void Controller(JsonWriter& w, const IdentifyReport& r) {
  const auto& c = r.ctrlr;
  w.Key("controller").BeginObject();
  U(w, "vid", c.vid);
  U(w, "ssvid", c.ssvid);
  Ascii(w, "sn", c.sn, sizeof(c.sn));
  Ascii(w, "mn", c.mn, sizeof(c.mn));
  Ascii(w, "fr", c.fr, sizeof(c.fr));
  U(w, "rab", c.rab);
  // IEEE OUI as the 24-bit little-endian value (as nvme-cli's JSON has it).
  U(w, "ieee", uint32_t{c.ieee[0]} | (uint32_t{c.ieee[1]} << 8) | (uint32_t{c.ieee[2]} << 16));
  U(w, "cmic", c.cmic);
  U(w, "mdts", c.mdts);
  w.Key("mdts_bytes");
  if (const auto mdts = MdtsBytes(r.cap, c.mdts)) {
    w.Uint(*mdts);
  } else {
    w.Null();
  }
  U(w, "cntlid", c.cntlid);
  U(w, "ver", c.ver);
  U(w, "rtd3r", c.rtd3r);
  U(w, "rtd3e", c.rtd3e);
  U(w, "oaes", c.oaes);
  U(w, "ctratt", c.ctratt);
  U(w, "rrls", c.rrls);
  U(w, "cntrltype", c.cntrltype);
  S(w, "fguid", HexBytes(c.fguid));
  U(w, "crdt1", c.crdt1);
  U(w, "crdt2", c.crdt2);
  U(w, "crdt3", c.crdt3);
  U(w, "nvmsr", c.nvmsr);
  U(w, "vwci", c.vwci);
  U(w, "mec", c.mec);
  U(w, "oacs", c.oacs);
  U(w, "acl", c.acl);
  U(w, "aerl", c.aerl);
  U(w, "frmw", c.frmw);
  U(w, "lpa", c.lpa);
  U(w, "elpe", c.elpe);
  U(w, "npss", c.npss);
  U(w, "avscc", c.avscc);
  U(w, "apsta", c.apsta);
  U(w, "wctemp", c.wctemp);
  U(w, "cctemp", c.cctemp);
  U(w, "mtfa", c.mtfa);
  U(w, "hmpre", c.hmpre);
  U(w, "hmmin", c.hmmin);
  Counter(w, "tnvmcap", c.tnvmcap);
  Counter(w, "unvmcap", c.unvmcap);
  U(w, "rpmbs", c.rpmbs);
  U(w, "edstt", c.edstt);
  U(w, "dsto", c.dsto);
  U(w, "fwug", c.fwug);
  U(w, "kas", c.kas);
  U(w, "hctma", c.hctma);
  U(w, "mntmt", c.mntmt);
  U(w, "mxtmt", c.mxtmt);
  U(w, "sanicap", c.sanicap);
  U(w, "hmminds", c.hmminds);
  U(w, "hmmaxd", c.hmmaxd);
  U(w, "nsetidmax", c.nsetidmax);
  U(w, "endgidmax", c.endgidmax);
  U(w, "anatt", c.anatt);
  U(w, "anacap", c.anacap);
  U(w, "anagrpmax", c.anagrpmax);
  U(w, "nanagrpid", c.nanagrpid);
  U(w, "pels", c.pels);
  U(w, "sqes", c.sqes);
  U(w, "cqes", c.cqes);
  U(w, "maxcmd", c.maxcmd);
  U(w, "nn", c.nn);
  U(w, "oncs", c.oncs);
  U(w, "fuses", c.fuses);
  U(w, "fna", c.fna);
  U(w, "vwc", c.vwc);
  U(w, "awun", c.awun);
  U(w, "awupf", c.awupf);
  U(w, "nvscc", c.nvscc);
  U(w, "nwpc", c.nwpc);
  U(w, "acwu", c.acwu);
  U(w, "sgls", c.sgls);
  U(w, "mnan", c.mnan);
  Ascii(w, "subnqn", c.subnqn, sizeof(c.subnqn));
  w.Key("psd").BeginArray();
  for (unsigned i = 0; i <= c.npss && i < 32; ++i) {
    const auto& ps = c.psd[i];
    w.BeginObject();
    U(w, "mp", ps.mp);
    U(w, "mxps", ps.flags & 1u);
    U(w, "nops", (ps.flags >> 1) & 1u);
    U(w, "enlat", ps.enlat);
    U(w, "exlat", ps.exlat);
    U(w, "rrt", ps.rrt);
    U(w, "rrl", ps.rrl);
    U(w, "rwt", ps.rwt);
    U(w, "rwl", ps.rwl);
    U(w, "idlp", ps.idlp);
    U(w, "ips", ps.ips);
    U(w, "actp", ps.actp);
    U(w, "apw_aps", ps.apw_aps);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
}

// A feature: null, or {"raw": dw0, name: bits...} with fields given as
// {name, low bit, width}.
struct FeatureField {
  std::string_view name;
  unsigned lo;
  unsigned width;
};
void Feature(JsonWriter& w, std::string_view key, const std::optional<uint32_t>& value,
             std::span<const FeatureField> fields) {
  w.Key(key);
  if (!value) {
    w.Null();
    return;
  }
  w.BeginObject();
  U(w, "raw", *value);
  for (const auto& f : fields) {
    U(w, f.name, spec::GetBits<uint32_t>(*value, f.lo, f.width));
  }
  w.EndObject();
}

void Features(JsonWriter& w, const IdentifyReport& r) {
  w.Key("queues").BeginObject();
  U(w, "io_sq_granted", r.io_sq_granted);
  U(w, "io_cq_granted", r.io_cq_granted);
  w.EndObject();
  w.Key("features").BeginObject();
  static constexpr FeatureField kArbitration[] = {{"ab", 0, 3}, {"lpw", 8, 8}, {"mpw", 16, 8}, {"hpw", 24, 8}};
  static constexpr FeatureField kPower[] = {{"ps", 0, 5}, {"wh", 5, 3}};
  static constexpr FeatureField kTemperature[] = {{"tmpth", 0, 16}, {"tmpsel", 16, 4}, {"thsel", 20, 2}};
  static constexpr FeatureField kErrorRecovery[] = {{"tler", 0, 16}, {"dulbe", 16, 1}};
  static constexpr FeatureField kQueues[] = {{"nsqa", 0, 16}, {"ncqa", 16, 16}};
  Feature(w, "arbitration", r.arbitration, kArbitration);
  Feature(w, "power_management", r.power_management, kPower);
  Feature(w, "temperature_threshold", r.temperature_threshold, kTemperature);
  Feature(w, "error_recovery", r.error_recovery, kErrorRecovery);
  Feature(w, "number_of_queues", r.number_of_queues, kQueues);
  w.EndObject();
}

void SmartHealth(JsonWriter& w, const spec::SmartHealthLog& h) {
  w.BeginObject();
  U(w, "critical_warning", h.critical_warning);
  U(w, "composite_temperature", Le16(h.composite_temperature));
  U(w, "avail_spare", h.avail_spare);
  U(w, "avail_spare_threshold", h.avail_spare_threshold);
  U(w, "percentage_used", h.percentage_used);
  U(w, "endurance_group_critical_warning", h.endurance_group_critical_warning);
  Counter(w, "data_units_read", h.data_units_read);
  Counter(w, "data_units_written", h.data_units_written);
  Counter(w, "host_read_commands", h.host_read_commands);
  Counter(w, "host_write_commands", h.host_write_commands);
  Counter(w, "controller_busy_time", h.controller_busy_time);
  Counter(w, "power_cycles", h.power_cycles);
  Counter(w, "power_on_hours", h.power_on_hours);
  Counter(w, "unsafe_shutdowns", h.unsafe_shutdowns);
  Counter(w, "media_errors", h.media_errors);
  Counter(w, "num_err_log_entries", h.num_err_log_entries);
  U(w, "warning_temp_time", h.warning_temp_time);
  U(w, "critical_comp_time", h.critical_comp_time);
  w.Key("temp_sensor").BeginArray();
  for (const uint16_t t : h.temp_sensor) {
    w.Uint(t);
  }
  w.EndArray();
  U(w, "thm_temp1_trans_count", h.thm_temp1_trans_count);
  U(w, "thm_temp2_trans_count", h.thm_temp2_trans_count);
  U(w, "thm_temp1_total_time", h.thm_temp1_total_time);
  U(w, "thm_temp2_total_time", h.thm_temp2_total_time);
  w.EndObject();
}

void ErrorLog(JsonWriter& w, const std::vector<spec::ErrorInformationEntry>& entries) {
  w.BeginArray();
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    if (e.error_count == 0) {
      continue;
    }
    w.BeginObject();
    U(w, "index", i);
    U(w, "error_count", e.error_count);
    U(w, "sqid", e.sqid);
    U(w, "cid", e.cid);
    U(w, "status", e.status);  // bit 0 phase tag, bits 15:1 status field
    U(w, "sc", (e.status >> 1) & 0xFFu);
    U(w, "sct", (e.status >> 9) & 7u);
    U(w, "dnr", (e.status >> 15) & 1u);
    U(w, "parm_error_location", e.parm_error_location);
    U(w, "lba", e.lba);
    U(w, "nsid", e.nsid);
    U(w, "vs", e.vs);
    U(w, "trtype", e.trtype);
    U(w, "csi", e.csi);
    U(w, "trtype_spec", e.trtype_spec);
    w.EndObject();
  }
  w.EndArray();
}

void FirmwareSlots(JsonWriter& w, const spec::FirmwareSlotLog& log) {
  w.BeginObject();
  U(w, "afi", log.afi);
  U(w, "active_slot", log.afi & 7u);
  U(w, "next_reset_slot", (log.afi >> 4) & 7u);
  w.Key("frs").BeginArray();
  for (const auto& rev : log.frs) {
    w.String(AsciiField(rev, sizeof(rev)));
  }
  w.EndArray();
  w.EndObject();
}

void EffectsList(JsonWriter& w, std::string_view key, const uint32_t (&entries)[256], bool admin) {
  w.Key(key).BeginArray();
  for (unsigned opc = 0; opc < 256; ++opc) {
    const uint32_t e = entries[opc];
    if ((e & spec::kEffectCsupp) == 0) {
      continue;
    }
    const auto op = static_cast<uint8_t>(opc);
    w.BeginObject();
    U(w, "opcode", opc);
    S(w, "name", admin ? AdminOpcodeName(op) : IoOpcodeName(op));
    U(w, "effects", e);
    w.Key("lbcc").Bool((e & spec::kEffectLbcc) != 0);
    w.Key("ncc").Bool((e & spec::kEffectNcc) != 0);
    w.Key("nic").Bool((e & spec::kEffectNic) != 0);
    w.Key("ccc").Bool((e & spec::kEffectCcc) != 0);
    U(w, "cse", (e >> 16) & 7u);
    w.EndObject();
  }
  w.EndArray();
}

void Logs(JsonWriter& w, const IdentifyReport& r) {
  w.Key("logs").BeginObject();
  OrNull(w, "smart_health", r.smart_health, SmartHealth);
  OrNull(w, "error_information", r.errors, ErrorLog);
  OrNull(w, "firmware_slot", r.firmware_slots, FirmwareSlots);
  w.Key("commands_supported_and_effects");
  if (r.effects) {
    w.BeginObject();
    EffectsList(w, "admin", r.effects->acs, true);
    EffectsList(w, "io", r.effects->iocs, false);
    w.EndObject();
  } else {
    w.Null();
  }
  w.EndObject();
}

void Namespace(JsonWriter& w, const NamespaceReport& n) {
  const auto& d = n.data;
  w.BeginObject();
  U(w, "nsid", n.nsid);
  U(w, "nsze", d.nsze);
  U(w, "ncap", d.ncap);
  U(w, "nuse", d.nuse);
  U(w, "nsfeat", d.nsfeat);
  U(w, "nlbaf", d.nlbaf);
  U(w, "flbas", d.flbas);
  U(w, "mc", d.mc);
  U(w, "dpc", d.dpc);
  U(w, "dps", d.dps);
  U(w, "nmic", d.nmic);
  U(w, "rescap", d.rescap);
  U(w, "fpi", d.fpi);
  U(w, "dlfeat", d.dlfeat);
  U(w, "nawun", d.nawun);
  U(w, "nawupf", d.nawupf);
  U(w, "nacwu", d.nacwu);
  U(w, "nabsn", d.nabsn);
  U(w, "nabo", d.nabo);
  U(w, "nabspf", d.nabspf);
  U(w, "noiob", d.noiob);
  Counter(w, "nvmcap", d.nvmcap);
  U(w, "npwg", d.npwg);
  U(w, "npwa", d.npwa);
  U(w, "npdg", d.npdg);
  U(w, "npda", d.npda);
  U(w, "nows", d.nows);
  U(w, "mssrl", d.mssrl);
  U(w, "mcl", d.mcl);
  U(w, "msrc", d.msrc);
  U(w, "anagrpid", d.anagrpid);
  U(w, "nsattr", d.nsattr);
  U(w, "nvmsetid", d.nvmsetid);
  U(w, "endgid", d.endgid);
  S(w, "nguid", HexBytes(d.nguid));
  S(w, "eui64", HexBytes(d.eui64));
  w.Key("lbaf").BeginArray();
  for (unsigned i = 0; i <= d.nlbaf && i < 16; ++i) {
    w.BeginObject();
    U(w, "ms", d.lbaf[i].ms);
    U(w, "lbads", d.lbaf[i].lbads);
    U(w, "rp", d.lbaf[i].rp & 3u);
    U(w, "data_size", LbaDataSize(d, static_cast<uint8_t>(i)));
    w.EndObject();
  }
  w.EndArray();
  const uint8_t format = CurrentLbaFormat(d);
  const uint64_t lba_bytes = LbaDataSize(d, format);
  U(w, "lba_format", format);
  U(w, "lba_data_size", lba_bytes);
  uint64_t size_bytes = 0;
  w.Key("size_bytes");
  if (lba_bytes != 0 && !__builtin_mul_overflow(d.nsze, lba_bytes, &size_bytes)) {
    w.Uint(size_bytes);
  } else {
    w.Null();
  }
  w.Key("descriptors").BeginObject();
  const auto hex = [](JsonWriter& jw, const auto& bytes) { jw.String(HexBytes(bytes)); };
  OrNull(w, "nguid", n.nguid, hex);
  OrNull(w, "eui64", n.eui64, hex);
  OrNull(w, "uuid", n.uuid, [](JsonWriter& jw, const std::array<uint8_t, 16>& id) { jw.String(UuidString(id)); });
  w.EndObject();
  w.EndObject();
}

}  // namespace

std::string ToJson(const IdentifyReport& report, int indent) {
  JsonWriter w(indent);
  w.BeginObject();
  S(w, "transport_id", report.transport_id);
  Registers(w, report);
  Controller(w, report);
  Features(w, report);
  Logs(w, report);
  w.Key("namespaces").BeginArray();
  for (const auto& ns : report.namespaces) {
    Namespace(w, ns);
  }
  w.EndArray();
  w.EndObject();
  return std::move(w).Take();
}

}  // namespace nvmux::identify
