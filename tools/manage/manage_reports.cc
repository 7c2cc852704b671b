#include "tools/manage/manage_reports.h"

#include <cstdio>
#include <cstring>
#include <string>

#include "nvmux/spec/log_page.h"
#include "tools/manage/manage_output.h"

namespace nvmux::manage {
namespace {

void Print(const std::string& text) { std::fputs(text.c_str(), stdout); }

// nvme list's Format column: "512   B +  0 B", "  4 kB +  8 B".
std::string LbaFormatText(uint32_t block_size, uint16_t ms) {
  double v = block_size;
  const char* suffix = "";
  if (v >= 1000.0) {
    v /= 1000.0;
    suffix = "k";
  }
  return Sprintf("%3.0f %2sB + %2u B", v, suffix, ms);
}

// "1.02  GB" for a 128-bit count of data units (1000 x 512 bytes).
std::string DataUnitsText(const uint8_t (&le)[16]) {
  double units = 0;
  for (size_t i = 16; i-- > 0;) units = units * 256 + le[i];
  double bytes = units * 512000.0;
  if (bytes >= 1.8e19) return "more than 18  EB";
  return FormatUnits(static_cast<uint64_t>(bytes));
}

// A log page into DMA memory: `length` bytes (rounded up to a dword, as
// Get Log Page counts dwords).
Result<DmaBuffer> ReadLog(Session& s, uint8_t lid, uint32_t nsid, uint32_t length, uint64_t offset = 0) {
  uint32_t dwords = (length + 3) / 4 * 4;
  auto buf = s.env().AllocDma(dwords, 4096, "log-page");
  if (!buf) return buf.error();
  if (Status st = s.ctrlr().GetLogPage(lid, nsid, buf->data(), dwords, offset); !st) return st.error();
  return std::move(*buf);
}

}  // namespace

int List(Session& s, bool json) {
  JsonWriter j;
  j.BeginObject().Key("Devices").BeginArray();
  size_t node_width = 4;
  for (const auto& c : s.controllers()) node_width = std::max(node_width, c->trid().ToString().size());
  const int w = static_cast<int>(node_width);
  std::string text = Sprintf("%-*s %-20s %-40s %-9s %-26s %-16s %s\n", w, "Node", "SN", "Model", "Namespace", "Usage",
                             "Format", "FW Rev");
  text += std::string(node_width, '-') + " " + std::string(20, '-') + " " + std::string(40, '-') + " " +
          std::string(9, '-') + " " + std::string(26, '-') + " " + std::string(16, '-') + " " + std::string(8, '-') +
          "\n";
  for (const auto& c : s.controllers()) {
    const std::string node = c->trid().ToString();
    const std::string sn = TrimField(c->data().sn), mn = TrimField(c->data().mn), fr = TrimField(c->data().fr);
    if (c->active_namespaces().empty()) {
      text += Sprintf("%-*s %-20s %-40s %-9s %-26s %-16s %s\n", w, node.c_str(), sn.c_str(), mn.c_str(), "-", "-", "-",
                      fr.c_str());
      j.BeginObject().Field("DevicePath", node).Field("SerialNumber", sn).Field("ModelNumber", mn);
      j.Field("Firmware", fr).Field("NameSpace", 0).EndObject();
    }
    for (uint32_t nsid : c->active_namespaces()) {
      const Namespace* ns = c->GetNamespace(nsid);
      if (ns == nullptr) continue;
      const uint64_t used = ns->data().nuse * ns->sector_size();
      const std::string usage = FormatUnits(used) + " / " + FormatUnits(ns->size_bytes());
      text += Sprintf("%-*s %-20s %-40s %-9u %-26s %-16s %s\n", w, node.c_str(), sn.c_str(), mn.c_str(), nsid,
                      usage.c_str(), LbaFormatText(ns->sector_size(), static_cast<uint16_t>(ns->md_size())).c_str(),
                      fr.c_str());
      j.BeginObject()
          .Field("DevicePath", node)
          .Field("SerialNumber", sn)
          .Field("ModelNumber", mn)
          .Field("Firmware", fr)
          .Field("NameSpace", nsid)
          .Field("UsedBytes", used)
          .Field("MaximumLBA", ns->num_sectors())
          .Field("PhysicalSize", ns->size_bytes())
          .Field("SectorSize", ns->sector_size())
          .Field("MetadataSize", ns->md_size())
          .EndObject();
    }
  }
  Print(json ? j.EndArray().EndObject().Line() : text);
  return 0;
}

int SmartLog(Session& s, uint32_t nsid, bool json) {
  auto buf = ReadLog(s, spec::lid::kSmartHealth, nsid, sizeof(spec::SmartHealthLog));
  if (!buf) return ReportFailure("smart-log", buf.error(), s.ctrlr());
  spec::SmartHealthLog log;
  std::memcpy(&log, buf->data(), sizeof log);
  const unsigned kelvin = Le16(log.composite_temperature);
  struct Counter {
    const char* name;
    const uint8_t (*value)[16];
  };
  const Counter counters[] = {
      {"data_units_read", &log.data_units_read},
      {"data_units_written", &log.data_units_written},
      {"host_read_commands", &log.host_read_commands},
      {"host_write_commands", &log.host_write_commands},
      {"controller_busy_time", &log.controller_busy_time},
      {"power_cycles", &log.power_cycles},
      {"power_on_hours", &log.power_on_hours},
      {"unsafe_shutdowns", &log.unsafe_shutdowns},
      {"media_errors", &log.media_errors},
      {"num_err_log_entries", &log.num_err_log_entries},
  };
  const struct {
    const char* name;
    uint32_t value;
  } times[] = {
      {"warning_temp_time", log.warning_temp_time},         {"critical_comp_time", log.critical_comp_time},
      {"thm_temp1_trans_count", log.thm_temp1_trans_count}, {"thm_temp2_trans_count", log.thm_temp2_trans_count},
      {"thm_temp1_total_time", log.thm_temp1_total_time},   {"thm_temp2_total_time", log.thm_temp2_total_time}};
  if (json) {
    JsonWriter j;
    j.BeginObject()
        .Field("critical_warning", log.critical_warning)
        .Field("temperature", kelvin)
        .Field("avail_spare", log.avail_spare)
        .Field("spare_thresh", log.avail_spare_threshold)
        .Field("percent_used", log.percentage_used)
        .Field("endurance_grp_critical_warning_summary", log.endurance_group_critical_warning);
    for (const Counter& c : counters) j.Key(c.name).Raw(Uint128ToString(*c.value));
    for (const auto& t : times) j.Field(t.name, t.value);
    for (int i = 0; i < 8; ++i)
      if (log.temp_sensor[i] != 0) j.Field("temperature_sensor_" + std::to_string(i + 1), log.temp_sensor[i]);
    Print(j.EndObject().Line());
    return 0;
  }
  std::string out =
      Sprintf("Smart Log for NVME device:%s namespace-id:%x\n", s.ctrlr().trid().ToString().c_str(), nsid);
  auto line = [&out](const char* name, const std::string& value) {
    out += Sprintf("%-40s: %s\n", name, value.c_str());
  };
  line("critical_warning", std::to_string(log.critical_warning));
  line("temperature", Sprintf("%d C (%u K)", static_cast<int>(kelvin) - 273, kelvin));
  line("available_spare", std::to_string(log.avail_spare) + "%");
  line("available_spare_threshold", std::to_string(log.avail_spare_threshold) + "%");
  line("percentage_used", std::to_string(log.percentage_used) + "%");
  line("endurance_grp_critical_warning_summary", std::to_string(log.endurance_group_critical_warning));
  for (const Counter& c : counters) {
    std::string v = Uint128ToString(*c.value);
    // Data units are thousands of 512-byte units (NVMe 1.4 figure 194).
    if (std::strncmp(c.name, "data_units", 10) == 0) v += " (" + DataUnitsText(*c.value) + ")";
    line(c.name, v);
  }
  for (const auto& t : times) line(t.name, std::to_string(t.value));
  for (int i = 0; i < 8; ++i)
    if (log.temp_sensor[i] != 0)
      line(("temperature_sensor_" + std::to_string(i + 1)).c_str(),
           Sprintf("%d C (%u K)", log.temp_sensor[i] - 273, static_cast<unsigned>(log.temp_sensor[i])));
  Print(out);
  return 0;
}

int ErrorLog(Session& s, std::optional<uint32_t> entries, bool json) {
  uint32_t n = entries.value_or(uint32_t{s.ctrlr().data().elpe} + 1);
  auto buf = ReadLog(s, spec::lid::kErrorInformation, 0xFFFFFFFFu, n * sizeof(spec::ErrorInformationEntry));
  if (!buf) return ReportFailure("error-log", buf.error(), s.ctrlr());
  const auto* e = static_cast<const spec::ErrorInformationEntry*>(buf->data());
  JsonWriter j;
  j.BeginObject().Key("errors").BeginArray();
  std::string out = Sprintf("Error Log Entries for device:%s entries:%u\n.................\n",
                            s.ctrlr().trid().ToString().c_str(), n);
  for (uint32_t i = 0; i < n; ++i) {
    spec::Cqe status;
    status.status = e[i].status;
    j.BeginObject()
        .Field("error_count", e[i].error_count)
        .Field("sqid", e[i].sqid)
        .Field("cmdid", e[i].cid)
        .Field("status_field", static_cast<uint16_t>(e[i].status >> 1))
        .Field("phase_tag", static_cast<uint16_t>(e[i].status & 1))
        .Field("parm_error_location", e[i].parm_error_location)
        .Field("lba", e[i].lba)
        .Field("nsid", e[i].nsid)
        .Field("vs", e[i].vs)
        .Field("trtype", e[i].trtype)
        .Field("csi", e[i].csi)
        .Field("trtype_spec_info", e[i].trtype_spec)
        .EndObject();
    out += Sprintf(" Entry[%2u]\n.................\n", i);
    out += Sprintf("error_count     : %llu\n", static_cast<unsigned long long>(e[i].error_count));
    out += Sprintf("sqid            : %u\n", e[i].sqid);
    out += Sprintf("cmdid           : %#x\n", e[i].cid);
    out += Sprintf("status_field    : %#x(%s)\n", e[i].status >> 1,
                   IsError(status) ? CompletionStatusText(status).c_str() : "Successful Completion");
    out += Sprintf("phase_tag       : %#x\n", e[i].status & 1);
    out += Sprintf("parm_err_loc    : %#x\n", e[i].parm_error_location);
    out += Sprintf("lba             : %#llx\n", static_cast<unsigned long long>(e[i].lba));
    out += Sprintf("nsid            : %#x\n", e[i].nsid);
    out += Sprintf("vs              : %u\n", e[i].vs);
    out += Sprintf("trtype          : %u\n", e[i].trtype);
    out += Sprintf("csi             : %llu\n", static_cast<unsigned long long>(e[i].csi));
    out += Sprintf("trtype_spec_info: %#x\n.................\n", e[i].trtype_spec);
  }
  Print(json ? j.EndArray().EndObject().Line() : out);
  return 0;
}

int GetLog(Session& s, const GetLogArgs& a, bool json) {
  auto buf = ReadLog(s, a.lid, a.nsid, a.length, a.offset);
  if (!buf) return ReportFailure(Sprintf("get-log --log-id %u", a.lid), buf.error(), s.ctrlr());
  if (json) {
    Print(JsonWriter()
              .BeginObject()
              .Field("log_id", a.lid)
              .Field("nsid", a.nsid)
              .Field("offset", a.offset)
              .Field("length", a.length)
              .Field("data", HexString(buf->data(), a.length))
              .EndObject()
              .Line());
    return 0;
  }
  Print(Sprintf("Device:%s log-id:%u namespace-id:%#x\n", s.ctrlr().trid().ToString().c_str(), a.lid, a.nsid));
  Print(HexDump(buf->data(), a.length));
  return 0;
}

}  // namespace nvmux::manage
