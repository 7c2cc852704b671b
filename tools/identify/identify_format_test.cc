// Tests of the identify report printers: text lines carry the known values
// of a hand-built report, absent data says "Not Supported", hex dumps show
// the raw bytes, and the JSON parses back (with a small parser below) to the
// same values.
#include <gtest/gtest.h>

#include <cstring>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nvmux/spec/command.h"
#include "tools/identify/identify_format.h"
#include "tools/identify/identify_json.h"
#include "tools/identify/identify_report.h"
#include "tools/common/json_writer.h"

namespace nvmux::identify {
using tools::JsonWriter;
namespace {

template <size_t N>
void SetAscii(char (&field)[N], std::string_view value) {
  std::memset(field, ' ', N);
  std::memcpy(field, value.data(), std::min(N, value.size()));
}

void SetU128(uint8_t (&field)[16], uint64_t lo, uint64_t hi = 0) {
  for (unsigned i = 0; i < 8; ++i) {
    field[i] = static_cast<uint8_t>(lo >> (8 * i));
    field[8 + i] = static_cast<uint8_t>(hi >> (8 * i));
  }
}

IdentifyReport MakeReport() {
  IdentifyReport r;
  r.transport_id = "trtype:vfiouser traddr:/run/nvmux-emu";
  r.cap.set_mqes(1023).set_cqr(1).set_to(30).set_css(spec::kCapCssNvm).set_mpsmax(4);
  r.vs.raw = spec::kVersion1_4;
  r.cc.set_en(1).set_iosqes(6).set_iocqes(4);
  r.csts.set_rdy(1);
  auto& c = r.ctrlr;
  c.vid = 0x1b36;
  c.ssvid = 0x1af4;
  SetAscii(c.sn, "NVMUX-SN-0001");
  SetAscii(c.mn, "nvmux emulated controller");
  SetAscii(c.fr, "0.1");
  c.mdts = 5;
  c.cntlid = 1;
  c.ver = spec::kVersion1_4;
  c.oacs = spec::kOacsFormat | spec::kOacsFirmware | spec::kOacsNsMgmt | spec::kOacsDbcs;
  c.acl = 3;
  c.aerl = 3;
  c.frmw = (1u << 1) | 1u;
  c.lpa = spec::kLpaCommandEffects;
  c.elpe = 63;
  c.psd[0].mp = 2500;
  c.wctemp = 343;
  c.sqes = 0x66;
  c.cqes = 0x44;
  c.nn = 32;
  c.oncs = spec::kOncsCompare | spec::kOncsDsm | spec::kOncsWriteZeroes;
  c.vwc = 1;
  c.sgls = 1;
  SetU128(c.tnvmcap, uint64_t{1} << 30);
  std::strcpy(c.subnqn, "nqn.2019-08.io.nvmux:NVMUX-SN-0001");
  r.io_sq_granted = 63;
  r.io_cq_granted = 63;

  NamespaceReport ns1;
  ns1.nsid = 1;
  ns1.data.nsze = ns1.data.ncap = 2097152;
  ns1.data.nuse = 1048576;
  ns1.data.nlbaf = 1;
  ns1.data.lbaf[0].lbads = 9;
  ns1.data.lbaf[1] = {8, 12, 0};
  ns1.uuid = std::array<uint8_t, 16>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  ns1.eui64 = std::array<uint8_t, 8>{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0xab};
  NamespaceReport ns2 = ns1;
  ns2.nsid = 2;
  ns2.data.nsze = ns2.data.ncap = ns2.data.nuse = 262144;
  ns2.data.flbas = 1;
  ns2.uuid.reset();
  ns2.eui64.reset();
  ns2.data.nguid[0] = 0xfe;
  r.namespaces = {ns1, ns2};
  return r;
}

std::string Text(const IdentifyReport& r) {
  std::ostringstream os;
  PrintText(os, r);
  return os.str();
}

// The value of the first line at or after `from` that starts with "label:",
// without the padding; "<missing>" if there is none.
std::string ValueOf(const std::string& text, std::string_view label, size_t from = 0) {
  const std::string key = "\n" + std::string(label) + ":";
  const size_t at = text.find(key, from == 0 ? 0 : from - 1);
  if (at == std::string::npos) {
    return "<missing>";
  }
  const size_t start = text.find_first_not_of(' ', at + key.size());
  return text.substr(start, text.find('\n', start) - start);
}

// From a heading line to the next blank line.
std::string Section(const std::string& text, std::string_view heading) {
  const size_t at = text.find("\n" + std::string(heading) + "\n");
  if (at == std::string::npos) {
    return "<missing>";
  }
  return text.substr(at + 1, text.find("\n\n", at + 1) - at);
}

// A minimal JSON parser, enough to check the output is JSON and read it back.
struct Json {
  enum Type { kNull, kBool, kNumber, kString, kArray, kObject } type = kNull;
  std::string text;  // number literal, string value, or "true"/"false"
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;

