#include "tools/identify/identify_format.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <iterator>
#include <string>

#include "nvmux/spec/command.h"

namespace nvmux::identify {
namespace {

// Label columns: values start at these offsets, as in spdk_nvme_identify
// (39 for the controller sections; the others are widened to fit their
// longest label).
constexpr size_t kWide = 39;
constexpr size_t kNarrow = 36;
constexpr size_t kNs = 33;
constexpr std::string_view kBar = "=====================================================";

// OACS bits that spec/identify.h does not name (NVMe 1.4 figure 247).
constexpr uint16_t kOacsSelfTest = 1u << 4;
constexpr uint16_t kOacsDirectives = 1u << 5;
constexpr uint16_t kOacsNvmeMi = 1u << 6;
constexpr uint16_t kOacsVirtualization = 1u << 7;

// printf into a std::string; every format used here is far below the buffer.
__attribute__((format(printf, 1, 2))) std::string Fmt(const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  const int n = std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return std::string(buf, static_cast<size_t>(std::clamp(n, 0, static_cast<int>(sizeof(buf)) - 1)));
}

unsigned long long Ull(uint64_t v) { return static_cast<unsigned long long>(v); }

void Heading(std::ostream& os, std::string_view title, char underline = '=') {
  os << title << '\n' << std::string(title.size(), underline) << '\n';
}

// "Label:<spaces>value" with the value at column `width` (one space at least).
void Field(std::ostream& os, size_t width, std::string_view label, std::string_view value) {
  os << label << ':' << std::string(label.size() + 1 < width ? width - label.size() - 1 : 1, ' ') << value << '\n';
}

std::string_view Supported(bool yes) { return yes ? "Supported" : "Not Supported"; }
std::string_view YesNo(bool yes) { return yes ? "Yes" : "No"; }
bool Bit(uint64_t value, unsigned bit) { return ((value >> bit) & 1u) != 0; }

std::string Kelvin(unsigned kelvin) {
  return Fmt("%u Kelvin (%d Celsius)", kelvin, static_cast<int>(kelvin) - 273);
}

std::string Version(uint32_t raw) {
  const spec::Vs vs{raw};
  std::string out = Fmt("%u.%u", static_cast<unsigned>(vs.mjr()), static_cast<unsigned>(vs.mnr()));
  if (vs.ter() != 0) {
    out += Fmt(".%u", static_cast<unsigned>(vs.ter()));
  }
  return out;
}

// "N (1GiB)": a count and, when the byte total is known, its size.
std::string CountAndSize(uint64_t count, uint64_t unit_bytes) {
  uint64_t bytes = 0;
  if (unit_bytes == 0 || __builtin_mul_overflow(count, unit_bytes, &bytes)) {
    return std::to_string(count);
  }
  return Fmt("%llu (%s)", Ull(count), HumanSize(bytes).c_str());
}

std::string Uint128Size(const uint8_t (&le)[16]) {
  const auto v = Uint128ToU64(le);
  return v ? CountAndSize(*v, 1) : Uint128Decimal(le);
}

bool AllZero(std::span<const uint8_t> bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; });
}

template <typename T>
std::span<const uint8_t> BytesOf(const T& value) {
  return {reinterpret_cast<const uint8_t*>(&value), sizeof(T)};
}

struct OpcodeName {
  uint8_t opc;
  std::string_view name;
};

// The name of `opc` in `names`; opcodes from `vendor_start` up are vendor
// specific.
std::string_view LookupOpcode(std::span<const OpcodeName> names, uint8_t opc, uint8_t vendor_start) {
  for (const auto& n : names) {
    if (n.opc == opc) {
      return n.name;
    }
  }
  return opc >= vendor_start ? "Vendor Specific" : "Unknown";
}

void NotSupported(std::ostream& os, std::string_view what) { os << "Not Supported (" << what << ")\n\n"; }

