// Prober and ProbeContext (nvmux/probe.h): the registry of attached
// controllers, the scan, and the attaches stepped one call at a time.
#include "nvmux/probe.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <atomic>
#include <optional>
#include <string>
#include <thread>

#include "libclient/core/controller_attach.h"
#include "libclient/core/controller_state.h"
#include "libclient/open_transport.h"
#include "libclient/pcie/pci_sysfs.h"
#include "libclient/shared/shared_registry.h"
#include "nvmux/discovery.h"
#include "shm/base/clock.h"
#include "shm/base/log.h"

namespace nvmux {

// ---- the registry ----

struct Prober::Registry {
  explicit Registry(Env& e) : env(e) {}

  struct Known {
    std::string key;                    // trid.ToString()
    TransportId trid;
    Controller* ctrlr = nullptr;        // null while an attach is in progress
    std::weak_ptr<int> alive;           // expires when the application destroys it
    SharedController* entry = nullptr;  // secondary: the group entry it imported
    uint32_t attach_generation = 0;
  };

  Env& env;
  std::vector<Known> known;

  Known* Find(const std::string& key) {
    for (Known& k : known)
      if (k.key == key) return &k;
    return nullptr;
  }
  void Forget(const std::string& key) {
    std::erase_if(known, [&](const Known& k) { return k.key == key; });
  }
  // Drops controllers the application destroyed (their `alive` expired).
  void DropDestroyed() {
    std::erase_if(known, [](const Known& k) { return k.ctrlr != nullptr && k.alive.expired(); });
  }
  void Remember(Controller& ctrlr) {
    ControllerState& s = ctrlr.state();
    Known k;
    k.key = ctrlr.trid().ToString();
    k.trid = ctrlr.trid();
    k.ctrlr = &ctrlr;
    k.alive = s.alive;
    if (s.shared != nullptr && !s.owns_device) {
      k.entry = s.shared;
      k.attach_generation = std::atomic_ref<uint32_t>(s.shared->attach_generation).load(std::memory_order_acquire);
    }
    Forget(k.key);
    known.push_back(std::move(k));
  }
};

namespace {

bool IsSecondary(Env& env) { return env.role() == Role::kSecondary; }

// Does the probe's `filter` name the controller `trid`? A secondary's filter
// without traddr names every controller of its trtype.
// No filter: every controller (a secondary's probe with no transport id).
bool Matches(Env& env, const std::optional<TransportId>& filter, const TransportId& trid) {
  if (!filter) return IsSecondary(env);
  // An id without traddr enumerates (a secondary: its primary's controllers
  // of that type; anyone: 'trtype:pcie', every bound controller), so it
  // names each controller it found: their removals are its to report.
  if (filter->traddr.empty() && (IsSecondary(env) || filter->trtype == TransportType::kPcie))
    return filter->trtype == trid.trtype;
  return filter->Key() == trid.Key();
}

// Every NVMe controller bound to a userspace driver (vfio-pci,
// uio_pci_generic), limited by the Env's pci_allowed, else by SPDK's
// PCI_ALLOWED when set; `filter` (a trtype:pcie id without traddr) gives
// the other fields (ns, hostnqn).
Result<std::vector<TransportId>> EnumeratePcie(Env& env, const TransportId& filter) {
  std::vector<std::string> allowed = env.pci_allowed();
  if (const char* list = std::getenv("PCI_ALLOWED"); allowed.empty() && list != nullptr) {
    auto parsed = pcie::ParseAllowList(list);
    if (!parsed) return parsed.error();
    allowed = std::move(*parsed);
  }
  std::vector<TransportId> out;
  for (const std::string& bdf : pcie::UserspaceNvmeAddresses(pcie::kSysfsPciDevices, allowed)) {
    TransportId trid = filter;
    trid.traddr = bdf;
    out.push_back(trid);
  }
  return out;
}

// Where the allow list of a pcie enumeration came from, for messages.
std::string AllowListSource(Env& env) {
  if (!env.pci_allowed().empty()) return " among EnvOptions::pci_allowed";
  return std::getenv("PCI_ALLOWED") != nullptr ? " among PCI_ALLOWED" : "";
}

// The group's published, live entries as transport ids.
Result<std::vector<TransportId>> PublishedTrids(Env& env) {
  std::vector<TransportId> out;
  auto published = PublishedControllers(env.group());
  if (!published) {
    if (published.error().code == ENOENT) return out;  // nothing published yet
    return published.error();
  }
  for (SharedController* c : *published) {
    if (std::atomic_ref<uint32_t>(c->removed).load(std::memory_order_acquire) != 0 ||
        std::atomic_ref<uint32_t>(c->failed).load(std::memory_order_acquire) != 0)
      continue;  // on its way out: the primary retires it
    auto trid = TransportId::Parse(c->trid);
    if (!trid) {
      NVMUX_LOG(kWarning, "probe: the group publishes an unparsable transport id '%s': %s", c->trid,
                trid.error().message.c_str());
      continue;
    }
    out.push_back(*trid);
  }
  return out;
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Is the known controller's device gone? Marks it failed (and removed)
// when the probe is the first to notice, so its queue pairs fail with ENXIO.
bool Gone(Env& env, const Prober::Registry::Known& k) {
  ControllerState& s = k.ctrlr->state();
  if (s.failed || s.removed) return true;
  if (IsSecondary(env)) {
    if (k.entry != nullptr && SharedControllerGone(*k.entry, k.attach_generation)) {
      s.removed = true;
      s.Fail("the group's primary withdrew the controller (detached, removed or failed)");
      return true;
    }
  } else if ((k.trid.trtype == TransportType::kVfioUser && !PathExists(k.trid.traddr + "/cntrl")) ||
             (k.trid.trtype == TransportType::kPcie &&
              !PathExists(std::string(pcie::kSysfsPciDevices) + "/" + k.trid.traddr))) {
    s.removed = true;
    s.Fail(k.trid.trtype == TransportType::kPcie
               ? "its PCI function " + k.trid.traddr + " no longer exists (hot removal)"
               : "its vfio-user socket " + k.trid.traddr + "/cntrl no longer exists");
    if (s.shared != nullptr && s.owns_device)
      std::atomic_ref<uint32_t>(s.shared->removed).store(1, std::memory_order_release);
    return true;
  }
  // The health check now, not at its next 10 ms slot: CSTS, the link.
  s.next_health_check_ns.store(0, std::memory_order_relaxed);
  return !s.CheckHealth(MonotonicNanos());
}

}  // namespace

// ---- the context ----

struct ProbeContext::Impl {
  struct Attempt {
    TransportId trid;
    ControllerOptions options;
    std::unique_ptr<ControllerAttach> attach;  // null until the transport is open
  };

