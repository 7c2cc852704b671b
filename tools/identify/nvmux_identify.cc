// nvmux-identify: what an NVMe controller reports — identify data,
// registers, features, log pages and every active namespace — printed like
// SPDK's spdk_nvme_identify (text, optionally with hex dumps) or as JSON.
//
//   nvmux-identify -r 'trtype:vfiouser traddr:/tmp/emu' [-n NSID] [-x | --json] [-L LEVEL]
//   nvmux-identify -i 0 -r 'trtype:vfiouser traddr:/tmp/emu'   (secondary of nvmuxd -i 0)
//
// Output goes to stdout only; every error is one line on stderr naming the
// option, the bad value and what is allowed.
// Exit status: 0 printed; 1 the controller or namespace could not be read
// (nothing at traddr, namespace not active, no hugepages, group absent);
// 2 bad command line (unknown option, missing -r, malformed value).
#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <system_error>

#include "nvmux/discovery.h"
#include "tools/common/discovery_format.h"
#include "nvmux/controller.h"
#include "nvmux/probe.h"
#include "nvmux/env.h"
#include "nvmux/transport_id.h"
#include "shm/base/log.h"
#include "shm/group_paths.h"
#include "tools/identify/identify_format.h"
#include "tools/identify/identify_gather.h"
#include "tools/identify/identify_json.h"

namespace {

constexpr const char* kProgram = "nvmux-identify";
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

struct Args {
  std::string trid;
  std::string shm_id;     // -i, validated below
  std::string nsid;       // -n, validated below
  std::string log_level;  // -L
  bool hex = false;
  bool json = false;
};

// Everything the command line asks for, validated.
struct Request {
  std::optional<nvmux::TransportId> trid;  // none: every controller of the group
  std::optional<int> group_id;
  std::optional<uint32_t> nsid;
};

int Usage(const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", kProgram, message.c_str());
  return kExitUsage;
}

int Failed(const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", kProgram, message.c_str());
  return kExitFailed;
}

// A whole decimal number in [min, max].
std::optional<uint64_t> ParseNumber(const std::string& text, uint64_t min, uint64_t max) {
  uint64_t v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || p != end || v < min || v > max) return std::nullopt;
  return v;
}

// Validates the values CLI11 took as strings. Returns an exit status on error.
std::optional<int> Validate(const Args& args, Request& req) {
  if (!args.log_level.empty()) {
    auto level = nvmux::ParseLogLevel(args.log_level);
    if (!level)
      return Usage("-L/--log-level '" + args.log_level + "': allowed error, warning, notice, info, debug (or 0-4)");
    nvmux::SetLogLevel(*level);
  }
  if (args.trid.empty() && args.shm_id.empty())
    return Usage("which controller? give -r TRID, or -i GROUP for the controllers of nvmuxd -i GROUP");
  if (!args.trid.empty()) {
    auto trid = nvmux::TransportId::Parse(args.trid);
    if (!trid) return Usage("-r/--transport-id '" + args.trid + "': " + trid.error().message);
    req.trid = *trid;
  }
  if (!args.shm_id.empty()) {
    auto id = ParseNumber(args.shm_id, 0, nvmux::shm::kMaxGroupId);
    if (!id)
      return Usage("-i/--shm-id '" + args.shm_id + "': allowed a group id 0.." +
                   std::to_string(nvmux::shm::kMaxGroupId) + " (the -i of nvmuxd)");
    req.group_id = static_cast<int>(*id);
  }
  if (req.trid) req.nsid = req.trid->nsid;
  if (!args.nsid.empty()) {
    auto id = ParseNumber(args.nsid, 1, 0xFFFFFFFE);
    if (!id) return Usage("-n/--namespace '" + args.nsid + "': allowed a namespace id 1..4294967294");
    if (req.nsid && *req.nsid != *id)
      return Usage("-n/--namespace " + args.nsid + " contradicts ns:" + std::to_string(*req.nsid) +
                   " in the transport id: give one of them");
    req.nsid = static_cast<uint32_t>(*id);
  }
  return std::nullopt;
}

// vfio-user: say plainly when nothing serves at traddr, before DPDK starts.
std::optional<int> CheckTraddr(const nvmux::TransportId& trid) {
  if (trid.trtype != nvmux::TransportType::kVfioUser) return std::nullopt;
  std::error_code ec;
  const std::string start = "; start an emulated controller there with: nvmux-emu --socket " + trid.traddr;
  if (!std::filesystem::is_directory(trid.traddr, ec))
    return Failed("-r/--transport-id '" + trid.ToString() + "': traddr " + trid.traddr + " is not a directory" +
                  (std::filesystem::exists(trid.traddr, ec) ? "" : " (it does not exist)") + start);
  if (!std::filesystem::is_socket(trid.traddr + "/cntrl", ec))
    return Failed("-r/--transport-id '" + trid.ToString() + "': no vfio-user socket " + trid.traddr +
                  "/cntrl (nothing serves there)" + start);
  return std::nullopt;
}