void PrintCapabilities(std::ostream& os, const IdentifyReport& r) {
  const auto& c = r.ctrlr;
  const auto f = [&os](std::string_view label, std::string_view value) { Field(os, kWide, label, value); };
  Heading(os, "Controller Capabilities/Features");
  f("Vendor ID", Fmt("%04x", c.vid));
  f("Subsystem Vendor ID", Fmt("%04x", c.ssvid));
  f("Serial Number", AsciiField(c.sn, sizeof(c.sn)));
  f("Model Number", AsciiField(c.mn, sizeof(c.mn)));
  f("Firmware Version", AsciiField(c.fr, sizeof(c.fr)));
  f("Recommended Arb Burst", std::to_string(c.rab));
  f("IEEE OUI Identifier", Fmt("%02x %02x %02x", c.ieee[0], c.ieee[1], c.ieee[2]));
  os << "Multi-path I/O\n";
  f("  May have multiple subsystem ports", YesNo(Bit(c.cmic, 0)));
  f("  May be connected to multiple hosts", YesNo(Bit(c.cmic, 1)));
  f("  Associated with SR-IOV VF", YesNo(Bit(c.cmic, 2)));
  const auto mdts = MdtsBytes(r.cap, c.mdts);
  f("Maximum Data Transfer Size",
    mdts ? CountAndSize(*mdts, 1) : c.mdts == 0 ? std::string("Unlimited") : Fmt("2^%u bytes", 12u + r.cap.mpsmin() + c.mdts));
  f("Controller ID", std::to_string(c.cntlid));
  static constexpr std::string_view kTypes[] = {"Not Reported", "I/O Controller", "Discovery Controller",
                                                "Administrative Controller"};
  f("Controller Type", c.cntrltype < 4 ? kTypes[c.cntrltype] : "Reserved");
  if (r.error_recovery) {
    const unsigned tler = *r.error_recovery & 0xFFFF;
    f("Error Recovery Timeout", tler == 0 ? std::string("Unlimited") : Fmt("%u milliseconds", tler * 100));
  }
  f("NVMe Specification Version (VS)", Version(r.vs.raw));
  if (c.ver != 0) {
    f("NVMe Specification Version (Identify)", Version(c.ver));
  }
  f("Maximum Queue Entries", std::to_string(r.cap.mqes() + 1u));
  f("Contiguous Queues Required", YesNo(r.cap.cqr() != 0));
  os << "Arbitration Mechanisms Supported\n";
  f("  Weighted Round Robin", Supported(Bit(r.cap.ams(), 0)));
  f("  Vendor Specific", Supported(Bit(r.cap.ams(), 1)));
  f("Reset Timeout", Fmt("%u ms", 500u * r.cap.to()));
  f("Doorbell Stride", Fmt("%llu bytes", Ull(uint64_t{4} << r.cap.dstrd())));
  f("NVM Subsystem Reset", Supported(r.cap.nssrs() != 0));
  os << "Command Sets Supported\n";
  f("  NVM Command Set", Supported((r.cap.css() & spec::kCapCssNvm) != 0));
  f("Boot Partition", Supported(r.cap.bps() != 0));
  f("Memory Page Size Minimum", Fmt("%llu bytes", Ull(uint64_t{4096} << r.cap.mpsmin())));
  f("Memory Page Size Maximum", Fmt("%llu bytes", Ull(uint64_t{4096} << r.cap.mpsmax())));
  f("Persistent Memory Region", Supported(r.cap.pmrs() != 0));
  f("Controller Memory Buffer", Supported(r.cap.cmbs() != 0));
  os << "Optional Asynchronous Events Supported\n";
  f("  Namespace Attribute Notices", Supported((c.oaes & spec::kOaesNsAttributeNotices) != 0));
  f("  Firmware Activation Notices", Supported(Bit(c.oaes, 9)));
  f("128-bit Host Identifier", Supported(Bit(c.ctratt, 0)));
  f("RTD3 Resume Latency", c.rtd3r ? Fmt("%u microseconds", c.rtd3r) : std::string("Not Reported"));
  f("RTD3 Entry Latency", c.rtd3e ? Fmt("%u microseconds", c.rtd3e) : std::string("Not Reported"));
  f("Warning Temperature Threshold", c.wctemp ? Kelvin(c.wctemp) : std::string("Not Reported"));
  f("Critical Temperature Threshold", c.cctemp ? Kelvin(c.cctemp) : std::string("Not Reported"));
  if (!AllZero(c.tnvmcap)) {
    f("Total NVM Capacity", Uint128Size(c.tnvmcap));
    f("Unallocated NVM Capacity", Uint128Size(c.unvmcap));
  }
  const std::string nqn = AsciiField(c.subnqn, sizeof(c.subnqn));
  if (!nqn.empty()) {
    f("Subsystem NQN", nqn);
  }
  os << '\n';

  Heading(os, "Controller Registers");
  static constexpr std::string_view kShn[] = {"None", "Normal", "Abrupt", "Reserved"};
  static constexpr std::string_view kShst[] = {"Normal Operation", "Shutdown Processing Occurring",
                                               "Shutdown Processing Complete", "Reserved"};
  f("Controller Capabilities (CAP)", Fmt("0x%016llx", Ull(r.cap.raw)));
  f("Version (VS)", Fmt("0x%08x", r.vs.raw));
  f("Controller Configuration (CC)", Fmt("0x%08x", r.cc.raw));
  f("  Enable", YesNo(r.cc.en() != 0));
  f("  Memory Page Size", Fmt("%llu bytes", Ull(uint64_t{4096} << r.cc.mps())));
  f("  I/O Submission Queue Entry Size", Fmt("%u bytes", 1u << r.cc.iosqes()));
  f("  I/O Completion Queue Entry Size", Fmt("%u bytes", 1u << r.cc.iocqes()));
  f("  Shutdown Notification", kShn[r.cc.shn()]);
  f("Controller Status (CSTS)", Fmt("0x%08x", r.csts.raw));
  f("  Ready", YesNo(r.csts.rdy() != 0));
  f("  Controller Fatal Status", YesNo(r.csts.cfs() != 0));
  f("  Shutdown Status", kShst[r.csts.shst()]);
  os << '\n';
}

