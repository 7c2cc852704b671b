#include "tools/manage/manage_output.h"

#include <cstdarg>
#include <cstdio>
#include <ctime>

#include "nvmux/spec/features.h"
#include "nvmux/spec/status.h"

namespace nvmux::manage {

std::string JsonQuote(std::string_view s) { return tools::JsonWriter::Quote(s); }

// ---- formatting ----

std::string Sprintf(const char* format, ...) {
  va_list args;
  va_start(args, format);
  va_list again;
  va_copy(again, args);
  int n = std::vsnprintf(nullptr, 0, format, args);
  va_end(args);
  std::string out(static_cast<size_t>(n > 0 ? n : 0) + 1, '\0');
  std::vsnprintf(out.data(), out.size(), format, again);
  va_end(again);
  out.pop_back();
  return out;
}

std::string TrimField(const char* field, size_t width) {
  size_t n = 0;
  while (n < width && field[n] != '\0') ++n;
  while (n > 0 && (field[n - 1] == ' ' || field[n - 1] == '\0')) --n;
  std::string out(field, n);
  // Identify strings are ASCII; anything else would corrupt a table or JSON.
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  return out;
}

std::string FormatUnits(uint64_t bytes) {
  static const char* const kSuffix[] = {"", "k", "M", "G", "T", "P", "E"};
  double value = static_cast<double>(bytes);
  size_t i = 0;
  while (value >= 1000.0 && i + 1 < std::size(kSuffix)) {
    value /= 1000.0;
    ++i;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%6.2f %2sB", value, kSuffix[i]);
  return buf;
}

std::string Uint128ToString(const uint8_t (&le)[16]) {
  unsigned __int128 v = 0;
  for (size_t i = 16; i-- > 0;) v = (v << 8) | le[i];
  if (v == 0) return "0";
  std::string digits;
  while (v != 0) {
    digits.insert(digits.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  }
  return digits;
}

std::string HexDump(const void* data, size_t length) {
  const auto* p = static_cast<const uint8_t*>(data);
  std::string out = "       0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f\n";
  char buf[24];
  for (size_t row = 0; row < length; row += 16) {
    std::snprintf(buf, sizeof(buf), "%04zx:", row);
    out += buf;
    std::string ascii;
    for (size_t i = row; i < row + 16; ++i) {
      if (i < length) {
        std::snprintf(buf, sizeof(buf), " %02x", p[i]);
        out += buf;
        ascii += (p[i] >= 0x20 && p[i] < 0x7f) ? static_cast<char>(p[i]) : '.';
      } else {
        out += "   ";
      }
    }
    out += " \"" + ascii + "\"\n";
  }
  return out;
}

std::string HexString(const void* data, size_t length) {
  const auto* p = static_cast<const uint8_t*>(data);
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(length * 2);
  for (size_t i = 0; i < length; ++i) {
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 0xF];
  }
  return out;
}

std::string FormatRealtime(uint64_t realtime_ns) {
  time_t when = static_cast<time_t>(realtime_ns / 1'000'000'000u);
  tm local{};
  localtime_r(&when, &local);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%F %T", &local);
  return buf;
}

const char* FeatureName(uint8_t fid) {
  switch (fid) {
    case spec::fid::kArbitration: return "Arbitration";
    case spec::fid::kPowerManagement: return "Power Management";
    case spec::fid::kLbaRangeType: return "LBA Range Type";
    case spec::fid::kTemperatureThreshold: return "Temperature Threshold";
    case spec::fid::kErrorRecovery: return "Error Recovery";
    case spec::fid::kVolatileWriteCache: return "Volatile Write Cache";
    case spec::fid::kNumberOfQueues: return "Number of Queues";
    case spec::fid::kInterruptCoalescing: return "Interrupt Coalescing";
    case spec::fid::kInterruptVectorConfig: return "Interrupt Vector Configuration";
    case spec::fid::kWriteAtomicityNormal: return "Write Atomicity Normal";
    case spec::fid::kAsyncEventConfig: return "Async Event Configuration";
    case spec::fid::kAutonomousPowerStateTransition: return "Autonomous Power State Transition";
    case spec::fid::kHostMemoryBuffer: return "Host Memory Buffer";
    case spec::fid::kTimestamp: return "Timestamp";
    case spec::fid::kKeepAliveTimer: return "Keep Alive Timer";
    case 0x10: return "Host Controlled Thermal Management";
    case 0x11: return "Non-Operational Power State Config";
    case 0x12: return "Read Recovery Level";
    case 0x13: return "Predictable Latency Mode Config";
    case 0x14: return "Predictable Latency Mode Window";
    case 0x15: return "LBA Status Information Report Interval";
    case 0x16: return "Host Behavior Support";
    case 0x17: return "Sanitize Config";
    case 0x18: return "Endurance Group Event Configuration";
    case 0x80: return "Software Progress";
    case spec::fid::kHostIdentifier: return "Host Identifier";
    case spec::fid::kReservationNotificationMask: return "Reservation Notification Mask";
    case spec::fid::kReservationPersistence: return "Reservation Persistence";
    case 0x84: return "Namespace Write Protection Config";
  }
  return "Unknown";
}

const char* SelectName(uint8_t sel) {
  switch (sel) {
    case spec::sel::kCurrent: return "Current";
    case spec::sel::kDefault: return "Default";
    case spec::sel::kSaved: return "Saved";
    case spec::sel::kSupportedCapabilities: return "Supported capabilities";
  }
  return "Reserved";
}

namespace {

const char* GenericStatusName(uint8_t sc) {
  switch (sc) {
    case spec::sc::kSuccess: return "Successful Completion";
    case spec::sc::kInvalidOpcode: return "Invalid Command Opcode";
    case spec::sc::kInvalidField: return "Invalid Field in Command";
    case spec::sc::kDataTransferError: return "Data Transfer Error";
    case spec::sc::kInternalError: return "Internal Error";
    case spec::sc::kAbortRequested: return "Command Abort Requested";
    case spec::sc::kAbortedSqDeletion: return "Command Aborted due to SQ Deletion";
    case spec::sc::kInvalidNamespaceOrFormat: return "Invalid Namespace or Format";
    case spec::sc::kCommandSequenceError: return "Command Sequence Error";
    case spec::sc::kLbaOutOfRange: return "LBA Out of Range";
    case spec::sc::kCapacityExceeded: return "Capacity Exceeded";
    case spec::sc::kNamespaceNotReady: return "Namespace Not Ready";
    case spec::sc::kFormatInProgress: return "Format In Progress";
  }
  return nullptr;
}

const char* CommandSpecificStatusName(uint8_t sc) {
  switch (sc) {
    case spec::sc::kInvalidLogPage: return "Invalid Log Page";
    case spec::sc::kInvalidFormat: return "Invalid Format";
    case spec::sc::kFeatureIdNotSaveable: return "Feature Identifier Not Saveable";
    case spec::sc::kFeatureNotChangeable: return "Feature Not Changeable";
    case spec::sc::kFeatureNotNamespaceSpecific: return "Feature Not Namespace Specific";
    case spec::sc::kNamespaceInsufficientCapacity: return "Namespace Insufficient Capacity";
    case spec::sc::kNamespaceIdentifierUnavailable: return "Namespace Identifier Unavailable";
    case spec::sc::kNamespaceAlreadyAttached: return "Namespace Already Attached";
    case spec::sc::kNamespaceIsPrivate: return "Namespace Is Private";
    case spec::sc::kNamespaceNotAttached: return "Namespace Not Attached";
    case spec::sc::kThinProvisioningNotSupported: return "Thin Provisioning Not Supported";
    case spec::sc::kControllerListInvalid: return "Controller List Invalid";
    case spec::sc::kInvalidProtectionInformation: return "Invalid Protection Information";
  }
  return nullptr;
}

}  // namespace

std::string CompletionStatusText(const spec::Cqe& cpl) {
  const char* name = nullptr;
  if (cpl.sct() == spec::sct::kGeneric) name = GenericStatusName(cpl.sc());
  if (cpl.sct() == spec::sct::kCommandSpecific) name = CommandSpecificStatusName(cpl.sc());
  char codes[48];
  std::snprintf(codes, sizeof(codes), "sct %u, sc 0x%02x%s", cpl.sct(), cpl.sc(), cpl.dnr() ? ", do not retry" : "");
  return std::string(name != nullptr ? name : "Unknown status") + " (" + codes + ")";
}

}  // namespace nvmux::manage