  const Json& operator[](std::string_view key) const {
    for (const auto& [k, v] : members) {
      if (k == key) {
        return v;
      }
    }
    ADD_FAILURE() << "no key " << key;
    static const Json kNone;
    return kNone;
  }
  const Json& operator[](size_t i) const { return items.at(i); }
  uint64_t u64() const {
    EXPECT_EQ(type, kNumber) << text;
    return std::stoull(text);
  }
  bool is_null() const { return type == kNull; }
};

class JsonParser {
 public:
  explicit JsonParser(std::string_view s) : s_(s) {}
  // Parses the whole input; ok() is false on any syntax error.
  Json Parse() {
    Json v = Value();
    Ws();
    if (pos_ != s_.size()) {
      ok_ = false;
    }
    return v;
  }
  bool ok() const { return ok_; }

 private:
  void Ws() {
    while (pos_ < s_.size() && std::strchr(" \t\r\n", s_[pos_]) != nullptr) {
      ++pos_;
    }
  }
  bool Eat(char c) {
    Ws();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  std::string Str() {
    std::string out;
    if (!Eat('"')) {
      ok_ = false;
      return out;
    }
    while (pos_ < s_.size() && s_[pos_] != '"') {
      char c = s_[pos_++];
      if (static_cast<unsigned char>(c) < 0x20) {
        ok_ = false;
      }
      if (c == '\\' && pos_ < s_.size()) {
        const char e = s_[pos_++];
        if (e == 'u' && pos_ + 4 <= s_.size()) {
          const unsigned cp = static_cast<unsigned>(std::stoul(std::string(s_.substr(pos_, 4)), nullptr, 16));
          pos_ += 4;
          ok_ = ok_ && cp < 0x100;  // the writer only escapes single bytes
          c = static_cast<char>(cp);
        } else {
          const char* from = "\"\\/bfnrt";
          const char* to = "\"\\/\b\f\n\r\t";
          const char* hit = std::strchr(from, e);
          ok_ = ok_ && hit != nullptr && e != '\0';
          c = hit ? to[hit - from] : '?';
        }
      }
      out += c;
    }
    ok_ = ok_ && pos_ < s_.size();
    ++pos_;
    return out;
  }
  Json Value() {
    Json v;
    Ws();
    if (pos_ >= s_.size()) {
      ok_ = false;
    } else if (s_[pos_] == '{') {
      v.type = Json::kObject;
      ++pos_;
      if (!Eat('}')) {
        do {
          std::string key = Str();
          ok_ = ok_ && Eat(':');
          v.members.emplace_back(std::move(key), Value());
        } while (ok_ && Eat(','));
        ok_ = ok_ && Eat('}');
      }
    } else if (s_[pos_] == '[') {
      v.type = Json::kArray;
      ++pos_;
      if (!Eat(']')) {
        do {
          v.items.push_back(Value());
        } while (ok_ && Eat(','));
        ok_ = ok_ && Eat(']');
      }
    } else if (s_[pos_] == '"') {
      v.type = Json::kString;
      v.text = Str();
    } else if (s_.substr(pos_, 4) == "null") {
      pos_ += 4;
    } else if (s_.substr(pos_, 4) == "true" || s_.substr(pos_, 5) == "false") {
      v.type = Json::kBool;
      v.text = s_[pos_] == 't' ? "true" : "false";
      pos_ += v.text.size();
    } else {
      v.type = Json::kNumber;
      const size_t start = pos_;
      while (pos_ < s_.size() && std::strchr("0123456789-+.eE", s_[pos_]) != nullptr && s_[pos_] != '\0') {
        ++pos_;
      }
      v.text = std::string(s_.substr(start, pos_ - start));
      ok_ = ok_ && !v.text.empty();
    }
    return v;
  }

  std::string_view s_;
  size_t pos_ = 0;
  bool ok_ = true;
};

Json ParseJson(const std::string& text) {
  JsonParser parser(text);
  Json v = parser.Parse();
  EXPECT_TRUE(parser.ok()) << text;
  return v;
}

TEST(IdentifyText, ControllerFieldsOnTheirLines) {
  const std::string t = Text(MakeReport());
  EXPECT_EQ(t.rfind(
                "=====================================================\n"
                "NVMe Controller at trtype:vfiouser traddr:/run/nvmux-emu\n"
                "=====================================================\n"
                "Controller Capabilities/Features\n"
                "================================\n"
                "Vendor ID:                             1b36\n"
                "Subsystem Vendor ID:                   1af4\n"
                "Serial Number:                         NVMUX-SN-0001\n",
                0),
            0u)
      << t;
  EXPECT_EQ(ValueOf(t, "Model Number"), "nvmux emulated controller");
  EXPECT_EQ(ValueOf(t, "Firmware Version"), "0.1");
  EXPECT_EQ(ValueOf(t, "Maximum Data Transfer Size"), "131072 (128KiB)");
  EXPECT_EQ(ValueOf(t, "Controller ID"), "1");
  EXPECT_EQ(ValueOf(t, "NVMe Specification Version (VS)"), "1.4");
  EXPECT_EQ(ValueOf(t, "NVMe Specification Version (Identify)"), "1.4");
  EXPECT_EQ(ValueOf(t, "Maximum Queue Entries"), "1024");
  EXPECT_EQ(ValueOf(t, "Contiguous Queues Required"), "Yes");
  EXPECT_EQ(ValueOf(t, "Reset Timeout"), "15000 ms");
  EXPECT_EQ(ValueOf(t, "Memory Page Size Maximum"), "65536 bytes");
  EXPECT_EQ(ValueOf(t, "  NVM Command Set"), "Supported");
  EXPECT_EQ(ValueOf(t, "Warning Temperature Threshold"), "343 Kelvin (70 Celsius)");
  EXPECT_EQ(ValueOf(t, "Critical Temperature Threshold"), "Not Reported");
  EXPECT_EQ(ValueOf(t, "Total NVM Capacity"), "1073741824 (1GiB)");
  EXPECT_EQ(ValueOf(t, "Subsystem NQN"), "nqn.2019-08.io.nvmux:NVMUX-SN-0001");
  EXPECT_EQ(ValueOf(t, "Controller Configuration (CC)"), "0x00460001");
  EXPECT_EQ(ValueOf(t, "  I/O Submission Queue Entry Size"), "64 bytes");
  EXPECT_EQ(ValueOf(t, "  Ready"), "Yes");
  EXPECT_EQ(ValueOf(t, "  Shutdown Status"), "Normal Operation");
}

TEST(IdentifyText, MdtsComesFromCapMpsmin) {
  IdentifyReport r = MakeReport();
  r.cap.set_mpsmin(1);
  EXPECT_EQ(ValueOf(Text(r), "Maximum Data Transfer Size"), "262144 (256KiB)");
  r.ctrlr.mdts = 0;
  EXPECT_EQ(ValueOf(Text(r), "Maximum Data Transfer Size"), "Unlimited");
}

TEST(IdentifyText, AdminAndNvmAttributes) {
  const std::string t = Text(MakeReport());
  const std::string admin = Section(t, "Admin Command Set Attributes");
  EXPECT_EQ(ValueOf(admin, "Security Send/Receive"), "Not Supported");
  EXPECT_EQ(ValueOf(admin, "Format NVM"), "Supported");
  EXPECT_EQ(ValueOf(admin, "Namespace Management"), "Supported");
  EXPECT_EQ(ValueOf(admin, "Doorbell Buffer Config"), "Supported");
  EXPECT_EQ(ValueOf(admin, "Abort Command Limit"), "4");
  EXPECT_EQ(ValueOf(admin, "Number of Firmware Slots"), "1");
  EXPECT_EQ(ValueOf(admin, "Firmware Slot 1 Read-Only"), "Yes");
  EXPECT_EQ(ValueOf(admin, "Command Effects Log Page"), "Supported");
  EXPECT_EQ(ValueOf(admin, "Error Log Page Entries Supported"), "64");
  EXPECT_EQ(ValueOf(admin, "Keep Alive"), "Not Supported");
  const std::string nvm = Section(t, "NVM Command Set Attributes");
  const std::string pad(30, ' ');  // values start at column 36
  EXPECT_NE(nvm.find("Submission Queue Entry Size\n  Max:" + pad + "64\n  Min:" + pad +
                     "64\nCompletion Queue Entry Size\n  Max:" + pad + "16\n  Min:" + pad + "16\n"),
            std::string::npos)
      << nvm;
  EXPECT_EQ(ValueOf(nvm, "Number of Namespaces"), "32");
  EXPECT_EQ(ValueOf(nvm, "Compare Command"), "Supported");
  EXPECT_EQ(ValueOf(nvm, "Write Uncorrectable Command"), "Not Supported");
  EXPECT_EQ(ValueOf(nvm, "Write Zeroes Command"), "Supported");
  EXPECT_EQ(ValueOf(nvm, "Volatile Write Cache"), "Present");
  EXPECT_EQ(ValueOf(nvm, "  SGL Command Set"), "Supported");
  EXPECT_EQ(ValueOf(Section(t, "Number of Queues"), "I/O Submission Queues Granted"), "63");
  EXPECT_EQ(ValueOf(Section(t, "Power Management"), "Number of Power States"), "1");
  EXPECT_NE(t.find("\nPower State #0:  Max Power:  25.00 W  Operational"), std::string::npos);
}

TEST(IdentifyText, Namespaces) {
  const std::string t = Text(MakeReport());
  const size_t ns1 = t.find("\nNamespace ID:1\n");
  const size_t ns2 = t.find("\nNamespace ID:2\n");
  ASSERT_NE(ns1, std::string::npos);
  ASSERT_NE(ns2, std::string::npos);
  EXPECT_LT(t.find("Active Namespaces\n=================\n"), ns1);
  const std::string one = t.substr(ns1, ns2 - ns1);
  const std::string two = t.substr(ns2);
  EXPECT_EQ(ValueOf(one, "Namespace Size (in LBAs)"), "2097152 (1GiB)");
  EXPECT_EQ(ValueOf(one, "Namespace Capacity (in LBAs)"), "2097152 (1GiB)");
  EXPECT_EQ(ValueOf(one, "Namespace Utilization (in LBAs)"), "1048576 (512MiB)");
  EXPECT_EQ(ValueOf(one, "Number of LBA Formats"), "2");
  EXPECT_EQ(ValueOf(one, "Current LBA Format"), "LBA Format #00");
  EXPECT_NE(one.find("\nLBA Format #00: Data Size: 512  Metadata Size: 0\n"
                     "LBA Format #01: Data Size: 4096  Metadata Size: 8\n"),
            std::string::npos)
      << one;
  EXPECT_EQ(ValueOf(one, "UUID"), "00010203-0405-0607-0809-0a0b0c0d0e0f");
  EXPECT_EQ(ValueOf(one, "EUI64"), "00112233445566AB");
  EXPECT_EQ(ValueOf(one, "NGUID"), "<missing>");  // all zero, no descriptor
  EXPECT_EQ(ValueOf(one, "Deallocate"), "Supported");
  // The second namespace uses format 1 (4 KiB) and has only the Identify
  // Namespace NGUID.
  EXPECT_EQ(ValueOf(two, "Namespace Size (in LBAs)"), "262144 (1GiB)");
  EXPECT_EQ(ValueOf(two, "Current LBA Format"), "LBA Format #01");
  EXPECT_EQ(ValueOf(two, "NGUID"), "FE000000000000000000000000000000");
  EXPECT_EQ(ValueOf(two, "UUID"), "<missing>");
  EXPECT_EQ(ValueOf(two, "EUI64"), "<missing>");
}

TEST(IdentifyText, AbsentLogsAndFeaturesSayNotSupported) {
  IdentifyReport r = MakeReport();
  r.namespaces.clear();
  const std::string t = Text(r);
  EXPECT_EQ(Section(t, "Health Information"), "Health Information\n==================\n"
                                              "Not Supported (Get Log Page 02h)\n");
  EXPECT_EQ(Section(t, "Firmware Slot Information"), "Firmware Slot Information\n=========================\n"
                                                     "Not Supported (Get Log Page 03h)\n");
  EXPECT_NE(Section(t, "Error Log").find("Not Supported (Get Log Page 01h)"), std::string::npos);
  EXPECT_NE(Section(t, "Commands Supported and Effects").find("Not Supported (Get Log Page 05h)"),
            std::string::npos);
  EXPECT_NE(Section(t, "Arbitration").find("Not Supported (Get Features 01h)"), std::string::npos);
  EXPECT_EQ(ValueOf(t, "Current Power State"), "Not Supported (Get Features 02h)");
  EXPECT_EQ(ValueOf(t, "Number of I/O Queues"), "Not Supported (Get Features 07h)");
  EXPECT_EQ(t.find("Error Recovery Timeout"), std::string::npos);
  EXPECT_EQ(t.find("Kelvin (-"), std::string::npos);
  EXPECT_NE(t.find("Active Namespaces\n=================\nNo active namespaces\n"), std::string::npos);
}

TEST(IdentifyText, HealthLog) {
  IdentifyReport r = MakeReport();
  auto& h = r.smart_health.emplace();
  h.critical_warning = 1u << 1;
  h.composite_temperature[0] = 323 & 0xFF;
  h.composite_temperature[1] = 323 >> 8;
  h.avail_spare = 100;
  h.avail_spare_threshold = 10;
  h.percentage_used = 3;
  SetU128(h.data_units_read, 0, 1);  // 2^64
  SetU128(h.power_on_hours, 1234);
  h.temp_sensor[0] = 300;
  r.temperature_threshold = 343;
  const std::string t = Section(Text(r), "Health Information");
  EXPECT_EQ(ValueOf(t, "  Available Spare Space"), "OK");
  EXPECT_EQ(ValueOf(t, "  Temperature"), "WARNING");
  EXPECT_EQ(ValueOf(t, "Current Temperature"), "323 Kelvin (50 Celsius)");
  EXPECT_EQ(ValueOf(t, "Temperature Threshold"), "343 Kelvin (70 Celsius)");
  EXPECT_EQ(ValueOf(t, "Available Spare"), "100%");
  EXPECT_EQ(ValueOf(t, "Available Spare Threshold"), "10%");
  EXPECT_EQ(ValueOf(t, "Life Percentage Used"), "3%");
  EXPECT_EQ(ValueOf(t, "Data Units Read"), "18446744073709551616");
  EXPECT_EQ(ValueOf(t, "Data Units Written"), "0");
  EXPECT_EQ(ValueOf(t, "Power On Hours"), "1234 hours");
  EXPECT_EQ(ValueOf(t, "Temperature Sensor 1"), "300 Kelvin (27 Celsius)");
  EXPECT_EQ(ValueOf(t, "Temperature Sensor 2"), "<missing>");
}

TEST(IdentifyText, ErrorLogFirmwareEffectsAndFeatures) {
  IdentifyReport r = MakeReport();
  auto& errors = r.errors.emplace(4);
  EXPECT_NE(Text(r).find("Error Log\n=========\nNo Errors Logged\n"), std::string::npos);
  errors[2].error_count = 7;
  errors[2].sqid = 1;
  errors[2].cid = 0x1234;
  errors[2].status = static_cast<uint16_t>((1u << 15) | (1u << 9) | (0x0Bu << 1) | 1u);
  errors[2].lba = 0xABCDEF;
  errors[2].nsid = 1;
  auto& fw = r.firmware_slots.emplace();
  fw.afi = 0x21;
  SetAscii(fw.frs[0], "0.1");
  SetAscii(fw.frs[1], "0.2");
  auto& fx = r.effects.emplace();
  fx.acs[spec::admin::kIdentify] = spec::kEffectCsupp;
  fx.acs[spec::admin::kFormatNvm] = spec::kEffectCsupp | spec::kEffectLbcc | spec::kEffectNcc | (2u << 16);
  fx.iocs[spec::nvm::kWrite] = spec::kEffectCsupp | spec::kEffectLbcc;
  fx.iocs[0x81] = spec::kEffectCsupp;
  fx.iocs[spec::nvm::kRead] = spec::kEffectLbcc;  // not supported: not listed
  r.arbitration = 0x03020107;
  r.power_management = 2;
  r.number_of_queues = 0x003e001f;
  r.error_recovery = 0;
  const std::string t = Text(r);
  const std::string err = Section(t, "Error Log");
  EXPECT_NE(err.find("\nEntry: 2\nError Count:            0x7\n"), std::string::npos) << err;
  EXPECT_EQ(ValueOf(err, "Command Id"), "0x1234");
  EXPECT_EQ(ValueOf(err, "Phase Bit"), "1");
  EXPECT_EQ(ValueOf(err, "Status Code"), "0xb");
  EXPECT_EQ(ValueOf(err, "Status Code Type"), "0x1");
  EXPECT_EQ(ValueOf(err, "Do Not Retry"), "1");
  EXPECT_EQ(ValueOf(err, "LBA"), "0xabcdef");
  const std::string slots = Section(t, "Firmware Slot Information");
  EXPECT_EQ(ValueOf(slots, "Active slot"), "1");
  EXPECT_EQ(ValueOf(slots, "Next controller reset slot"), "2");
  EXPECT_EQ(ValueOf(slots, "Slot 1 Firmware Revision"), "0.1");
  EXPECT_EQ(ValueOf(slots, "Slot 2 Firmware Revision"), "0.2");
  EXPECT_EQ(ValueOf(slots, "Slot 3 Firmware Revision"), "<missing>");
  const std::string fxs = t.substr(t.find("Commands Supported and Effects\n"));
  EXPECT_NE(fxs.find("Admin Commands\n--------------\n                      Identify (06h): Supported\n"
                     "                    Format NVM (80h): Supported LBA-Change NS-Cap-Change All-NS-Exclusive\n"
                     "I/O Commands\n------------\n                         Write (01h): Supported LBA-Change\n"
                     "               Vendor Specific (81h): Supported\n\n"),
            std::string::npos)
      << fxs;
  EXPECT_EQ(ValueOf(t, "Arbitration Burst"), "no limit");
  EXPECT_EQ(ValueOf(t, "Low Priority Weight"), "2");
  EXPECT_EQ(ValueOf(t, "Medium Priority Weight"), "3");
  EXPECT_EQ(ValueOf(t, "High Priority Weight"), "4");
  EXPECT_EQ(ValueOf(t, "Current Power State"), "Power State #2");
  EXPECT_EQ(ValueOf(t, "Number of I/O Submission Queues"), "32");
  EXPECT_EQ(ValueOf(t, "Number of I/O Completion Queues"), "63");
  EXPECT_EQ(ValueOf(t, "Error Recovery Timeout"), "Unlimited");
}

TEST(IdentifyHex, DumpLines) {
  std::vector<uint8_t> bytes(20);
  for (size_t i = 0; i < bytes.size(); ++i) {
    bytes[i] = static_cast<uint8_t>(0x41 + i);
  }
  bytes[1] = 0x00;
  bytes[2] = 0x7F;
  std::ostringstream os;
  HexDump(os, bytes);
  EXPECT_EQ(os.str(),
            "0000: 41 00 7f 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f 50  A..DEFGHIJKLMNOP\n"
            "0010: 51 52 53 54                                      QRST\n");
  std::ostringstream empty;
  HexDump(empty, {});
  EXPECT_EQ(empty.str(), "");
}

TEST(IdentifyHex, RawPages) {
  IdentifyReport r = MakeReport();
  std::ostringstream os;
  PrintHex(os, r);
  const std::string t = os.str();
  const size_t ctrl = t.find("Identify Controller (4096 bytes)\n================================\n"
                             "0000: 36 1b f4 1a 4e 56 4d 55 58 2d 53 4e 2d 30 30 30  6...NVMUX-SN-000\n");
  ASSERT_NE(ctrl, std::string::npos) << t.substr(0, 600);
  EXPECT_NE(t.find("\n0ff0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................\n\n"
                   "Identify Namespace, Namespace ID:1 (4096 bytes)\n"),
            std::string::npos);
  const size_t ns2 = t.find("Identify Namespace, Namespace ID:2 (4096 bytes)\n");
  ASSERT_NE(ns2, std::string::npos);
  EXPECT_EQ(t.find("0000: 00 00 04 00 00 00 00 00 00 00 04 00 00 00 00 00  ................\n", ns2),
            ns2 + 96);
  EXPECT_EQ(t.find("SMART / Health"), std::string::npos);  // absent logs are not dumped
  r.smart_health.emplace().avail_spare = 0x64;
  std::ostringstream with_log;
  PrintHex(with_log, r);
  EXPECT_NE(with_log.str().find("SMART / Health Information Log (512 bytes)\n"
                                "==========================================\n"
                                "0000: 00 00 00 64 00"),
            std::string::npos);
}

TEST(IdentifyValues, Helpers) {
  EXPECT_EQ(HumanSize(0), "0B");
  EXPECT_EQ(HumanSize(512), "512B");
  EXPECT_EQ(HumanSize(1024), "1KiB");
  EXPECT_EQ(HumanSize(1536), "1.5KiB");
  EXPECT_EQ(HumanSize(uint64_t{1} << 30), "1GiB");
  EXPECT_EQ(HumanSize(~uint64_t{0}), "15.9EiB");
  uint8_t v[16] = {};
  EXPECT_EQ(Uint128Decimal(v), "0");
  EXPECT_EQ(Uint128ToU64(v), uint64_t{0});
  SetU128(v, ~uint64_t{0}, ~uint64_t{0});
  EXPECT_EQ(Uint128Decimal(v), "340282366920938463463374607431768211455");
  EXPECT_EQ(Uint128ToU64(v), std::nullopt);
  SetU128(v, 1234567890123456789ull);
  EXPECT_EQ(Uint128Decimal(v), "1234567890123456789");
  EXPECT_EQ(Uint128ToU64(v), 1234567890123456789ull);
  const char field[8] = {'A', 'B', '\x01', ' ', 'C', ' ', ' ', '\0'};
  EXPECT_EQ(AsciiField(field, sizeof(field)), "AB. C");
  EXPECT_EQ(AdminOpcodeName(0x06), "Identify");
  EXPECT_EQ(AdminOpcodeName(0xC1), "Vendor Specific");
  EXPECT_EQ(AdminOpcodeName(0x03), "Unknown");
  EXPECT_EQ(IoOpcodeName(0x02), "Read");
}

TEST(JsonWriterTest, CompactPrettyAndEscaping) {
  JsonWriter compact(0);
  compact.BeginObject().Key("a").Uint(1).Key("b").BeginArray().Bool(true).Null().String("x").Int(-2).EndArray();
  compact.Key("c").BeginObject().EndObject().Key("d").RawNumber("340282366920938463463374607431768211455");
  compact.EndObject();
  EXPECT_EQ(compact.str(), R"({"a":1,"b":[true,null,"x",-2],"c":{},"d":340282366920938463463374607431768211455})");
  JsonWriter pretty;
  pretty.BeginObject().Key("a").BeginArray().Uint(1).Uint(2).EndArray().Key("e").BeginArray().EndArray().EndObject();
  EXPECT_EQ(pretty.str(), "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"e\": []\n}");
  const std::string nasty = "q\"b\\s/\x01\n\t\xe9\x7f";
  EXPECT_EQ(JsonWriter::Quote(nasty), R"("q\"b\\s/\u0001\n\t\u00e9\u007f")");
  const Json back = ParseJson("[" + JsonWriter::Quote(nasty) + "]");
  EXPECT_EQ(back[0].text, nasty);
}

TEST(IdentifyJson, ParsesBackToTheReport) {
  IdentifyReport r = MakeReport();
  r.transport_id = "trtype:vfiouser traddr:/tmp/we\"ird";
  const Json j = ParseJson(ToJson(r));
  EXPECT_EQ(j["transport_id"].text, r.transport_id);
  EXPECT_EQ(j["registers"]["cap"]["mqes"].u64(), 1023u);
  EXPECT_EQ(j["registers"]["cap"]["raw"].u64(), r.cap.raw);
  EXPECT_EQ(j["registers"]["vs"]["version"].text, "1.4");
  EXPECT_EQ(j["registers"]["csts"]["rdy"].u64(), 1u);
  const Json& c = j["controller"];
  EXPECT_EQ(c["vid"].u64(), 0x1b36u);
  EXPECT_EQ(c["sn"].text, "NVMUX-SN-0001");
  EXPECT_EQ(c["mn"].text, "nvmux emulated controller");
  EXPECT_EQ(c["fr"].text, "0.1");
  EXPECT_EQ(c["mdts"].u64(), 5u);
  EXPECT_EQ(c["mdts_bytes"].u64(), 131072u);
  EXPECT_EQ(c["tnvmcap"].u64(), uint64_t{1} << 30);
  EXPECT_EQ(c["subnqn"].text, "nqn.2019-08.io.nvmux:NVMUX-SN-0001");
  EXPECT_EQ(c["psd"].items.size(), 1u);
  EXPECT_EQ(c["psd"][0]["mp"].u64(), 2500u);
  EXPECT_EQ(j["queues"]["io_sq_granted"].u64(), 63u);
  for (const char* f : {"arbitration", "power_management", "temperature_threshold", "error_recovery",
                        "number_of_queues"}) {
    EXPECT_TRUE(j["features"][f].is_null()) << f;
  }
  for (const char* l : {"smart_health", "error_information", "firmware_slot", "commands_supported_and_effects"}) {
    EXPECT_TRUE(j["logs"][l].is_null()) << l;
  }
  ASSERT_EQ(j["namespaces"].items.size(), 2u);
  const Json& ns = j["namespaces"][0];
  EXPECT_EQ(ns["nsid"].u64(), 1u);
  EXPECT_EQ(ns["nsze"].u64(), 2097152u);
  EXPECT_EQ(ns["lbaf"].items.size(), 2u);
  EXPECT_EQ(ns["lbaf"][1]["data_size"].u64(), 4096u);
  EXPECT_EQ(ns["lbaf"][1]["ms"].u64(), 8u);
  EXPECT_EQ(ns["lba_format"].u64(), 0u);
  EXPECT_EQ(ns["size_bytes"].u64(), uint64_t{1} << 30);
  EXPECT_EQ(ns["descriptors"]["uuid"].text, "00010203-0405-0607-0809-0a0b0c0d0e0f");
  EXPECT_EQ(ns["descriptors"]["eui64"].text, "00112233445566AB");
  EXPECT_TRUE(ns["descriptors"]["nguid"].is_null());
  EXPECT_EQ(j["namespaces"][1]["nguid"].text, "FE000000000000000000000000000000");
  EXPECT_EQ(j["namespaces"][1]["lba_format"].u64(), 1u);
  // One line when asked.
  EXPECT_EQ(ToJson(r, 0).find('\n'), std::string::npos);
}

TEST(IdentifyJson, LogsAndFeatures) {
  IdentifyReport r = MakeReport();
  auto& h = r.smart_health.emplace();
  h.composite_temperature[0] = 323 & 0xFF;
  h.composite_temperature[1] = 323 >> 8;
  SetU128(h.data_units_read, 0, 1);
  SetU128(h.power_on_hours, 1234);
  r.errors.emplace(3)[1].error_count = 9;
  r.firmware_slots.emplace().afi = 1;
  SetAscii(r.firmware_slots->frs[0], "0.1");
  r.effects.emplace().iocs[spec::nvm::kWrite] = spec::kEffectCsupp | spec::kEffectLbcc;
  r.number_of_queues = 0x003e001f;
  r.arbitration = 0x03020107;
  const Json j = ParseJson(ToJson(r));
  const Json& s = j["logs"]["smart_health"];
  EXPECT_EQ(s["composite_temperature"].u64(), 323u);
  EXPECT_EQ(s["data_units_read"].type, Json::kString);
  EXPECT_EQ(s["data_units_read"].text, "18446744073709551616");
  EXPECT_EQ(s["power_on_hours"].u64(), 1234u);
  EXPECT_EQ(s["temp_sensor"].items.size(), 8u);
  const Json& errors = j["logs"]["error_information"];
  ASSERT_EQ(errors.items.size(), 1u);
  EXPECT_EQ(errors[0]["index"].u64(), 1u);
  EXPECT_EQ(errors[0]["error_count"].u64(), 9u);
  EXPECT_EQ(j["logs"]["firmware_slot"]["active_slot"].u64(), 1u);
  EXPECT_EQ(j["logs"]["firmware_slot"]["frs"][0].text, "0.1");
  EXPECT_EQ(j["logs"]["firmware_slot"]["frs"][1].text, "");
  const Json& fx = j["logs"]["commands_supported_and_effects"];
  EXPECT_TRUE(fx["admin"].items.empty());
  ASSERT_EQ(fx["io"].items.size(), 1u);
  EXPECT_EQ(fx["io"][0]["name"].text, "Write");
  EXPECT_EQ(fx["io"][0]["lbcc"].text, "true");
  EXPECT_EQ(j["features"]["number_of_queues"]["nsqa"].u64(), 31u);
  EXPECT_EQ(j["features"]["number_of_queues"]["ncqa"].u64(), 62u);
  EXPECT_EQ(j["features"]["arbitration"]["ab"].u64(), 7u);
  EXPECT_EQ(j["features"]["arbitration"]["hpw"].u64(), 3u);
}

}  // namespace
}  // namespace nvmux::identify