void PrintAdminAttributes(std::ostream& os, const spec::IdentifyController& c) {
  const auto f = [&os](std::string_view label, std::string_view value) { Field(os, kWide, label, value); };
  Heading(os, "Admin Command Set Attributes");
  f("Security Send/Receive", Supported((c.oacs & spec::kOacsSecurity) != 0));
  f("Format NVM", Supported((c.oacs & spec::kOacsFormat) != 0));
  const bool fw = (c.oacs & spec::kOacsFirmware) != 0;
  f("Firmware Activate/Download", Supported(fw));
  f("Namespace Management", Supported((c.oacs & spec::kOacsNsMgmt) != 0));
  f("Device Self-Test", Supported((c.oacs & kOacsSelfTest) != 0));
  f("Directives", Supported((c.oacs & kOacsDirectives) != 0));
  f("NVMe-MI", Supported((c.oacs & kOacsNvmeMi) != 0));
  f("Virtualization Management", Supported((c.oacs & kOacsVirtualization) != 0));
  f("Doorbell Buffer Config", Supported((c.oacs & spec::kOacsDbcs) != 0));
  f("Abort Command Limit", std::to_string(c.acl + 1u));
  f("Async Event Request Limit", std::to_string(c.aerl + 1u));
  f("Number of Firmware Slots", fw ? std::to_string((c.frmw >> 1) & 7u) : "N/A");
  f("Firmware Slot 1 Read-Only", fw ? YesNo(Bit(c.frmw, 0)) : "N/A");
  f("Firmware Activation Without Reset", fw ? YesNo(Bit(c.frmw, 4)) : "N/A");
  f("Firmware Update Granularity", c.fwug == 0      ? std::string("No Information Provided")
                                   : c.fwug == 0xFF ? std::string("No Restriction")
                                                    : Fmt("%u KiB", c.fwug * 4u));
  f("Per-Namespace SMART Log", YesNo((c.lpa & spec::kLpaSmartPerNamespace) != 0));
  f("Command Effects Log Page", Supported((c.lpa & spec::kLpaCommandEffects) != 0));
  f("Get Log Page Extended Data", Supported(Bit(c.lpa, 2)));
  f("Telemetry Log Pages", Supported(Bit(c.lpa, 3)));
  f("Error Log Page Entries Supported", std::to_string(c.elpe + 1u));
  f("Keep Alive", Supported(c.kas != 0));
  if (c.kas != 0) {
    f("Keep Alive Granularity", Fmt("%u ms", c.kas * 100u));
  }
  os << '\n';
}

