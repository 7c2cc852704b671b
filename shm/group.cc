#include "shm/group.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <thread>

#include "nvmux/version.h"
#include "shm/base/log.h"
#include "shm/base/scope_guard.h"
#include "shm/dpdk_lock_doctor.h"
#include "shm/group_access.h"

namespace nvmux::shm {
namespace {

constexpr char kSegmentZone[] = "nvmux.segment";
constexpr char kProcessTable[] = "nvmux.process_table";
constexpr char kDmaTable[] = "nvmux.dma_table";

std::string G(int id) { return "group " + std::to_string(id); }

std::string VersionText(uint32_t number) {
  return std::to_string(number >> 16) + "." + std::to_string((number >> 8) & 0xFF) + "." + std::to_string(number & 0xFF);
}

// "nvmux 0.1.0 (ABI 2)": the release and shared-memory ABI a lock file's
// primary was built with.
std::string Release(const LockFileHeader& h) {
  std::string release = h.nvmux_version == 0 ? "an nvmux release before 0.1.0" : "nvmux " + VersionText(h.nvmux_version);
  return release + " (ABI " + std::to_string(h.abi_version) + ")";
}
std::string ThisRelease(uint32_t abi) {
  return "nvmux " + VersionText(NVMUX_VERSION_NUMBER) + " (ABI " + std::to_string(abi) + ")";
}

// The group this process is a member of (-1: none). Opening and closing the
// group's lock file from a member would drop its POSIX locks, so the
// outside-view helpers refuse to run on it.
int g_member_group = -1;

Status NotFromAMember(int group_id) {
  if (g_member_group == group_id)
    return Fail(EBUSY, "this process is a member of " + G(group_id) +
                           ": inspect or clean a group only from outside it");
  return Ok();
}

}  // namespace

Result<GroupProbe> ProbeGroup(int group_id) {
  auto paths = GroupPaths::For(group_id);
  if (!paths) return paths.error();
  NVMUX_TRY(NotFromAMember(group_id));
  GroupProbe probe;
  probe.where = paths->runtime_dir;
  GroupFiles scan = ScanGroupFiles(*paths);
  probe.files = scan.files;
  // Read-only: the lock queries need no more, so a user who may only read
  // the group still gets a true answer.
  auto lf = GroupLockFile::OpenForProbe(paths->lock_file);
  if (lf) {
    probe.primary = lf->PrimaryHolder();
    probe.member = lf->OtherLiveMember();
    probe.state = (probe.primary || probe.member) ? GroupProbe::State::kLive : GroupProbe::State::kStale;
    return probe;
  }
  if (lf.error().code != ENODEV) {
    probe.state = GroupProbe::State::kUnknown;
    probe.reason = lf.error().message;
    if (std::string why = DescribeAccess(paths->runtime_dir); !why.empty()) probe.reason += " (" + why + ")";
    return probe;
  }
  // No lock file: no live member can be without one (each holds locks on it).
  if (!scan.errors.empty()) {
    probe.state = GroupProbe::State::kUnknown;
    for (const std::string& e : scan.errors) probe.reason += (probe.reason.empty() ? "" : "; ") + e;
    return probe;
  }
  probe.state = probe.files.empty() ? GroupProbe::State::kAbsent : GroupProbe::State::kStale;
  return probe;
}

Result<std::vector<std::string>> CleanStaleGroup(int group_id) {
  auto paths = GroupPaths::For(group_id);
  if (!paths) return paths.error();
  NVMUX_TRY(NotFromAMember(group_id));
  auto probe = ProbeGroup(group_id);
  if (!probe) return probe.error();
  if (probe->state == GroupProbe::State::kUnknown)
    return Fail(EACCES, "cannot prove " + G(group_id) + " dead: " + probe->reason +
                            "; run the cleanup as the group's owner or as root");
  if (probe->state == GroupProbe::State::kAbsent) return std::vector<std::string>{};  // nothing to take a lock on
  NVMUX_TRY(CheckCanRemove(*paths));
  // Hold the primary role while cleaning, so no primary starts meanwhile.
  auto lf = GroupLockFile::Open(paths->lock_file, true);
  if (!lf) return lf.error();
  Status role = lf->LockPrimaryRole();
  if (!role) return Fail(EBUSY, G(group_id) + " is alive: " + role.error().message);
  if (auto member = lf->OtherLiveMember())
    return Fail(EBUSY, G(group_id) + " is alive: process " + std::to_string(*member) + " is attached");
  return RemoveGroupFiles(*paths, false);
}

Result<std::unique_ptr<Group>> Group::Open(const GroupOptions& options) {
  std::unique_ptr<Group> g(new Group());
  Status st = !options.group_id ? g->OpenStandalone(options)
              : options.create  ? g->OpenPrimary(options)
                                : g->OpenSecondary(options);
  if (!st) return st.error();  // ~Group undoes whatever was done
  return g;
}

Status Group::OpenLockFile(ProcessRole role, int id) {
  role_ = role;
  id_ = id;
  auto paths = GroupPaths::For(id_);
  if (!paths) return paths.error();
  paths_ = *paths;
  bool primary = role == ProcessRole::kPrimary;
  // Before touching anything: a group of another user is refused here,
  // naming its owner and mode, not by whatever DPDK would trip over later.
  NVMUX_TRY(CheckGroupAccess(*paths_));
  auto lf = GroupLockFile::Open(paths_->lock_file, primary);
  if (!lf && lf.error().code == ENODEV)
    return Fail(ENODEV, "no primary is running for " + G(id_) + " (no " + paths_->lock_file +
                            "): start `nvmuxd -i " + std::to_string(id_) + "` first");
  if (!lf) return Fail(lf.error().code, G(id_) + ": " + lf.error().message);
  lock_file_ = std::make_unique<GroupLockFile>(std::move(*lf));
  return Ok();
}

Status Group::StartEal(const GroupOptions& o, EalProcType type, const std::string& prefix) {
  // From here on this process may hold DPDK's shared locks: nvmux code that
  // holds one for long says so on the lock file (see dpdk_lock_doctor.h).
  if (lock_file_) DpdkSection::Bind(lock_file_->fd());
  auto pa = PciNeedsPhysicalAddresses();
  if (!pa) return pa.error();
  EalOptions eal;
  eal.program_name = o.name;
  eal.file_prefix = prefix;
  eal.proc_type = type;
  eal.cores = o.cores;
  eal.mem_mb = type == EalProcType::kSecondary ? 0 : o.mem_mb;
  eal.run_dir = paths_ ? paths_->run_dir : standalone_run_dir_;
  eal.iova_pa = *pa;
  Status up = InitEal(eal);
  if (!up) return Fail(up.error().code, (id_ >= 0 ? G(id_) + ": " : "") + up.error().message);
  eal_up_ = true;
  return Ok();
}

Status Group::CreateSegment(const GroupOptions& o) {
  auto base = ReserveMemzone(kSegmentZone, o.segment_bytes);
  if (!base) return base.error();
  auto seg = Segment::Create(*base, o.segment_bytes, id_, o.abi_version);
  if (!seg) return seg.error();
  segment_ = std::move(*seg);
  NVMUX_TRY(Finish(o));
  segment_->Publish();
  return Ok();
}

Status Group::OpenPrimary(const GroupOptions& o) {
  if (o.max_processes < 1 || o.max_processes > kMaxProcesses)
    return Fail(EINVAL, "bad --max-processes " + std::to_string(o.max_processes) + ": allowed 1.." +
                            std::to_string(kMaxProcesses));
  // The lock file may be unlinked by a cleaner between open and lock; a lock
  // on an unlinked file protects nothing, so retry on the one at the path.
  for (int attempt = 0;; ++attempt) {
    NVMUX_TRY(OpenLockFile(ProcessRole::kPrimary, *o.group_id));
    Status role = lock_file_->LockPrimaryRole();
    if (!role) {
      lock_file_.reset();
      return Fail(role.error().code, G(id_) + ": " + role.error().message + "; stop it first or pick another -i");
    }
    if (lock_file_->StillAtPath(paths_->lock_file)) break;
    lock_file_.reset();
    if (attempt == 3) return Fail(EAGAIN, G(id_) + ": its lock file keeps being replaced; is a cleanup running?");
  }
  if (StatusReadable()) {
    Status readable = MakeStatusReadable(*paths_);
    if (!readable) return Fail(readable.error().code, G(id_) + ": --status-readable: " + readable.error().message);
  }
  if (o.access_gid) {
    access_gid_ = o.access_gid;
    Status shared = ShareGroupDirectory(*paths_, *o.access_gid);
    if (!shared) return Fail(shared.error().code, G(id_) + ": --access-group: " + shared.error().message);
  }
  // Withdraw a dead primary's ready flag before looking for members: a
  // secondary joins first and reads the flag second, so one of us sees the other.
  ProcessIdentity self = SelfIdentity();
  auto previous = lock_file_->ReadHeader();
  NVMUX_TRY(lock_file_->WriteHeader(LockFileHeader{{}, o.abi_version, self.pid, self.start_time, 0, NVMUX_VERSION_NUMBER}));
  if (auto member = lock_file_->OtherLiveMember()) {
    if (previous && previous->abi_version != o.abi_version)
      return Fail(EPROTONOSUPPORT, G(id_) + " was created by " + Release(*previous) + "; this primary is " +
                                       ThisRelease(o.abi_version) + ": it cannot take the group over");
    return TakeOver(o, *member, previous ? previous->primary_pid : 0);
  }
  std::vector<std::string> stale = ListGroupFiles(*paths_);
  std::erase(stale, paths_->lock_file);
  if (!stale.empty()) {
    auto removed = RemoveGroupFiles(*paths_, true);
    NVMUX_LOG(kWarning, "%s: removed the leftovers of a dead group: %s under %s and the hugetlbfs mount(s)",
              G(id_).c_str(), SummariseFiles(removed).c_str(), paths_->runtime_dir.c_str());
  }
  NVMUX_TRY(lock_file_->JoinMembership());
  became_primary_ = true;
  NVMUX_TRY(StartEal(o, EalProcType::kPrimary, paths_->prefix));
  SaveDpdkLockMap();
  NVMUX_TRY(CreateSegment(o));
  // Before the ready flag: a member of the access group may join from then on.
  NVMUX_TRY(ShareFiles());
  NVMUX_TRY(lock_file_->WriteHeader(LockFileHeader{{}, o.abi_version, self.pid, self.start_time, 1, NVMUX_VERSION_NUMBER}));
  g_member_group = id_;
  return Ok();
}

std::string Group::LockMapPath() const { return paths_->runtime_dir + "/nvmux_dpdk_locks"; }

// Where DPDK's lock words are, for a later takeover (dpdk_lock_doctor.h).
// Best effort: without the map a takeover only loses that safety net.
void Group::SaveDpdkLockMap() {
  auto doctor = DpdkLockDoctor::Create();
  Status saved = doctor ? doctor->SaveLockMap(LockMapPath()) : Status(Ok());
  const Error* why = !doctor ? &doctor.error() : !saved ? &saved.error() : nullptr;
  if (why != nullptr)
    NVMUX_LOG(kNotice, "%s: DPDK's lock map not saved (a takeover cannot repair DPDK's locks): %s", G(id_).c_str(),
              why->ToString().c_str());
}

Status Group::ShareFiles() {
  if (!access_gid_ || !paths_) return Ok();
  Status st = ShareGroupFiles(*paths_, *access_gid_);
  if (!st) return Fail(st.error().code, G(id_) + ": --access-group: " + st.error().message);
  return Ok();
}

// The primary died and members live on: join as DPDK's secondary (DPDK's
// primary state cannot be re-created under running processes), find the
// tables instead of creating them, register in the primary role and raise
// the ready flag. The reaper then cleans the dead primary's slot.
Status Group::TakeOver(const GroupOptions& o, pid_t member, pid_t dead_primary) {
  NVMUX_TRY(lock_file_->JoinMembership());
  became_primary_ = true;
  took_over_ = true;
  dead_primary_ = dead_primary;
  NVMUX_LOG(kNotice, "%s: taking over from its dead primary (pid %d); process %d and maybe others are attached",
            G(id_).c_str(), static_cast<int>(dead_primary), static_cast<int>(member));
  if (o.mem_mb != 0)
    NVMUX_LOG(kInfo, "%s: no preallocation when taking a group over (its memory exists)", G(id_).c_str());
  // DPDK's primary is gone and no doctor runs: a lock word a killed process
  // left held would hang our rte_eal_init (dpdk_lock_doctor.h).
  DpdkSection::Bind(lock_file_->fd());
  auto repaired = DpdkLockDoctor::RepairBeforeJoin(paths_->runtime_dir + "/config", LockMapPath());
  if (!repaired)
    NVMUX_LOG(kWarning, "%s: cannot check DPDK's locks before joining: %s", G(id_).c_str(),
              repaired.error().ToString().c_str());
  Status up = StartEal(o, EalProcType::kSecondary, paths_->prefix);
  if (!up)
    return Fail(up.error().code, "taking over " + G(id_) + ": joining its DPDK memory: " + up.error().message);
  NVMUX_TRY(AttachSegment(o));
  NVMUX_TRY(Finish(o));
  NVMUX_TRY(ShareFiles());
  ProcessIdentity self = SelfIdentity();
  NVMUX_TRY(lock_file_->WriteHeader(LockFileHeader{{}, o.abi_version, self.pid, self.start_time, 1, NVMUX_VERSION_NUMBER}));
  g_member_group = id_;
  return Ok();
}

Status Group::OpenSecondary(const GroupOptions& o) {
  NVMUX_TRY(OpenLockFile(ProcessRole::kSecondary, *o.group_id));
  // Join first, read the primary's ready flag second (see OpenPrimary).
  NVMUX_TRY(lock_file_->JoinMembership());
  if (!lock_file_->StillAtPath(paths_->lock_file))
    return Fail(ENODEV, G(id_) + " was removed while this process was joining it: start `nvmuxd -i " +
                            std::to_string(id_) + "` first");
  int64_t deadline = MonotonicNanos() + o.ready_timeout.count();
  for (;;) {
    auto holder = lock_file_->PrimaryHolder();
    if (!holder) {
      if (auto other = lock_file_->OtherLiveMember())
        return Fail(ENODEV, "the primary of " + G(id_) + " is not running (process " + std::to_string(*other) +
                                " is still attached): start `nvmuxd -i " + std::to_string(id_) +
                                "`, which takes the running group over, then join");
      return Fail(ENODEV, "the primary of " + G(id_) + " is not running (a dead group left " +
                              SummariseFiles(ListGroupFiles(*paths_)) + "): start `nvmuxd -i " + std::to_string(id_) +
                              "` (it cleans up) or run `nvmux-manage cleanup -i " + std::to_string(id_) + "`");
    }
    auto header = lock_file_->ReadHeader();
    if (header && header->abi_version != o.abi_version)
      return Fail(EPROTONOSUPPORT, G(id_) + " was created by " + Release(*header) + "; this process is " +
                                       ThisRelease(o.abi_version) + ": run the same nvmux release in every process");
    // Ready, and written by the primary holding the role now (not a dead one's
    // flag); a holder in another pid namespace reads as pid 0.
    if (header && header->ready == 1 && (*holder == 0 || header->primary_pid == *holder)) break;
    if (MonotonicNanos() >= deadline)
      return Fail(ETIMEDOUT, "the primary of " + G(id_) + " (pid " + std::to_string(*holder) +
                                 ") did not become ready within " +
                                 std::to_string(o.ready_timeout.count() / 1'000'000) + " ms");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  NVMUX_TRY(StartEal(o, EalProcType::kSecondary, paths_->prefix));
  NVMUX_TRY(AttachSegment(o));
  NVMUX_TRY(Finish(o));
  g_member_group = id_;
  return Ok();
}

Status Group::OpenStandalone(const GroupOptions& o) {
  role_ = ProcessRole::kStandalone;
  // Private liveness file: same code paths, nothing left on disk.
  // Adopted, not reopened: a second fd's close would drop this process's locks.
  UniqueFd fd(::open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoError("cannot create a private lock file in /tmp");
  lock_file_ = std::make_unique<GroupLockFile>(GroupLockFile::FromFd(std::move(fd)));
  // EAL still creates an (empty) runtime directory for the prefix: removed on close.
  standalone_prefix_ = "nvmux-sa" + std::to_string(getpid());
  // Private: the shared run dir when this user may write there, else this
  // user's own (DPDK's default for non-root users).
  standalone_run_dir_ = RunDir();
  std::string shared_dpdk = standalone_run_dir_ + "/dpdk";
  if (::faccessat(AT_FDCWD, shared_dpdk.c_str(), W_OK | X_OK, AT_EACCESS) != 0 &&
      (errno != ENOENT || ::faccessat(AT_FDCWD, standalone_run_dir_.c_str(), W_OK | X_OK, AT_EACCESS) != 0)) {
    const char* xdg = std::getenv("XDG_RUNTIME_DIR");
    standalone_run_dir_ = xdg != nullptr && xdg[0] == '/' ? xdg : "/tmp";
  }
  NVMUX_TRY(StartEal(o, EalProcType::kInMemory, standalone_prefix_));
  return CreateSegment(o);
}

Status Group::AttachSegment(const GroupOptions& o) {
  size_t size = 0;
  auto base = LookupMemzone(kSegmentZone, size);
  if (!base) return Fail(ENODEV, G(id_) + " has no nvmux segment: its primary is not an nvmux primary");
  auto seg = Segment::Attach(*base, size, o.abi_version, o.attach_timeout, SystemClock::Get());
  if (!seg) return Fail(seg.error().code, G(id_) + ": " + seg.error().message);
  segment_ = std::move(*seg);
  return Ok();
}

// Common to every role: the lock (with this process's repair), the tables,
// registration and the DMA allocator.
Status Group::Finish(const GroupOptions& o) {
  // The repair may run on this process's very first lock (a secondary
  // attaching after a holder died), before it knows the tables: find them.
  lock_ = std::make_unique<RobustLock>(segment_->lock_state(), [this]() -> Status {
    if (auto* dma_table = segment_->FindForRepair<DmaTableState>(kDmaTable)) RepairDmaTable(*dma_table);
    return Ok();
  });
  ProcessTableState* pt = nullptr;
  DmaTableState* dt = nullptr;
  {
    auto guard = lock_->Lock();
    if (!guard) return guard.error();
    if (role_ == ProcessRole::kSecondary || took_over_) {
      auto p = segment_->Find<ProcessTableState>(*guard, kProcessTable);
      if (!p) return p.error();
      auto d = segment_->Find<DmaTableState>(*guard, kDmaTable);
      if (!d) return d.error();
      pt = *p;
      dt = *d;
    } else {
      auto p = segment_->Construct<ProcessTableState>(*guard, kProcessTable);
      if (!p) return p.error();
      auto d = segment_->Construct<DmaTableState>(*guard, kDmaTable);
      if (!d) return d.error();
      pt = *p;
      dt = *d;
      ProcessTable::InitState(*pt, o.max_processes);
      DmaAllocator::InitState(*dt);
      if (o.construct_tables) NVMUX_TRY(o.construct_tables(*segment_, *guard));
    }
  }
  if (role_ == ProcessRole::kStandalone) {
    dma_backend_ = std::make_unique<RteDmaBackend>();
  } else {
    // The group's DMA memory: one pool the primary reserves (dma_pool.h says why).
    size_t size = o.dma_pool_mb << 20;
    bool create = role_ == ProcessRole::kPrimary && !took_over_;
    auto base = create ? ReserveMemzone(kDmaPoolZone, size) : LookupMemzone(kDmaPoolZone, size);
    if (!base)
      return Fail(base.error().code, G(id_) + ": the group's DMA pool of " + std::to_string(o.dma_pool_mb) +
                                         " MiB: " + base.error().message);
    // Recorded by group address (dma_pool.h); with IOVA = VA that is VirtToIova(*base) as well.
    std::function<uint64_t(const void*)> device_address;
    if (IovaIsPhysical()) device_address = [](const void* addr) { return VirtToIova(addr); };
    dma_backend_ = std::make_unique<PoolDmaBackend>(*base, reinterpret_cast<uintptr_t>(*base), size, *dt,
                                                    std::move(device_address));
  }
  table_ = std::make_unique<ProcessTable>(*pt, *lock_, *lock_file_);
  // Hooks before registering: Register may reap a dead process to make room.
  table_->AddCleanupHook([this, dt](uint32_t dead_slot) { return FreeDmaOwnedBy(*dt, *dma_backend_, dead_slot); });
  // No mask given: recorded as empty ("anywhere"), never reported as overlapping.
  auto slot = table_->Register(role_, o.name, o.cores.value_or(CoreSet()));
  if (!slot) return Fail(slot.error().code, (id_ >= 0 ? G(id_) + ": " : "") + slot.error().message);
  dma_ = std::make_unique<DmaAllocator>(*dt, *lock_, *dma_backend_, *slot);
  return Ok();
}

std::vector<ReapRecord> Group::ReapDead() {
  std::vector<ReapRecord> out;
  for (const ProcessInfo& dead : table_->FindDead()) {
    auto rec = table_->Reap(dead.slot, dead.generation);
    if (rec) out.push_back(*rec);
  }
  return out;
}

Group::~Group() {
  if (g_member_group == id_) g_member_group = -1;
  // A primary withdraws its ready flag first, then decides whether it is the
  // last process: a secondary joins first and reads the flag second.
  if (became_primary_) {
    ProcessIdentity self = SelfIdentity();
    (void)lock_file_->WriteHeader(LockFileHeader{{}, kAbiVersion, self.pid, self.start_time, 0, 0});
  }
  if (table_) {
    Status st = table_->Unregister();
    if (!st) NVMUX_LOG(kWarning, "leaving the process table: %s", st.error().ToString().c_str());
  }
  bool last = (became_primary_ || role_ == ProcessRole::kStandalone) && lock_file_ && !lock_file_->OtherLiveMember();
  if (became_primary_ && !last)
    NVMUX_LOG(kWarning, "%s: processes are still attached; leaving the group's shared state for them", G(id_).c_str());
  dma_.reset();
  table_.reset();
  lock_.reset();
  // Memzones are not freed: rte_memzone_free write-locks DPDK's memzone
  // lock, which a killed member may have left held (see below); the last
  // process removes the hugepage files, which releases the memory.
  if (segment_ && last && role_ == ProcessRole::kStandalone) FreeMemzone(kSegmentZone);
  segment_.reset();
  dma_backend_.reset();
  // Group members skip DPDK's cleanup: it write-locks the memory hotplug
  // lock, which a member killed inside DPDK's memory code may have left
  // read-locked forever (DPDK's locks are not robust). The last process
  // removes the group's files below; the kernel unmaps the rest.
  if (eal_up_ && role_ == ProcessRole::kStandalone) CleanupEal();
  if (became_primary_ && last && paths_) {
    RemoveGroupFiles(*paths_, false);  // while still holding the role lock
  }
  if (lock_file_) DpdkSection::Bind(-1);
  lock_file_.reset();
  if (!standalone_prefix_.empty()) {
    GroupPaths sa;
    sa.prefix = standalone_prefix_;
    sa.run_dir = standalone_run_dir_;
    sa.runtime_dir = standalone_run_dir_ + "/dpdk/" + standalone_prefix_;
    RemoveGroupFiles(sa, false);
  }
}

}  // namespace nvmux::shm
