// nvmux-manage: nvme-cli-style management of nvmux controllers and groups.
//
//   status / cleanup                 a group seen from outside (manage_status.h)
//   list, get-feature, get-log,      read-only controller subcommands
//   smart-log, error-log             (manage_reports.h, manage_admin.h)
//   create-ns, delete-ns, attach-ns, destructive controller subcommands:
//   detach-ns, format, set-feature,  confirmed on a terminal, --yes otherwise
//   reset                            (manage_admin.h)
//
// Controller subcommands take -r TRID (standalone: attach it here) and/or
// -i GROUP (a secondary of nvmuxd -i GROUP; -r picks the controller). This
// file is the CLI edge: it parses and checks every value (one-line message
// naming the option and value, exit 1), asks for confirmation, opens the
// session and dispatches. Usage errors exit 2.
#include <CLI/CLI.hpp>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <string>

#include "nvmux/discovery.h"
#include "shm/group_paths.h"
#include "tools/common/discovery_format.h"
#include "tools/manage/manage_admin.h"
#include "tools/manage/manage_args.h"
#include "tools/manage/manage_reports.h"
#include "tools/manage/manage_session.h"
#include "tools/manage/manage_status.h"

namespace nvmux::manage {
namespace {

// A bad option value, thrown at the CLI edge only; main prints it, exit 1.
struct BadValue {
  std::string message;
};

template <typename T>
T Need(Result<T> r) {
  if (!r) throw BadValue{r.error().message};
  return std::move(*r);
}

// The raw text of every option (parsed after CLI11, see manage_args.h).
struct Raw {
  std::string group, trid;
  bool json = false, yes = false;
  std::string nsze, ncap, flbas = "0", dps = "0", nmic = "0";
  std::string nsid, controllers;
  std::string lbaf, ses = "0", pi = "0", ms = "0";
  std::string fid, sel = "0", cdw11 = "0", cdw12 = "0", value, data_len = "0";
  bool save = false;
  std::string log_id, log_len, lpo = "0", entries;
};

// What each subcommand is, for its options and for dispatch.
enum class Kind { kReadOnly, kDestructive };

CLI::App* AddController(CLI::App& app, Raw& raw, const std::string& name, const std::string& help, Kind kind) {
  CLI::App* sub = app.add_subcommand(name, help);
  sub->add_option("-r,--trid", raw.trid, "controller: transport id, e.g. 'trtype:vfiouser traddr:/tmp/emu'");
  sub->add_option("-i,--group,--shm-id", raw.group,
                  "join nvmuxd -i GROUP as a secondary (-r then picks the controller)");
  sub->add_flag("--json", raw.json, "machine-readable output (one JSON line)");
  if (kind == Kind::kDestructive) sub->add_flag("-y,--yes", raw.yes, "do it without asking");
  return sub;
}

Target ParseTarget(const Raw& raw) {
  Target t;
  if (!raw.group.empty()) t.group = static_cast<int>(Need(ParseNumber("-i", raw.group, 0, shm::kMaxGroupId)));
  if (!raw.trid.empty()) {
    auto trid = TransportId::Parse(raw.trid);
    if (!trid) throw BadValue{"-r '" + raw.trid + "': " + trid.error().message};
    t.trid = *trid;
  }
  return t;
}

uint64_t Num(const char* option, const std::string& text, uint64_t min, uint64_t max) {
  return Need(ParseNumber(option, text, min, max));
}

// Parses the values, confirms, opens the session and runs one controller
// subcommand. Returns the exit code.
int RunController(const std::string& name, const Raw& raw) {
  // Every value first: a bad one fails before anything is attached.
  Target target = ParseTarget(raw);
  std::function<int(Session&)> run;
  std::string what;  // non-empty: destructive, confirm it
  bool all = false;
  const bool json = raw.json;
  if (name == "list") {
    all = true;
    run = [json](Session& s) { return List(s, json); };
  } else if (name == "create-ns") {
    CreateNsArgs a;
    a.nsze = Num("--nsze", raw.nsze, 1, UINT64_MAX);
    a.ncap = raw.ncap.empty() ? a.nsze : Num("--ncap", raw.ncap, 1, UINT64_MAX);
    a.flbas = static_cast<uint8_t>(Num("--flbas", raw.flbas, 0, 0x1F));
    a.dps = static_cast<uint8_t>(Num("--dps", raw.dps, 0, 0xFF));
    a.nmic = static_cast<uint8_t>(Num("--nmic", raw.nmic, 0, 0xFF));
    what = "create a namespace of " + std::to_string(a.nsze) + " blocks";
    run = [a, json](Session& s) { return CreateNs(s, a, json); };
  } else if (name == "delete-ns") {
    uint32_t nsid = Need(ParseNsid("-n", raw.nsid, true));
    what = nsid == kAllNamespaces ? "delete every namespace" : "delete namespace " + std::to_string(nsid);
    run = [nsid, json](Session& s) { return DeleteNs(s, nsid, json); };
  } else if (name == "attach-ns" || name == "detach-ns") {
    bool attach = name == "attach-ns";
    uint32_t nsid = Need(ParseNsid("-n", raw.nsid, false));
    std::vector<uint16_t> ids;
    if (!raw.controllers.empty())
      for (uint64_t id : Need(ParseNumberList("-c", raw.controllers, 0, 0xFFFE)))
        ids.push_back(static_cast<uint16_t>(id));
    what = std::string(attach ? "attach" : "detach") + " namespace " + std::to_string(nsid);
    run = [nsid, ids, attach, json](Session& s) { return AttachNs(s, nsid, ids, attach, json); };
  } else if (name == "format") {
    FormatArgs a;
    a.nsid = Need(ParseNsid("-n", raw.nsid, true));
    a.lbaf = static_cast<uint8_t>(Num("--lbaf", raw.lbaf, 0, 15));
    a.ses = static_cast<uint8_t>(Num("--ses", raw.ses, 0, 2));
    a.pi = static_cast<uint8_t>(Num("--pi", raw.pi, 0, 3));
    a.ms = Num("--ms", raw.ms, 0, 1) == 1;
    what = "format " +
           (a.nsid == kAllNamespaces ? std::string("every namespace") : "namespace " + std::to_string(a.nsid)) +
           " (its data is lost)";
    run = [a, json](Session& s) { return FormatNs(s, a, json); };
  } else if (name == "get-feature") {
    GetFeatureArgs a;
    a.fid = static_cast<uint8_t>(Num("-f", raw.fid, 0, 255));
    a.sel = static_cast<uint8_t>(Num("--sel", raw.sel, 0, 3));
    a.cdw11 = static_cast<uint32_t>(Num("--cdw11", raw.cdw11, 0, UINT32_MAX));
    a.nsid = raw.nsid.empty() ? 0 : Need(ParseNsid("-n", raw.nsid, true));
    a.data_len = static_cast<uint32_t>(Num("--data-len", raw.data_len, 0, 4096));
    run = [a, json](Session& s) { return GetFeature(s, a, json); };
  } else if (name == "set-feature") {
    SetFeatureArgs a;
    a.fid = static_cast<uint8_t>(Num("-f", raw.fid, 0, 255));
    a.value = static_cast<uint32_t>(Num("-v", raw.value, 0, UINT32_MAX));
    a.cdw12 = static_cast<uint32_t>(Num("--cdw12", raw.cdw12, 0, UINT32_MAX));
    a.nsid = raw.nsid.empty() ? 0 : Need(ParseNsid("-n", raw.nsid, true));
    a.save = raw.save;
    what = "set feature " + raw.fid + " to " + raw.value;
    run = [a, json](Session& s) { return SetFeature(s, a, json); };
  } else if (name == "get-log") {
    GetLogArgs a;
    a.lid = static_cast<uint8_t>(Num("--log-id", raw.log_id, 0, 255));
    a.length = static_cast<uint32_t>(Num("--log-len", raw.log_len, 1, kMaxLogBytes));
    a.nsid = raw.nsid.empty() ? kAllNamespaces : Need(ParseNsid("-n", raw.nsid, true));
    a.offset = Num("--lpo", raw.lpo, 0, UINT64_MAX - 3);
    if (a.offset % 4 != 0) throw BadValue{"--lpo '" + raw.lpo + "': the log page offset must be a multiple of 4"};
    run = [a, json](Session& s) { return GetLog(s, a, json); };
  } else if (name == "smart-log") {
    uint32_t nsid = raw.nsid.empty() ? kAllNamespaces : Need(ParseNsid("-n", raw.nsid, true));
    run = [nsid, json](Session& s) { return SmartLog(s, nsid, json); };
  } else if (name == "error-log") {
    std::optional<uint32_t> entries;
    if (!raw.entries.empty()) entries = static_cast<uint32_t>(Num("-e", raw.entries, 1, kMaxErrorEntries));
    run = [entries, json](Session& s) { return ErrorLog(s, entries, json); };
  } else if (name == "reset") {
    if (target.group) {
      std::cerr << "nvmux-manage: reset -i " << *target.group
                << ": a group's controllers belong to its primary; restart nvmuxd to reset them, or stop nvmuxd and "
                   "use -r alone\n";
      return 1;
    }
    what = "reset the controller (outstanding commands are aborted)";
    run = [json](Session& s) { return ResetController(s, json); };
  }
  if (!target.group && !target.trid) {
    std::cerr << "nvmux-manage: " << name
              << ": which controller? give -r TRID (attach it here) or -i GROUP (a "
                 "controller of nvmuxd -i GROUP)\n";
    return 2;
  }
  if (!what.empty()) {
    std::string where = target.trid ? " on " + target.trid->ToString()
                                    : " on group " + std::to_string(*target.group) + "'s first controller";
    if (int code = Confirm(name, what + where, raw.yes); code != 0) return code;
  }
  auto session = Session::Open(target, all);
  if (!session) {
    std::cerr << "nvmux-manage: " << name << ": " << session.error().message << "\n";
    return 1;
  }
  return run(**session);
}

int Main(int argc, char** argv) {
  CLI::App app{"nvmux-manage: manage nvmux controllers and groups (nvme-cli style)", "nvmux-manage"};
  app.require_subcommand(1);
  app.footer(
      "Examples:\n"
      "  nvmux-manage status -i 0 --json\n"
      "  nvmux-manage list -r 'trtype:vfiouser traddr:/tmp/nvmux-emu'\n"
      "  nvmux-manage smart-log -i 0\n"
      "  nvmux-manage create-ns -r 'trtype:vfiouser traddr:/tmp/nvmux-emu' --nsze 262144 --yes\n"
      "  nvmux-manage cleanup -i 0 --yes\n"
      "  nvmux-manage discover -r 'trtype:tcp traddr:127.0.0.1 trsvcid:4420'\n"
      "Controller subcommands take -r TRID (attach it here: only one process may hold a vfio-user controller, so\n"
      "with nvmuxd running use -i) or -i GROUP (as a secondary of nvmuxd; -r picks the controller, else the first).\n"
      "Destructive subcommands ask on a terminal; otherwise they need --yes.");
  Raw raw;
  std::map<std::string, CLI::App*> controller_subs;
  std::string run_dir;
  app.add_option("--run-dir", run_dir,
                 "where groups live: <DIR>/dpdk/nvmux<N> (default $NVMUX_RUN_DIR, else " +
                     std::string(shm::kDefaultRunDir) + "; the same for every user)")
      ->type_name("DIR");

  auto* status =
      app.add_subcommand("status", "a group's processes, controllers, queues, DMA memory and reaped processes");
  status->add_option("-i,--group,--shm-id", raw.group, "group id")->required();
  status->add_flag("--json", raw.json, "machine-readable output (one JSON line)");
  auto* discover = app.add_subcommand("discover", "an NVMe/TCP discovery service's log, like `nvme discover`");
  discover->add_option("-r,--trid", raw.trid, "discovery service, e.g. 'trtype:tcp traddr:127.0.0.1 trsvcid:4420' "
                                              "(subnqn: the discovery NQN, the default)")->required();
  discover->add_flag("--json", raw.json, "machine-readable output (one JSON line)");
  auto* cleanup =
      app.add_subcommand("cleanup", "remove a dead group's leftovers (refused while any of its processes lives)");
  cleanup->add_option("-i,--group,--shm-id", raw.group, "group id")->required();
  cleanup->add_flag("-y,--yes", raw.yes, "do it without asking");

  auto add = [&](const std::string& name, const std::string& help, Kind kind) {
    return controller_subs[name] = AddController(app, raw, name, help, kind);
  };
  add("list", "controllers and their namespaces, like `nvme list`", Kind::kReadOnly);
  auto* create = add("create-ns", "create a namespace (Namespace Management); prints its nsid", Kind::kDestructive);
  create->add_option("-s,--nsze", raw.nsze, "size in blocks")->required();
  create->add_option("-c,--ncap", raw.ncap, "capacity in blocks (default: nsze)");
  create->add_option("-f,--flbas", raw.flbas, "LBA format index, bit 4 extended metadata (default 0)");
  create->add_option("-d,--dps", raw.dps, "data protection settings (default 0)");
  create->add_option("-m,--nmic", raw.nmic, "multipath and sharing: 1 shared (default 0)");
  add("delete-ns", "delete a namespace", Kind::kDestructive)
      ->add_option("-n,--namespace-id", raw.nsid, "nsid")
      ->required();
  for (const char* name : {"attach-ns", "detach-ns"}) {
    auto* sub = add(
        name,
        std::string(name) == "attach-ns" ? "attach a namespace to controllers" : "detach a namespace from controllers",
        Kind::kDestructive);
    sub->add_option("-n,--namespace-id", raw.nsid, "nsid")->required();
    sub->add_option("-c,--controllers", raw.controllers, "CNTLID[,CNTLID...] (default: this controller)");
  }
  auto* format = add("format", "Format NVM: a new LBA format; the data is lost", Kind::kDestructive);
  format->add_option("-n,--namespace-id", raw.nsid, "nsid (0xffffffff: every namespace)")->required();
  format->add_option("-l,--lbaf", raw.lbaf, "LBA format index 0..15")->required();
  format->add_option("-s,--ses", raw.ses, "secure erase: 0 none, 1 user data, 2 cryptographic");
  format->add_option("--pi", raw.pi, "protection information type 0..3");
  format->add_option("-m,--ms", raw.ms, "1: metadata at the end of each block (extended LBA)");
  auto* getf = add("get-feature", "Get Features", Kind::kReadOnly);
  getf->add_option("-f,--feature-id", raw.fid, "feature id 0..255")->required();
  getf->add_option("-s,--sel", raw.sel, "0 current, 1 default, 2 saved, 3 supported capabilities");
  getf->add_option("--cdw11", raw.cdw11, "command dword 11");
  getf->add_option("-n,--namespace-id", raw.nsid, "nsid for namespace-specific features");
  getf->add_option("-l,--data-len", raw.data_len, "bytes of feature data to read (default: the feature's own)");
  auto* setf = add("set-feature", "Set Features", Kind::kDestructive);
  setf->add_option("-f,--feature-id", raw.fid, "feature id 0..255")->required();
  setf->add_option("-v,--value", raw.value, "command dword 11")->required();
  setf->add_option("--cdw12", raw.cdw12, "command dword 12");
  setf->add_option("-n,--namespace-id", raw.nsid, "nsid for namespace-specific features");
  setf->add_flag("--save", raw.save, "make it persist across resets (SV)");
  auto* getlog = add("get-log", "Get Log Page, as a hex dump", Kind::kReadOnly);
  getlog->add_option("--log-id", raw.log_id, "log page id 0..255")->required();
  getlog->add_option("-l,--log-len", raw.log_len, "bytes to read")->required();
  getlog->add_option("-n,--namespace-id", raw.nsid, "nsid (default 0xffffffff)");
  getlog->add_option("-o,--lpo", raw.lpo, "offset into the log page, a multiple of 4");
  add("smart-log", "SMART / Health Information log", Kind::kReadOnly)
      ->add_option("-n,--namespace-id", raw.nsid, "nsid (default 0xffffffff: the controller)");
  add("error-log", "Error Information log", Kind::kReadOnly)
      ->add_option("-e,--log-entries", raw.entries, "entries to read (default: the controller's ELPE + 1)");
  add("reset", "controller reset (standalone only)", Kind::kDestructive);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (!run_dir.empty()) {
    if (Status st = shm::SetRunDir(run_dir); !st) {
      std::cerr << "nvmux-manage: --run-dir: " << st.error().message << "\n";
      return 2;
    }
  }
  try {
    if (status->parsed() || cleanup->parsed()) {
      int id = static_cast<int>(Num("-i", raw.group, 0, shm::kMaxGroupId));
      return status->parsed() ? ShowStatus(id, raw.json) : Cleanup(id, raw.yes);
    }
    if (discover->parsed()) {
      Target t = ParseTarget(raw);
      auto log = ReadDiscoveryLog(*t.trid);
      if (!log) {
        std::cerr << "nvmux-manage: discover: " << log.error().message << "\n";
        return 1;
      }
      std::cout << (raw.json ? tools::DiscoveryLogJson(*log) + "\n" : tools::FormatDiscoveryLog(*log));
      return 0;
    }
    for (const auto& [name, sub] : controller_subs)
      if (sub->parsed()) return RunController(name, raw);
  } catch (const BadValue& bad) {
    std::cerr << "nvmux-manage: " << bad.message << "\n";
    return 1;
  }
  return 2;
}

}  // namespace
}  // namespace nvmux::manage

int main(int argc, char** argv) { return nvmux::manage::Main(argc, argv); }