void PrintNvmAttributes(std::ostream& os, const spec::IdentifyController& c) {
  const auto f = [&os](std::string_view label, std::string_view value) { Field(os, kNarrow, label, value); };
  Heading(os, "NVM Command Set Attributes");
  os << "Submission Queue Entry Size\n";
  f("  Max", std::to_string(1u << (c.sqes >> 4)));
  f("  Min", std::to_string(1u << (c.sqes & 0xF)));
  os << "Completion Queue Entry Size\n";
  f("  Max", std::to_string(1u << (c.cqes >> 4)));
  f("  Min", std::to_string(1u << (c.cqes & 0xF)));
  if (c.maxcmd != 0) {
    f("Maximum Outstanding Commands", std::to_string(c.maxcmd));
  }
  f("Number of Namespaces", std::to_string(c.nn));
  f("Compare Command", Supported((c.oncs & spec::kOncsCompare) != 0));
  f("Write Uncorrectable Command", Supported((c.oncs & spec::kOncsWriteUncorrectable) != 0));
  f("Dataset Management Command", Supported((c.oncs & spec::kOncsDsm) != 0));
  f("Write Zeroes Command", Supported((c.oncs & spec::kOncsWriteZeroes) != 0));
  f("Set Features Save Field", Supported((c.oncs & spec::kOncsSaveSelect) != 0));
  f("Reservations", Supported((c.oncs & spec::kOncsReservations) != 0));
  f("Timestamp", Supported((c.oncs & spec::kOncsTimestamp) != 0));
  f("Verify Command", Supported((c.oncs & spec::kOncsVerify) != 0));
  f("Copy Command", Supported((c.oncs & spec::kOncsCopy) != 0));
  f("Fused Compare and Write", Supported((c.fuses & spec::kFusesCompareAndWrite) != 0));
  f("Volatile Write Cache", Bit(c.vwc, 0) ? "Present" : "Not Present");
  f("Atomic Write Unit (Normal)", std::to_string(c.awun + 1u));
  f("Atomic Write Unit (PFail)", std::to_string(c.awupf + 1u));
  f("Atomic Compare & Write Unit", std::to_string(c.acwu + 1u));
  os << "Scatter-Gather List\n";
  const unsigned sgl = c.sgls & 3u;
  f("  SGL Command Set", sgl == 1 ? "Supported" : sgl == 2 ? "Supported (Dword aligned)" : "Not Supported");
  f("  SGL Keyed", Supported(Bit(c.sgls, 2)));
  f("  SGL Bit Bucket Descriptor", Supported(Bit(c.sgls, 16)));
  f("  SGL Metadata Pointer", Supported(Bit(c.sgls, 17)));
  f("  Oversized SGL", Supported(Bit(c.sgls, 18)));
  f("  SGL Metadata Address", Supported(Bit(c.sgls, 19)));
  f("  SGL Offset", Supported(Bit(c.sgls, 20)));
  f("  Transport SGL Data Block", Supported(Bit(c.sgls, 21)));
  os << '\n';
}

void PrintFirmwareSlots(std::ostream& os, const IdentifyReport& r) {
  Heading(os, "Firmware Slot Information");
  if (!r.firmware_slots) {
    return NotSupported(os, "Get Log Page 03h");
  }
  const auto& log = *r.firmware_slots;
  Field(os, kNarrow, "Active slot", std::to_string(log.afi & 7u));
  if (((log.afi >> 4) & 7u) != 0) {
    Field(os, kNarrow, "Next controller reset slot", std::to_string((log.afi >> 4) & 7u));
  }
  for (unsigned i = 0; i < 7; ++i) {
    const std::string rev = AsciiField(log.frs[i], sizeof(log.frs[i]));
    if (!rev.empty()) {
      Field(os, kNarrow, Fmt("Slot %u Firmware Revision", i + 1), rev);
    }
  }
  os << '\n';
}

void PrintEffectsList(std::ostream& os, const uint32_t (&entries)[256], bool admin) {
  for (unsigned opc = 0; opc < 256; ++opc) {
    const uint32_t e = entries[opc];
    if ((e & spec::kEffectCsupp) == 0) {
      continue;
    }
    const auto op = static_cast<uint8_t>(opc);
    const std::string_view name = admin ? AdminOpcodeName(op) : IoOpcodeName(op);
    const unsigned cse = (e >> 16) & 7u;
    os << Fmt("%30.*s (%02Xh): Supported", static_cast<int>(name.size()), name.data(), opc)
       << ((e & spec::kEffectLbcc) ? " LBA-Change" : "") << ((e & spec::kEffectNcc) ? " NS-Cap-Change" : "")
       << ((e & spec::kEffectNic) ? " NS-Inventory-Change" : "") << ((e & spec::kEffectCcc) ? " Ctrlr-Cap-Change" : "")
       << (cse == 1 ? " Per-NS-Exclusive" : cse == 2 ? " All-NS-Exclusive" : "") << '\n';
  }
}

void PrintEffects(std::ostream& os, const IdentifyReport& r) {
  Heading(os, "Commands Supported and Effects");
  if (!r.effects) {
    return NotSupported(os, "Get Log Page 05h");
  }
  Heading(os, "Admin Commands", '-');
  PrintEffectsList(os, r.effects->acs, true);
  Heading(os, "I/O Commands", '-');
  PrintEffectsList(os, r.effects->iocs, false);
  os << '\n';
}

