// The control-socket commands (Emulator::ExecuteControl): one line in, one
// reply line out. See tools/emu/README.md "Control socket".
#include <charconv>
#include <cstdio>

#include "shm/base/clock.h"
#include "tools/emu/emulator.h"

namespace nvmux::emu {
namespace {

constexpr const char* kCommands = "fail, delay, drop, cfs, remove, clear, status, corrupt";

std::string Reply(const Error& e) {
  std::string m = e.message;
  if (m.rfind("--fault ", 0) == 0) m.erase(0, 8);
  return "error " + m;
}

// Decimal or 0x hex.
Result<uint64_t> Number(std::string_view text) {
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    text.remove_prefix(2);
    base = 16;
  }
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v, base);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return Fail(EINVAL, "not a number");
  return v;
}

}  // namespace

std::string Emulator::ExecuteControl(std::string_view line) {
  while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  while (!line.empty() && line.back() == ' ') line.remove_suffix(1);
  const size_t space = line.find(' ');
  const std::string_view command = line.substr(0, space);
  const std::string_view args = space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
  if (command.empty()) return std::string("error empty command (commands: ") + kCommands + ")";
  if (command == "fail" || command == "delay" || command == "drop" || (command == "cfs" && !args.empty())) {
    auto rule = ParseFaultRule(line);
    if (!rule) return Reply(rule.error());
    controller_->faults().Add(*rule, MonotonicNanos());
    return "ok " + Describe(*rule);
  }
  if (command == "cfs") {
    controller_->InjectFatal();
    return "ok cfs set";
  }
  if (command == "remove") {
    Remove();
    return "ok removed";
  }
  if (command == "clear") {
    controller_->faults().Clear();
    return "ok cleared";
  }
  if (command == "status") {
    auto csts = controller_->ReadRegister(spec::kRegCsts, 4);
    char buf[64];
    std::snprintf(buf, sizeof(buf), "removed=%d csts=0x%08x ", controller_->removed() ? 1 : 0,
                  csts ? static_cast<uint32_t>(*csts) : 0xFFFFFFFFu);
    return "ok " + std::string(buf) + controller_->faults().Describe();
  }
  if (command == "corrupt") {
    uint64_t lba = 0;
    bool have_lba = false;
    uint64_t nsid = 1;
    std::string_view rest = args;
    while (!rest.empty()) {
      const size_t end = rest.find_first_of(", ");
      const std::string_view item = rest.substr(0, end);
      rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
      if (item.empty()) continue;
      const size_t eq = item.find('=');
      const std::string_view key = item.substr(0, eq);
      if (key != "lba" && key != "ns") {
        return "error corrupt: key '" + std::string(key) + "' is unknown (keys: lba, ns)";
      }
      const Result<uint64_t> v = Number(eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1));
      if (!v) return "error corrupt: '" + std::string(item) + "' is not key=NUMBER";
      if (key == "lba") {
        lba = *v;
        have_lba = true;
      } else {
        nsid = *v;
      }
    }
    if (!have_lba) return "error corrupt: lba=N is required (e.g. corrupt lba=0 ns=1)";
    if (nsid == 0 || nsid > Controller::kMaxNamespaces) {
      return "error corrupt: ns=" + std::to_string(nsid) + " must be 1.." + std::to_string(Controller::kMaxNamespaces);
    }
    Status done = controller_->CorruptBlock(static_cast<uint32_t>(nsid), lba);
    if (!done) return Reply(done.error());
    return "ok corrupted ns=" + std::to_string(nsid) + " lba=" + std::to_string(lba);
  }
  return "error unknown command '" + std::string(command) + "' (commands: " + kCommands + ")";
}

}  // namespace nvmux::emu
