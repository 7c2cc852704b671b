// The control-socket commands (Emulator::ExecuteControl): one line in, one
// reply line out. See tools/emu/README.md "Control socket".
#include <algorithm>
#include <charconv>
#include <map>
#include <cstdio>

#include "shm/base/clock.h"
#include "tools/emu/emulator.h"

namespace nvmux::emu {
namespace {

constexpr const char* kCommands = "fail, delay, drop, cfs, remove, clear, status, corrupt, aen";

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

// "key=N key=N" (spaces or commas) for the keys allowed; names a bad item.
Result<std::map<std::string, uint64_t, std::less<>>> ParseNumbers(std::string_view command, std::string_view args,
                                                                  std::initializer_list<std::string_view> keys) {
  std::map<std::string, uint64_t, std::less<>> out;
  std::string allowed;
  for (std::string_view k : keys) allowed += (allowed.empty() ? "" : ", ") + std::string(k);
  while (!args.empty()) {
    const size_t end = args.find_first_of(", ");
    const std::string_view item = args.substr(0, end);
    args = end == std::string_view::npos ? std::string_view() : args.substr(end + 1);
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    const std::string_view key = item.substr(0, eq);
    if (std::find(keys.begin(), keys.end(), key) == keys.end())
      return Fail(EINVAL, std::string(command) + ": key '" + std::string(key) + "' is unknown (keys: " + allowed + ")");
    const Result<uint64_t> v = Number(eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1));
    if (!v) return Fail(EINVAL, std::string(command) + ": '" + std::string(item) + "' is not key=NUMBER");
    out[std::string(key)] = *v;
  }
  return out;
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
    Wake();  // a poller sleeping on the ioeventfd re-reads its deadline (cfs after_ms)
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
    const Controller::ClientState client = controller_->client_state();
    char buf[64];
    std::snprintf(buf, sizeof(buf), "removed=%d csts=0x%08x ", controller_->removed() ? 1 : 0,
                  csts ? static_cast<uint32_t>(*csts) : 0xFFFFFFFFu);
    return "ok " + std::string(buf) + controller_->faults().Describe() +
           " sleeps=" + std::to_string(deep_sleeps_.load(std::memory_order_relaxed)) +
           " woken=" + std::to_string(deep_wakes_.load(std::memory_order_relaxed)) +
           " asleep=" + (deep_asleep_.load(std::memory_order_relaxed) ? "1" : "0") +
           " armed=" + std::to_string(controller_->notify_arms()) +
           " dma_maps=" + std::to_string(client.dma_maps) + " fdless=" + std::to_string(client.fdless_maps) +
           " msix_fds=" + std::to_string(client.msix_fds) + " io_sqs=" + std::to_string(client.io_sqs) +
           " io_cqs=" + std::to_string(client.io_cqs) + " " + controller_->QueueSummary() + " " +
           controller_->VectorSummary();
  }
  if (command == "corrupt") {
    auto v = ParseNumbers("corrupt", args, {"lba", "ns"});
    if (!v) return "error " + v.error().message;
    if (!v->count("lba")) return "error corrupt: lba=N is required (e.g. corrupt lba=0 ns=1)";
    const uint64_t lba = v->at("lba");
    const uint64_t nsid = v->count("ns") ? v->at("ns") : 1;
    if (nsid == 0 || nsid > Controller::kMaxNamespaces) {
      return "error corrupt: ns=" + std::to_string(nsid) + " must be 1.." + std::to_string(Controller::kMaxNamespaces);
    }
    Status done = controller_->CorruptBlock(static_cast<uint32_t>(nsid), lba);
    if (!done) return Reply(done.error());
    return "ok corrupted ns=" + std::to_string(nsid) + " lba=" + std::to_string(lba);
  }
  if (command == "aen") {
    auto v = ParseNumbers("aen", args, {"type", "info", "lid"});
    if (!v) return "error " + v.error().message;
    // Defaults: a SMART / health event (type 1, info 0: reliability), log page 02h.
    const uint64_t type = v->count("type") ? v->at("type") : 1;
    const uint64_t info = v->count("info") ? v->at("info") : 0;
    const uint64_t lid = v->count("lid") ? v->at("lid") : 2;
    if (type > 7) return "error aen: type=" + std::to_string(type) + " must be 0..7";
    if (info > 255 || lid > 255) return "error aen: info and lid must be 0..255";
    controller_->InjectEvent(static_cast<uint8_t>(type), static_cast<uint8_t>(info), static_cast<uint8_t>(lid));
    return "ok aen type=" + std::to_string(type) + " info=" + std::to_string(info) + " lid=" + std::to_string(lid);
  }
  return "error unknown command '" + std::string(command) + "' (commands: " + kCommands + ")";
}

}  // namespace nvmux::emu