void PrintErrorLog(std::ostream& os, const IdentifyReport& r) {
  Heading(os, "Error Log");
  if (!r.errors) {
    return NotSupported(os, "Get Log Page 01h");
  }
  const auto f = [&os](std::string_view label, std::string_view value) { Field(os, 24, label, value); };
  bool any = false;
  for (size_t i = 0; i < r.errors->size(); ++i) {
    const auto& e = (*r.errors)[i];
    if (e.error_count == 0) {
      continue;
    }
    if (any) {
      os << "-----------\n";
    }
    any = true;
    os << "Entry: " << i << '\n';
    f("Error Count", Fmt("0x%llx", Ull(e.error_count)));
    f("Submission Queue Id", Fmt("0x%x", e.sqid));
    f("Command Id", Fmt("0x%x", e.cid));
    f("Phase Bit", Fmt("%x", e.status & 1u));
    f("Status Code", Fmt("0x%x", (e.status >> 1) & 0xFFu));
    f("Status Code Type", Fmt("0x%x", (e.status >> 9) & 7u));
    f("Do Not Retry", Fmt("%x", (e.status >> 15) & 1u));
    f("Error Location", Fmt("0x%x", e.parm_error_location));
    f("LBA", Fmt("0x%llx", Ull(e.lba)));
    f("Namespace", Fmt("0x%x", e.nsid));
    f("Vendor Log Page", Fmt("0x%x", e.vs));
  }
  if (!any) {
    os << "No Errors Logged\n";
  }
  os << '\n';
}

void PrintArbitration(std::ostream& os, const IdentifyReport& r) {
  Heading(os, "Arbitration");
  if (!r.arbitration) {
    return NotSupported(os, "Get Features 01h");
  }
  const uint32_t arb = *r.arbitration;
  const unsigned ab = arb & 7u;
  Field(os, kNarrow, "Arbitration Burst", ab == 7 ? std::string("no limit") : std::to_string(1u << ab));
  Field(os, kNarrow, "Low Priority Weight", std::to_string(((arb >> 8) & 0xFFu) + 1));
  Field(os, kNarrow, "Medium Priority Weight", std::to_string(((arb >> 16) & 0xFFu) + 1));
  Field(os, kNarrow, "High Priority Weight", std::to_string(((arb >> 24) & 0xFFu) + 1));
  os << '\n';
}

void PrintPower(std::ostream& os, const IdentifyReport& r) {
  const auto& c = r.ctrlr;
  Heading(os, "Power Management");
  Field(os, kNarrow, "Number of Power States", std::to_string(c.npss + 1u));
  Field(os, kNarrow, "Current Power State",
        r.power_management ? Fmt("Power State #%u", *r.power_management & 0x1Fu)
                           : std::string("Not Supported (Get Features 02h)"));
  for (unsigned i = 0; i <= c.npss && i < 32; ++i) {
    const auto& ps = c.psd[i];
    // MXPS (flags bit 0) selects 0.0001 W units instead of 0.01 W.
    const std::string power = Bit(ps.flags, 0) ? Fmt("%u.%04u W", ps.mp / 10000u, ps.mp % 10000u)
                                                : Fmt("%3u.%02u W", ps.mp / 100u, ps.mp % 100u);
    os << Fmt("Power State #%u:  Max Power: %s  %s  Entry Latency: %u us  Exit Latency: %u us\n", i, power.c_str(),
              Bit(ps.flags, 1) ? "Non-Operational" : "Operational", ps.enlat, ps.exlat);
  }
  Field(os, kNarrow, "Non-Operational Permissive Mode", Supported(Bit(c.ctratt, 1)));
  Field(os, kNarrow, "Autonomous Power State Transitions", Supported(Bit(c.apsta, 0)));
  os << '\n';
}