// Identifies one controller and prints its report (text, or JSON).
int Identify(nvmux::Env& env, const Args& args, const Request& req, const nvmux::TransportId& trid) {
  auto ctrlr = nvmux::Controller::Connect(env, trid);
  if (!ctrlr) {
    // The driver's messages usually name the transport id or traddr already.
    const std::string& why = ctrlr.error().message;
    const bool named = why.find(trid.ToString()) != std::string::npos || why.find(trid.traddr) != std::string::npos;
    return Failed("-r/--transport-id" + (named ? std::string() : " '" + trid.ToString() + "'") + ": " + why);
  }

  nvmux::identify::GatherOptions gather;
  gather.nsid = req.nsid;
  auto report = nvmux::identify::GatherReport(**ctrlr, gather);
  if (!report) {
    if (report.error().code == ENOENT && req.nsid)
      return Failed((args.nsid.empty() ? "-r/--transport-id ns:" : "-n/--namespace ") + std::to_string(*req.nsid) +
                    ": " + report.error().message);
    return Failed(report.error().message);
  }
  if (args.json) {
    std::cout << nvmux::identify::ToJson(*report);
  } else {
    nvmux::identify::PrintText(std::cout, *report);
    if (args.hex) nvmux::identify::PrintHex(std::cout, *report);
  }
  return 0;
}

int Run(const Args& args) {
  Request req;
  if (auto rc = Validate(args, req)) return *rc;
  if (req.trid)
    if (auto rc = CheckTraddr(*req.trid)) return *rc;
  if (req.trid && !req.group_id && nvmux::IsDiscoveryTrid(*req.trid)) {
    // A discovery service: its log, as `nvme discover` prints it (no
    // environment needed: the log comes into host memory).
    auto log = nvmux::ReadDiscoveryLog(*req.trid);
    if (!log) return Failed("-r/--transport-id '" + req.trid->ToString() + "': " + log.error().message);
    std::cout << (args.json ? nvmux::tools::DiscoveryLogJson(*log) + "\n" : nvmux::tools::FormatDiscoveryLog(*log));
    return 0;
  }

  nvmux::EnvOptions env_options;
  env_options.name = kProgram;
  env_options.group_id = req.group_id;
  auto env = nvmux::Env::Init(env_options);
  if (!env) {
    if (req.group_id) return Failed("-i/--shm-id " + std::to_string(*req.group_id) + ": " + env.error().message);
    return Failed(env.error().message);
  }
  std::vector<nvmux::TransportId> trids;
  if (req.trid) {
    trids.push_back(*req.trid);
  } else {
    // -i alone: every controller the group's primary published (as
    // spdk_nvme_identify shows every controller it finds).
    auto published = nvmux::GroupControllers(**env);
    if (!published) return Failed("-i/--shm-id " + std::to_string(*req.group_id) + ": " + published.error().message);
    trids = std::move(*published);
  }
  // JSON: one object for -r, an array (one object per controller) for -i alone.
  const bool array = args.json && !req.trid;
  if (array) std::cout << '[';
  for (size_t i = 0; i < trids.size(); ++i) {
    if (array && i > 0) std::cout << ',';
    if (int rc = Identify(**env, args, req, trids[i]); rc != 0) return rc;
  }
  if (array) std::cout << ']';
  if (args.json) std::cout << '\n';
  std::cout.flush();
  if (!std::cout) return Failed("writing the report to stdout failed");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nvmux-identify: show what an NVMe controller reports (identify data, registers, features, log pages, "
               "namespaces), like spdk_nvme_identify",
               kProgram};
  app.footer(
      "Examples:\n"
      "  nvmux-identify -r 'trtype:vfiouser traddr:/tmp/nvmux-emu'\n"
      "  nvmux-identify -r 'trtype:vfiouser traddr:/tmp/nvmux-emu' -n 2 -x\n"
      "  nvmux-identify -r 'trtype:vfiouser traddr:/tmp/nvmux-emu' --json | jq '.namespaces[].nsze'\n"
      "  nvmux-identify -i 0                                          (every controller of nvmuxd -i 0, as its secondary)\n"
      "  nvmux-identify -i 0 -r 'trtype:vfiouser traddr:/tmp/nvmux-emu'   (one of them)\n"
      "An emulated controller to try it on: nvmux-emu --socket /tmp/nvmux-emu --ns size=64M,lbads=512\n"
      "Exit status: 0 printed; 1 the controller or namespace could not be read; 2 bad command line.");
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string(kProgram) + ": " + e.what() + " (see --help)\n";
  });
  Args args;
  app.add_option("-r,--transport-id", args.trid,
                 "controller, as an SPDK transport id: 'trtype:vfiouser traddr:DIR' (keys trtype, traddr, trsvcid, "
                 "subnqn, adrfam, ns, hostnqn); with -i and no -r: every controller of the group")
      ->type_name("TRID");
  app.add_option("-i,--shm-id", args.shm_id,
                 "shared-memory group id: join nvmuxd -i N as a secondary (default: standalone)")
      ->type_name("GROUP");
  app.add_option("-n,--namespace", args.nsid, "show only this namespace (default: every active namespace)")
      ->type_name("NSID");
  auto* hex = app.add_flag("-x,--hex", args.hex, "hex dumps of the raw pages after the text");
  app.add_flag("--json", args.json,
               "one JSON object (schema in tools/identify/identify_json.h), nothing else; with -i alone an array "
               "of them, one per controller")
      ->excludes(hex);
  app.add_option("-L,--log-level", args.log_level,
                 "driver log on stderr: error, warning (default), notice, info or debug")
      ->type_name("LEVEL");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  return Run(args);
}
