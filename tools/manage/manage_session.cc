#include "tools/manage/manage_session.h"

#include <iostream>

#include "nvmux/probe.h"
#include "tools/manage/manage_output.h"

namespace nvmux::manage {

Result<std::unique_ptr<Session>> Session::Open(const Target& target, bool all) {
  if (!target.group && !target.trid)
    return Fail(EINVAL,
                "which controller? give -r TRID (attach it here) or -i GROUP (a controller of nvmuxd -i GROUP)");
  std::unique_ptr<Session> s(new Session());
  EnvOptions options;
  options.name = "nvmux-manage";
  options.group_id = target.group;
  auto env = Env::Init(options);
  if (!env) return env.error();
  s->env_ = std::move(*env);

  std::vector<TransportId> trids;
  if (target.trid) {
    trids.push_back(*target.trid);
  } else {
    // The controllers nvmuxd published.
    auto published = GroupControllers(*s->env_);
    if (!published) return Fail(published.error().code, "-i " + std::to_string(*target.group) + ": " +
                                                            published.error().message);
    trids = std::move(*published);
    if (!all) trids.resize(1);
  }
  for (const TransportId& trid : trids) {
    auto ctrlr = Controller::Connect(*s->env_, trid);
    if (!ctrlr) {
      std::string hint;
      // The usual cause of a connection the server drops at once.
      if (!target.group && trid.trtype == TransportType::kVfioUser && ctrlr.error().code != ENOENT &&
          ctrlr.error().code != ECONNREFUSED)
        hint = " (a vfio-user controller serves one process at a time: if nvmuxd holds it, use -i GROUP)";
      return Fail(ctrlr.error().code, "-r '" + trid.ToString() + "': " + ctrlr.error().message + hint);
    }
    s->controllers_.push_back(std::move(*ctrlr));
  }
  return s;
}

Session::~Session() {
  controllers_.clear();  // before the Env they borrow
  env_.reset();
}

int ReportFailure(const std::string& subcommand, const Error& error, const Controller& ctrlr) {
  if (error.code == EIO && IsError(ctrlr.LastAdminCompletion())) {
    std::cerr << "nvmux-manage: " << subcommand
              << ": NVMe status: " << CompletionStatusText(ctrlr.LastAdminCompletion()) << "\n";
  } else {
    std::cerr << "nvmux-manage: " << subcommand << ": " << error.message << "\n";
  }
  return 1;
}

}  // namespace nvmux::manage