void PrintHealth(std::ostream& os, const IdentifyReport& r) {
  Heading(os, "Health Information");
  if (!r.smart_health) {
    return NotSupported(os, "Get Log Page 02h");
  }
  const auto& h = *r.smart_health;
  const auto f = [&os](std::string_view label, std::string_view value) { Field(os, kNarrow, label, value); };
  const auto warn = [](bool bad) { return bad ? "WARNING" : "OK"; };
  os << "Critical Warnings:\n";
  f("  Available Spare Space", warn(Bit(h.critical_warning, 0)));
  f("  Temperature", warn(Bit(h.critical_warning, 1)));
  f("  Device Reliability", warn(Bit(h.critical_warning, 2)));
  f("  Read Only", YesNo(Bit(h.critical_warning, 3)));
  f("  Volatile Memory Backup", warn(Bit(h.critical_warning, 4)));
  f("Current Temperature", Kelvin(Le16(h.composite_temperature)));
  if (r.temperature_threshold) {
    f("Temperature Threshold", Kelvin(*r.temperature_threshold & 0xFFFFu));
  }
  f("Available Spare", Fmt("%u%%", h.avail_spare));
  f("Available Spare Threshold", Fmt("%u%%", h.avail_spare_threshold));
  f("Life Percentage Used", Fmt("%u%%", h.percentage_used));
  f("Data Units Read", Uint128Decimal(h.data_units_read));
  f("Data Units Written", Uint128Decimal(h.data_units_written));
  f("Host Read Commands", Uint128Decimal(h.host_read_commands));
  f("Host Write Commands", Uint128Decimal(h.host_write_commands));
  f("Controller Busy Time", Uint128Decimal(h.controller_busy_time) + " minutes");
  f("Power Cycles", Uint128Decimal(h.power_cycles));
  f("Power On Hours", Uint128Decimal(h.power_on_hours) + " hours");
  f("Unsafe Shutdowns", Uint128Decimal(h.unsafe_shutdowns));
  f("Unrecoverable Media Errors", Uint128Decimal(h.media_errors));
  f("Lifetime Error Log Entries", Uint128Decimal(h.num_err_log_entries));
  f("Warning Temperature Time", Fmt("%u minutes", h.warning_temp_time));
  f("Critical Temperature Time", Fmt("%u minutes", h.critical_comp_time));
  for (unsigned i = 0; i < 8; ++i) {
    if (h.temp_sensor[i] != 0) {
      f(Fmt("Temperature Sensor %u", i + 1), Kelvin(h.temp_sensor[i]));
    }
  }
  os << '\n';
}

void PrintQueues(std::ostream& os, const IdentifyReport& r) {
  Heading(os, "Number of Queues");
  const auto f = [&os](std::string_view label, std::string_view value) { Field(os, kWide, label, value); };
  if (r.number_of_queues) {
    f("Number of I/O Submission Queues", std::to_string((*r.number_of_queues & 0xFFFFu) + 1));
    f("Number of I/O Completion Queues", std::to_string((*r.number_of_queues >> 16) + 1));
  } else {
    f("Number of I/O Queues", "Not Supported (Get Features 07h)");
  }
  f("I/O Submission Queues Granted", std::to_string(r.io_sq_granted));
  f("I/O Completion Queues Granted", std::to_string(r.io_cq_granted));
  os << '\n';
  if (Bit(r.ctrlr.hctma, 0)) {
    Heading(os, "Host Controlled Thermal Management");
    Field(os, 42, "Minimum Thermal Management Temperature",
          r.ctrlr.mntmt ? Kelvin(r.ctrlr.mntmt) : std::string("Not Reported"));
    Field(os, 42, "Maximum Thermal Management Temperature",
          r.ctrlr.mxtmt ? Kelvin(r.ctrlr.mxtmt) : std::string("Not Reported"));
    os << '\n';
  }
}