  std::shared_ptr<Prober::Registry> registry;
  bool one_shot = false;  // no registry semantics (the free ProbeAsync)
  std::optional<TransportId> filter;  // none: every controller of the group
  ProbeFn probe;
  AttachFn attach;
  RemoveFn remove;

  bool scanned = false;
  bool finished = false;
  std::optional<Error> first_error;
  std::vector<Attempt> attempts;
  std::vector<std::unique_ptr<Controller>> attached;

  Env& env() { return registry->env; }
  void Record(const TransportId& trid, const Error& e) {
    NVMUX_LOG(kNotice, "probe: attaching %s failed: %s", trid.ToString().c_str(), e.message.c_str());
    if (!first_error) first_error = e;
  }
  Status Scan();
  void Candidate(const TransportId& trid);
  void Advance(Attempt& a, bool& finished_one);
  Status Outcome() const { return first_error ? Status(*first_error) : Ok(); }
};

void ProbeContext::Impl::Candidate(const TransportId& trid) {
  std::string key = trid.ToString();
  if (!one_shot && registry->Find(key) != nullptr) return;  // attached, or attaching elsewhere
  ControllerOptions options;
  if (probe && !probe(trid, options)) return;
  if (!one_shot) {
    Prober::Registry::Known k;
    k.key = key;
    k.trid = trid;
    registry->known.push_back(std::move(k));  // attaching: other probes skip it
  }
  attempts.push_back(Attempt{trid, options, nullptr});
}

Status ProbeContext::Impl::Scan() {
  Env& e = env();
  if (!one_shot) {
    // 1. Removals among the known controllers this probe names.
    registry->DropDestroyed();
    std::vector<Prober::Registry::Known> gone;
    for (const Prober::Registry::Known& k : registry->known)
      if (k.ctrlr != nullptr && Matches(e, filter, k.trid) && Gone(e, k)) gone.push_back(k);
    for (const Prober::Registry::Known& k : gone) {
      registry->Forget(k.key);
      NVMUX_LOG(kNotice, "probe: %s is gone", k.key.c_str());
      if (remove) remove(k.trid, *k.ctrlr);
    }
  }
  // 2. What the filter names now.
  if (!IsSecondary(e)) {
    if (!filter)
      return Fail(EINVAL, "probe without a transport id: only a group's secondary can enumerate (its primary's "
                          "controllers); name the controller, e.g. 'trtype:vfiouser traddr:DIR'");
    if (filter->traddr.empty() && filter->trtype == TransportType::kPcie) {
      auto found = EnumeratePcie(e, *filter);
      if (!found) return found.error();
      if (found->empty())
        return Fail(ENODEV, "probe 'trtype:pcie': no NVMe controller is bound to vfio-pci or uio_pci_generic" +
                                AllowListSource(e) +
                                " (bind them with `scripts/setup.sh config`)");
      for (const TransportId& trid : *found) Candidate(trid);
      return Ok();
    }
    if (filter->traddr.empty())
      return Fail(EINVAL, "probe '" + filter->ToString() + "': traddr is required outside a group's secondary "
                          "(nothing to enumerate for trtype " + ToString(filter->trtype) + ")");
    if (IsDiscoveryTrid(*filter)) {
      // A discovery service: each NVM subsystem its log lists is a candidate.
      auto log = ReadDiscoveryLog(*filter);
      if (!log) return log.error();
      for (const DiscoveryEntry& d : log->entries)
        if (d.nvm_subsystem() && d.trid_ok) Candidate(d.trid);
      return Ok();
    }
    Candidate(*filter);
    return Ok();
  }
  auto published = PublishedTrids(e);
  if (!published) return published.error();
  for (const TransportId& trid : *published)
    if (Matches(e, filter, trid)) Candidate(trid);
  return Ok();
}

void ProbeContext::Impl::Advance(Attempt& a, bool& finished_one) {
  finished_one = false;
  if (!a.attach) {
    auto transport = OpenForRole(env(), a.trid, a.options);
    if (!transport) {
      Record(a.trid, transport.error());
      finished_one = true;
      return;
    }
    a.attach = std::make_unique<ControllerAttach>(env(), a.trid, std::move(*transport), a.options, RoleOf(env()));
    return;
  }
  AttachState s = a.attach->Step();
  if (s == AttachState::kFailed) {
    Record(a.trid, a.attach->error());
    finished_one = true;
  } else if (s == AttachState::kReady) {
    std::unique_ptr<Controller> ctrlr = a.attach->Take();
    if (!one_shot) registry->Remember(*ctrlr);
    if (attach) attach(a.trid, *ctrlr);
    attached.push_back(std::move(ctrlr));
    finished_one = true;
  }
}

ProbeContext::ProbeContext(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ProbeContext::~ProbeContext() {
  // Attaches still in progress are abandoned (their controllers detached);
  // the registry forgets them so a later probe tries again.
  if (!impl_->one_shot)
    for (const Impl::Attempt& a : impl_->attempts) {
      Prober::Registry::Known* k = impl_->registry->Find(a.trid.ToString());
      if (k != nullptr && k->ctrlr == nullptr) impl_->registry->Forget(a.trid.ToString());
    }
}

bool ProbeContext::done() const { return impl_->finished; }

Status ProbeContext::Poll() {
  Impl& m = *impl_;
  if (m.finished) return m.Outcome();
  if (!m.scanned) {
    m.scanned = true;
    Status st = m.Scan();
    if (!st) {
      m.first_error = st.error();
      for (const Impl::Attempt& a : m.attempts)
        if (!m.one_shot) m.registry->Forget(a.trid.ToString());
      m.attempts.clear();
    }
  } else {
    for (size_t i = 0; i < m.attempts.size();) {
      bool finished_one = false;
      m.Advance(m.attempts[i], finished_one);
      if (!finished_one) {
        ++i;
        continue;
      }
      std::string key = m.attempts[i].trid.ToString();
      if (!m.one_shot) {
        Prober::Registry::Known* k = m.registry->Find(key);
        if (k != nullptr && k->ctrlr == nullptr) m.registry->Forget(key);  // failed: try again next probe
      }
      m.attempts.erase(m.attempts.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
  if (!m.attempts.empty()) return Fail(EAGAIN, "probe in progress: " + std::to_string(m.attempts.size()) +
                                                   " controller(s) attaching");
  m.finished = true;
  return m.Outcome();
}

std::vector<std::unique_ptr<Controller>> ProbeContext::TakeAttached() { return std::move(impl_->attached); }

// ---- Prober ----

Prober::Prober(Env& env) : registry_(std::make_shared<Registry>(env)) {}
Prober::~Prober() = default;

std::unique_ptr<ProbeContext> Prober::ProbeAsync(const TransportId& trid, ProbeFn probe, AttachFn attach,
                                                 RemoveFn remove) {
  auto impl = std::make_unique<ProbeContext::Impl>();
  impl->registry = registry_;
  impl->filter = trid;
  impl->probe = std::move(probe);
  impl->attach = std::move(attach);
  impl->remove = std::move(remove);
  return std::unique_ptr<ProbeContext>(new ProbeContext(std::move(impl)));
}

std::unique_ptr<ProbeContext> Prober::ProbeAsync(ProbeFn probe, AttachFn attach, RemoveFn remove) {
  std::unique_ptr<ProbeContext> ctx = ProbeAsync(TransportId{}, std::move(probe), std::move(attach), std::move(remove));
  ctx->impl_->filter.reset();
  return ctx;
}

Result<std::vector<std::unique_ptr<Controller>>> Prober::Probe(const TransportId& trid, const ProbeFn& probe,
                                                               const AttachFn& attach, const RemoveFn& remove) {
  return PollToEnd(ProbeAsync(trid, probe, attach, remove));
}

Result<std::vector<std::unique_ptr<Controller>>> Prober::Probe(const ProbeFn& probe, const AttachFn& attach,
                                                               const RemoveFn& remove) {
  return PollToEnd(ProbeAsync(probe, attach, remove));
}

Result<std::vector<std::unique_ptr<Controller>>> Prober::PollToEnd(std::unique_ptr<ProbeContext> ctx) {
  Status st = ctx->Poll();
  while (!ctx->done()) {
    std::this_thread::yield();
    st = ctx->Poll();
  }
  std::vector<std::unique_ptr<Controller>> attached = ctx->TakeAttached();
  if (!st && attached.empty()) return st.error();
  return attached;
}

void Prober::Adopt(Controller& ctrlr) { registry_->Remember(ctrlr); }

size_t Prober::known() {
  registry_->DropDestroyed();
  return registry_->known.size();
}

Result<std::vector<TransportId>> GroupControllers(Env& env) {
  if (!IsSecondary(env))
    return Fail(EINVAL, "finding a group's controllers needs a group's secondary (Env with a group id); "
                        "otherwise name the controller with its transport id");
  auto trids = PublishedTrids(env);
  if (!trids) return trids.error();
  if (trids->empty()) {
    std::string g = std::to_string(env.group_id().value_or(0));
    return Fail(ENOENT, "group " + g + " has no controllers: start nvmuxd -i " + g +
                            " with -r TRID (for example -r 'trtype:vfiouser traddr:DIR' of an nvmux-emu --socket DIR)");
  }
  return trids;
}

std::unique_ptr<ProbeContext> ProbeAsync(Env& env, const TransportId& trid, ProbeFn probe, AttachFn attach) {
  auto impl = std::make_unique<ProbeContext::Impl>();
  impl->registry = std::make_shared<Prober::Registry>(env);
  impl->one_shot = true;
  impl->filter = trid;
  impl->probe = std::move(probe);
  impl->attach = std::move(attach);
  return std::unique_ptr<ProbeContext>(new ProbeContext(std::move(impl)));
}

}  // namespace nvmux
