#include "primary/hotplug.h"

#include <algorithm>
#include <cstdio>

#include "shm/base/log.h"

namespace nvmux::primary {

Hotplug::Hotplug(Env& env, std::vector<TransportId> trids, std::vector<std::unique_ptr<Controller>>& controllers,
                 Nanos period)
    : env_(env), trids_(std::move(trids)), controllers_(controllers), period_(period), prober_(env) {
  for (auto& c : controllers_) prober_.Adopt(*c);
  next_probe_ns_ = MonotonicNanos() + period_.count();
}

Hotplug::~Hotplug() = default;

void Hotplug::StartProbes(int64_t now_ns) {
  next_probe_ns_ = now_ns + period_.count();
  for (const TransportId& trid : trids_) {
    auto remove = [this](const TransportId& t, Controller& ctrlr) {
      std::printf("nvmuxd: hotplug: removed %s (%s)\n", t.ToString().c_str(),
                  ctrlr.removed() ? "device gone" : "controller failed");
      std::fflush(stdout);
      gone_.push_back(&ctrlr);
    };
    auto options = [this](const TransportId&, ControllerOptions& o) {
      o = options_;
      return true;
    };
    probing_.push_back(Probing{trid, prober_.ProbeAsync(trid, options, nullptr, remove)});
  }
}

void Hotplug::Finish(const TransportId& trid, Status result, ProbeContext& ctx) {
  std::string key = trid.ToString();
  for (auto& c : ctx.TakeAttached()) {
    // The controller's own id: an enumerating trid ('trtype:pcie') finds several.
    std::printf("nvmuxd: hotplug: attached %s (%zu namespace(s))\n", c->trid().ToString().c_str(),
                c->active_namespaces().size());
    std::fflush(stdout);
    ++attached_;
    absent_[key] = false;
    controllers_.push_back(std::move(c));
  }
  if (!result) {
    // Nothing there (yet): said once, then quietly retried every period.
    if (!absent_[key])
      NVMUX_LOG(kWarning, "nvmuxd: %s is not attached (%s); retrying every %lld ms", key.c_str(),
                result.error().message.c_str(), static_cast<long long>(period_.count() / 1'000'000));
    absent_[key] = true;
  }
}

void Hotplug::Stop() {
  stopped_ = true;
  probing_.clear();
  gone_.clear();
}

void Hotplug::Poll(int64_t now_ns) {
  if (stopped_) return;
  if (probing_.empty()) {
    bool failed = std::any_of(controllers_.begin(), controllers_.end(), [](auto& c) { return c->failed(); });
    if (!failed && now_ns < next_probe_ns_) return;
    StartProbes(now_ns);
  }
  for (size_t i = 0; i < probing_.size();) {
    Status st = probing_[i].ctx->Poll();
    if (!probing_[i].ctx->done()) {
      ++i;
      continue;
    }
    Finish(probing_[i].trid, st, *probing_[i].ctx);
    probing_.erase(probing_.begin() + static_cast<std::ptrdiff_t>(i));
  }
  // Detach what went away: the group entry is retired (secondaries see it
  // gone); a failed controller gets no shutdown notification, so this does
  // not wait on the device.
  for (Controller* gone : gone_) {
    auto it = std::find_if(controllers_.begin(), controllers_.end(), [&](auto& c) { return c.get() == gone; });
    if (it == controllers_.end()) continue;
    controllers_.erase(it);
    ++removed_;
  }
  gone_.clear();
}

}  // namespace nvmux::primary