void PrintNamespace(std::ostream& os, const IdentifyReport& r, const NamespaceReport& n) {
  const auto& d = n.data;
  const auto& c = r.ctrlr;
  const auto f = [&os](std::string_view label, std::string_view value) { Field(os, kNs, label, value); };
  os << "Namespace ID:" << n.nsid << '\n';
  f("Deallocate", Supported((c.oncs & spec::kOncsDsm) != 0));
  f("Deallocated/Unwritten Error", Supported((d.nsfeat & spec::kNsfeatDeallocatedError) != 0));
  const unsigned read_value = d.dlfeat & 7u;
  f("Deallocated Read Value", read_value == 1 ? "All 0x00" : read_value == 2 ? "All 0xFF" : "Unknown");
  f("Deallocate in Write Zeroes", Supported((d.dlfeat & spec::kDlfeatWriteZeroesDeallocates) != 0));
  f("Deallocated Guard Field", Bit(d.dlfeat, 4) ? "CRC for Read Value" : "0xFFFF");
  f("Flush", Supported(Bit(c.vwc, 0)));  // Flush is mandatory when a volatile write cache is present
  f("Reservation", Supported((c.oncs & spec::kOncsReservations) != 0));
  if ((d.dpc & 0x1Fu) != 0) {
    f("End-to-End Data Protection", "Supported");
    const unsigned pit = d.dps & 7u;
    f("Protection Type", pit == 0 ? std::string("Not Enabled") : Fmt("Type%u", pit));
    f("Metadata Transferred as",
      (d.flbas & spec::kFlbasExtended) ? "Extended Data LBA" : "Separate Metadata Buffer");
    f("Metadata Location", Bit(d.dps, 3) ? "First 8 Bytes" : "Last 8 Bytes");
  } else {
    f("End-to-End Data Protection", "Not Supported");
  }
  f("Namespace Sharing Capabilities", Bit(d.nmic, 0) ? "Multiple Controllers" : "Private");
  const uint8_t format = CurrentLbaFormat(d);
  const uint64_t lba_bytes = LbaDataSize(d, format);
  f("Namespace Size (in LBAs)", CountAndSize(d.nsze, lba_bytes));
  f("Namespace Capacity (in LBAs)", CountAndSize(d.ncap, lba_bytes));
  f("Namespace Utilization (in LBAs)", CountAndSize(d.nuse, lba_bytes));
  if (!AllZero(d.nvmcap)) {
    f("NVM Capacity", Uint128Size(d.nvmcap));
  }
  if (d.noiob != 0) {
    f("Optimal I/O Boundary", Fmt("%u blocks", d.noiob));
  }
  if (n.nguid || !AllZero(d.nguid)) {
    f("NGUID", n.nguid ? HexBytes(*n.nguid) : HexBytes(d.nguid));
  }
  if (n.eui64 || !AllZero(d.eui64)) {
    f("EUI64", n.eui64 ? HexBytes(*n.eui64) : HexBytes(d.eui64));
  }
  if (n.uuid) {
    f("UUID", UuidString(*n.uuid));
  }
  f("Thin Provisioning", Supported((d.nsfeat & spec::kNsfeatThinProvisioning) != 0));
  f("Per-NS Atomic Units", YesNo((d.nsfeat & spec::kNsfeatNsAtomics) != 0));
  if (d.nawun != 0) {
    f("Atomic Write Unit (Normal)", std::to_string(d.nawun + 1u));
  }
  if (d.nawupf != 0) {
    f("Atomic Write Unit (PFail)", std::to_string(d.nawupf + 1u));
  }
  if ((d.nsfeat & spec::kNsfeatOptPerf) != 0) {
    f("Preferred Write Granularity", Fmt("%u blocks", d.npwg + 1u));
    f("Preferred Write Alignment", Fmt("%u blocks", d.npwa + 1u));
    f("Preferred Deallocate Granularity", Fmt("%u blocks", d.npdg + 1u));
    f("Preferred Deallocate Alignment", Fmt("%u blocks", d.npda + 1u));
    f("Optimal Write Size", Fmt("%u blocks", d.nows + 1u));
  }
  f("NGUID/EUI64 Never Reused", YesNo(Bit(d.nsfeat, 3)));
  if (d.anagrpid != 0) {
    f("ANA Group ID", std::to_string(d.anagrpid));
  }
  f("Number of LBA Formats", std::to_string(d.nlbaf + 1u));
  f("Current LBA Format", Fmt("LBA Format #%02u", format));
  for (unsigned i = 0; i <= d.nlbaf && i < 16; ++i) {
    os << Fmt("LBA Format #%02u: Data Size: %llu  Metadata Size: %u\n", i,
              Ull(LbaDataSize(d, static_cast<uint8_t>(i))), d.lbaf[i].ms);
  }
  os << '\n';
}

}  // namespace

std::string HumanSize(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  unsigned unit = 0;
  while (unit + 1 < std::size(kUnits) && bytes >= (uint64_t{1} << (10 * (unit + 1)))) {
    ++unit;
  }
  const uint64_t scale = uint64_t{1} << (10 * unit);
  const uint64_t whole = bytes / scale;
  if (bytes % scale == 0) {
    return Fmt("%llu%s", Ull(whole), kUnits[unit]);
  }
  // First decimal, truncated: the remainder's top 10 bits times 10 / 1024
  // (kept in 64 bits even for EiB).
  const uint64_t tenths = (((bytes % scale) >> (10 * unit - 10)) * 10) >> 10;
  return Fmt("%llu.%llu%s", Ull(whole), Ull(tenths), kUnits[unit]);
}

std::string_view AdminOpcodeName(uint8_t opc) {
  namespace a = spec::admin;
  static constexpr OpcodeName kNames[] = {
      {a::kDeleteIoSq, "Delete I/O Submission Queue"}, {a::kCreateIoSq, "Create I/O Submission Queue"},
      {a::kGetLogPage, "Get Log Page"}, {a::kDeleteIoCq, "Delete I/O Completion Queue"},
      {a::kCreateIoCq, "Create I/O Completion Queue"}, {a::kIdentify, "Identify"}, {a::kAbort, "Abort"},
      {a::kSetFeatures, "Set Features"}, {a::kGetFeatures, "Get Features"},
      {a::kAsyncEventRequest, "Asynchronous Event Request"}, {a::kNamespaceManagement, "Namespace Management"},
      {a::kFirmwareCommit, "Firmware Commit"}, {a::kFirmwareImageDownload, "Firmware Image Download"},
      {a::kDeviceSelfTest, "Device Self-test"}, {a::kNamespaceAttachment, "Namespace Attachment"},
      {a::kKeepAlive, "Keep Alive"}, {a::kDirectiveSend, "Directive Send"},
      {a::kDirectiveReceive, "Directive Receive"}, {0x1C, "Virtualization Management"}, {0x1D, "NVMe-MI Send"},
      {0x1E, "NVMe-MI Receive"}, {a::kDoorbellBufferConfig, "Doorbell Buffer Config"},
      {a::kFormatNvm, "Format NVM"}, {a::kSecuritySend, "Security Send"},
      {a::kSecurityReceive, "Security Receive"}, {a::kSanitize, "Sanitize"},
  };
  return LookupOpcode(kNames, opc, 0xC0);
}

std::string_view IoOpcodeName(uint8_t opc) {
  namespace n = spec::nvm;
  static constexpr OpcodeName kNames[] = {
      {n::kFlush, "Flush"}, {n::kWrite, "Write"}, {n::kRead, "Read"},
      {n::kWriteUncorrectable, "Write Uncorrectable"}, {n::kCompare, "Compare"},
      {n::kWriteZeroes, "Write Zeroes"}, {n::kDatasetManagement, "Dataset Management"}, {n::kVerify, "Verify"},
      {n::kReservationRegister, "Reservation Register"}, {n::kReservationReport, "Reservation Report"},
      {n::kReservationAcquire, "Reservation Acquire"}, {n::kReservationRelease, "Reservation Release"},
      {n::kCopy, "Copy"},
  };
  return LookupOpcode(kNames, opc, 0x80);
}

void HexDump(std::ostream& os, std::span<const uint8_t> bytes) {
  const int digits = bytes.size() > 0x10000 ? 8 : 4;
  for (size_t off = 0; off < bytes.size(); off += 16) {
    const size_t n = std::min<size_t>(16, bytes.size() - off);
    std::string hex = Fmt("%0*zx:", digits, off);
    std::string ascii;
    for (size_t i = 0; i < 16; ++i) {
      if (i < n) {
        const uint8_t b = bytes[off + i];
        hex += Fmt(" %02x", b);
        ascii += (b >= 0x20 && b <= 0x7E) ? static_cast<char>(b) : '.';
      } else {
        hex += "   ";
      }
    }
    os << hex << "  " << ascii << '\n';
  }
}

void PrintText(std::ostream& os, const IdentifyReport& report) {
  os << kBar << "\nNVMe Controller at " << report.transport_id << '\n' << kBar << '\n';
  PrintCapabilities(os, report);
  PrintAdminAttributes(os, report.ctrlr);
  PrintNvmAttributes(os, report.ctrlr);
  PrintFirmwareSlots(os, report);
  PrintEffects(os, report);
  PrintErrorLog(os, report);
  PrintArbitration(os, report);
  PrintPower(os, report);
  PrintHealth(os, report);
  PrintQueues(os, report);
  Heading(os, "Active Namespaces");
  if (report.namespaces.empty()) {
    os << "No active namespaces\n\n";
  }
  for (const auto& ns : report.namespaces) {
    PrintNamespace(os, report, ns);
  }
}

void PrintHex(std::ostream& os, const IdentifyReport& report) {
  const auto dump = [&os](const std::string& title, std::span<const uint8_t> bytes) {
    Heading(os, Fmt("%s (%zu bytes)", title.c_str(), bytes.size()));
    HexDump(os, bytes);
    os << '\n';
  };
  os << kBar << "\nRaw Data, NVMe Controller at " << report.transport_id << '\n' << kBar << '\n';
  dump("Identify Controller", BytesOf(report.ctrlr));
  for (const auto& ns : report.namespaces) {
    dump(Fmt("Identify Namespace, Namespace ID:%u", ns.nsid), BytesOf(ns.data));
  }
  if (report.smart_health) {
    dump("SMART / Health Information Log", BytesOf(*report.smart_health));
  }
  if (report.errors) {
    dump(Fmt("Error Information Log, %zu entries", report.errors->size()),
         {reinterpret_cast<const uint8_t*>(report.errors->data()),
          report.errors->size() * sizeof(spec::ErrorInformationEntry)});
  }
  if (report.firmware_slots) {
    dump("Firmware Slot Information Log", BytesOf(*report.firmware_slots));
  }
  if (report.effects) {
    dump("Commands Supported and Effects Log", BytesOf(*report.effects));
  }
}

}  // namespace nvmux::identify
