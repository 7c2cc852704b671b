#include "shm/dpdk_lock_doctor.h"

#include <fcntl.h>
#include <rte_eal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <rte_eal_memconfig.h>
#include <rte_fbarray.h>
#include <rte_memory.h>
#include <rte_memzone.h>

#include <climits>
#include <cstdlib>
#include <atomic>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "shm/base/log.h"
#include "shm/base/unique_fd.h"

namespace nvmux::shm {
namespace {

// This process's sections: the depth, and the lock file the read lock is on.
std::mutex g_section_mutex;
int g_section_fd = -1;
uint32_t g_section_depth = 0;

Status SetSectionLock(int fd, short type) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = kDpdkSectionByte;
  fl.l_len = 1;
  // Read locks never conflict with each other, and nobody write-locks this
  // byte (the doctor only asks with F_GETLK): F_SETLK does not wait.
  if (::fcntl(fd, F_SETLK, &fl) != 0) return ErrnoError("DPDK section lock");
  return Ok();
}

constexpr size_t kScanWords = 256;  // the locks sit near the start of DPDK's rte_mem_config

struct Mapping {
  uint8_t* start = nullptr;
  size_t length = 0;
  size_t file_offset = 0;
};

// This process's mappings of DPDK's shared config file (a secondary maps it
// twice: once anywhere, then at the primary's address).
std::vector<Mapping> SharedConfigMappings() {
  // /proc/self/maps shows the resolved path (/var/run is usually /run).
  char resolved[PATH_MAX];
  const char* dir = rte_eal_get_runtime_dir();
  std::string path = std::string(realpath(dir, resolved) != nullptr ? resolved : dir) + "/config";
  std::ifstream maps("/proc/self/maps");
  std::string line;
  std::vector<Mapping> out;
  while (std::getline(maps, line)) {
    if (line.size() < path.size() || line.compare(line.size() - path.size(), path.size(), path) != 0) continue;
    // start-end perms offset dev inode path
    std::istringstream fields(line);
    std::string range, perms, offset;
    fields >> range >> perms >> offset;
    size_t dash = range.find('-');
    uintptr_t start = std::stoull(range.substr(0, dash), nullptr, 16);
    uintptr_t end = std::stoull(range.substr(dash + 1), nullptr, 16);
    out.push_back(Mapping{reinterpret_cast<uint8_t*>(start), end - start, std::stoull(offset, nullptr, 16)});
  }
  return out;
}

// The lowest mapping (the one the scans below read).
Mapping FindSharedConfig() {
  Mapping best;
  for (const Mapping& m : SharedConfigMappings())
    if (best.start == nullptr || m.start < best.start) best = m;
  return best;
}

size_t ConfigOffsetOf(const int32_t* word, const std::vector<Mapping>& mappings) {
  auto* p = reinterpret_cast<const uint8_t*>(word);
  for (const Mapping& m : mappings)
    if (p >= m.start && p + sizeof(int32_t) <= m.start + m.length)
      return m.file_offset + static_cast<size_t>(p - m.start);
  return SIZE_MAX;
}

// DPDK's malloc heaps live in the shared config too, each named
// "socket_<N>"; their spinlock is the heap's first word. DPDK does not
// export the layout, so each candidate is checked against what the layout
// of DPDK 22.11 says (struct malloc_heap: lock, 13 free lists, first, last,
// alloc_count, socket_id, total_size, name; cache-line aligned) and skipped
// when it does not match.
std::vector<std::pair<std::string, int32_t*>> FindHeapLocks(const Mapping& config) {
  constexpr size_t kNameOffset = 144;
  constexpr size_t kSocketIdOffset = 132;
  std::vector<std::pair<std::string, int32_t*>> out;
  for (size_t off = kNameOffset; off + 16 < config.length; off += 8) {
    const char* name = reinterpret_cast<const char*>(config.start + off);
    if (std::strncmp(name, "socket_", 7) != 0 || name[7] < '0' || name[7] > '9') continue;
    uint8_t* heap = config.start + off - kNameOffset;
    if (reinterpret_cast<uintptr_t>(heap) % 64 != 0) continue;
    uint32_t socket_id = 0;
    std::memcpy(&socket_id, heap + kSocketIdOffset, sizeof socket_id);
    if (std::to_string(socket_id) != std::string(name + 7, strnlen(name + 7, 24))) continue;
    auto* lock = reinterpret_cast<int32_t*>(heap);
    if (*lock != 0 && *lock != 1) continue;
    out.emplace_back(std::string("malloc heap ") + name + " spinlock", lock);
  }
  return out;
}

// The word of `config` that `lock` changes and `unlock` restores.
int32_t* Locate(int32_t* config, void (*lock)(), void (*unlock)()) {
  int32_t before[kScanWords], during[kScanWords];
  std::memcpy(before, config, sizeof before);
  lock();
  std::memcpy(during, config, sizeof during);
  unlock();
  int32_t* found = nullptr;
  for (size_t i = 0; i < kScanWords; ++i) {
    if (before[i] == 0 && during[i] != 0 && config[i] == 0) {
      if (found != nullptr) return nullptr;  // ambiguous: another thread was busy
      found = &config[i];
    }
  }
  return found;
}

// The memzone rwlock has no lock function of its own; it is held (read)
// while rte_memzone_walk calls back.
struct WalkProbe {
  int32_t* config;
  int32_t during[kScanWords];
  bool seen = false;
};

void SnapshotDuringWalk(const rte_memzone*, void* arg) {
  auto* p = static_cast<WalkProbe*>(arg);
  if (p->seen) return;
  std::memcpy(p->during, p->config, sizeof p->during);
  p->seen = true;
}

int32_t* LocateMemzoneLock(int32_t* config) {
  int32_t before[kScanWords];
  std::memcpy(before, config, sizeof before);
  WalkProbe probe{config, {}, false};
  rte_memzone_walk(SnapshotDuringWalk, &probe);
  if (!probe.seen) return nullptr;
  int32_t* found = nullptr;
  for (size_t i = 0; i < kScanWords; ++i) {
    if (before[i] == 0 && probe.during[i] != 0 && config[i] == 0) {
      if (found != nullptr) return nullptr;
      found = &config[i];
    }
  }
  return found;
}

// The memzone descriptors' fbarray (public struct, named "memzone") sits in
// the shared config; its rwlock guards every memzone lookup.
int32_t* FindMemzoneFbarrayLock(const Mapping& config) {
  for (size_t off = 0; off + sizeof(rte_fbarray) <= config.length; off += 8) {
    auto* arr = reinterpret_cast<rte_fbarray*>(config.start + off);
    if (std::strncmp(arr->name, "memzone", RTE_FBARRAY_NAME_LEN) != 0) continue;
    if (arr->elt_sz != sizeof(rte_memzone) || arr->count > arr->len) continue;
    return &arr->rwlock.cnt;
  }
  return nullptr;
}

int CollectFbarrayLocks(const rte_memseg_list* msl, void* arg) {
  auto* out = static_cast<std::vector<int32_t*>*>(arg);
  out->push_back(const_cast<int32_t*>(&msl->memseg_arr.rwlock.cnt));
  return 0;
}

}  // namespace

DpdkSection::DpdkSection() {
  std::lock_guard<std::mutex> guard(g_section_mutex);
  if (g_section_depth++ == 0 && g_section_fd >= 0) {
    Status st = SetSectionLock(g_section_fd, F_RDLCK);
    if (!st) NVMUX_LOG(kWarning, "%s: the DPDK lock doctor may misjudge this process", st.error().ToString().c_str());
  }
}

DpdkSection::~DpdkSection() {
  std::lock_guard<std::mutex> guard(g_section_mutex);
  if (--g_section_depth == 0 && g_section_fd >= 0) (void)SetSectionLock(g_section_fd, F_UNLCK);
}

void DpdkSection::Bind(int lock_file_fd) {
  std::lock_guard<std::mutex> guard(g_section_mutex);
  if (g_section_fd >= 0 && g_section_depth > 0) (void)SetSectionLock(g_section_fd, F_UNLCK);
  g_section_fd = lock_file_fd;
  if (g_section_fd >= 0 && g_section_depth > 0) (void)SetSectionLock(g_section_fd, F_RDLCK);
}

bool DpdkSection::AnyLive() {
  std::lock_guard<std::mutex> guard(g_section_mutex);
  if (g_section_depth > 0) return true;  // F_GETLK never reports the caller's own locks
  if (g_section_fd < 0) return true;
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = kDpdkSectionByte;
  fl.l_len = 1;
  if (::fcntl(g_section_fd, F_GETLK, &fl) != 0) return true;
  return fl.l_type != F_UNLCK;
}

DpdkLockDoctor DpdkLockDoctor::Watching(std::vector<std::pair<std::string, int32_t*>> words) {
  DpdkLockDoctor doctor;
  for (auto& [name, word] : words) doctor.locks_.push_back(Watched{std::move(name), word});
  return doctor;
}

Result<DpdkLockDoctor> DpdkLockDoctor::Create() {
  Mapping mapping = FindSharedConfig();
  if (mapping.start == nullptr) return Fail(ENOENT, "DPDK's shared config is not mapped in this process");
  auto* config = reinterpret_cast<int32_t*>(mapping.start);
  DpdkLockDoctor doctor;
  struct Known {
    const char* name;
    void (*lock)();
    void (*unlock)();
  };
  const Known known[] = {
      {"memory hotplug rwlock", rte_mcfg_mem_read_lock, rte_mcfg_mem_read_unlock},
      {"tailq rwlock", rte_mcfg_tailq_read_lock, rte_mcfg_tailq_read_unlock},
      {"mempool rwlock", rte_mcfg_mempool_read_lock, rte_mcfg_mempool_read_unlock},
      {"timer spinlock", rte_mcfg_timer_lock, rte_mcfg_timer_unlock},
  };
  for (const Known& k : known) {
    if (int32_t* word = Locate(config, k.lock, k.unlock))
      doctor.locks_.push_back(Watched{k.name, word});
    else
      NVMUX_LOG(kNotice, "DPDK lock doctor: cannot locate the %s; it is not watched", k.name);
  }
  if (int32_t* word = LocateMemzoneLock(config))
    doctor.locks_.push_back(Watched{"memzone rwlock", word});
  else
    NVMUX_LOG(kNotice, "DPDK lock doctor: cannot locate the memzone rwlock; it is not watched");
  if (int32_t* word = FindMemzoneFbarrayLock(mapping))
    doctor.locks_.push_back(Watched{"memzone fbarray rwlock", word});
  auto heaps = FindHeapLocks(mapping);
  if (heaps.empty()) NVMUX_LOG(kNotice, "DPDK lock doctor: found no malloc heap lock to watch");
  for (auto& [name, word] : heaps) doctor.locks_.push_back(Watched{name, word});
  std::vector<int32_t*> fbarrays;
  rte_memseg_list_walk(CollectFbarrayLocks, &fbarrays);
  for (size_t i = 0; i < fbarrays.size(); ++i)
    doctor.locks_.push_back(Watched{"memseg list " + std::to_string(i) + " fbarray rwlock", fbarrays[i]});
  std::vector<Mapping> mappings = SharedConfigMappings();
  for (Watched& w : doctor.locks_) w.config_offset = ConfigOffsetOf(w.word, mappings);
  return doctor;
}

std::vector<std::pair<std::string, int32_t*>> DpdkLockDoctor::Words() const {
  std::vector<std::pair<std::string, int32_t*>> out;
  for (const Watched& w : locks_) out.emplace_back(w.name, w.word);
  return out;
}

Status DpdkLockDoctor::SaveLockMap(const std::string& map_path) const {
  // One line per word: "<offset> <name>"; written aside and renamed, so a
  // reader never sees half a file.
  std::string tmp = map_path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const Watched& w : locks_)
      if (w.config_offset != SIZE_MAX) out << w.config_offset << ' ' << w.name << '\n';
    if (!out.flush()) return Fail(EIO, "cannot write " + tmp);
  }
  if (::rename(tmp.c_str(), map_path.c_str()) != 0) return ErrnoError("cannot rename " + tmp + " to " + map_path);
  return Ok();
}

Result<std::vector<std::string>> DpdkLockDoctor::RepairBeforeJoin(const std::string& config_path,
                                                                  const std::string& map_path, Nanos stuck_after,
                                                                  Nanos give_up) {
  std::ifstream in(map_path);
  if (!in) return std::vector<std::string>{};
  std::vector<std::pair<size_t, std::string>> entries;
  size_t offset = 0;
  std::string name;
  while (in >> offset && std::getline(in >> std::ws, name)) entries.emplace_back(offset, name);
  UniqueFd fd(::open(config_path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError("cannot open DPDK's shared config " + config_path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("cannot stat " + config_path);
  size_t length = static_cast<size_t>(st.st_size);
  void* base = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED) return ErrnoError("cannot map " + config_path);
  std::vector<std::pair<std::string, int32_t*>> words;
  for (auto& [off, n] : entries)
    if (off % alignof(int32_t) == 0 && off + sizeof(int32_t) <= length)
      words.emplace_back(n, reinterpret_cast<int32_t*>(static_cast<uint8_t*>(base) + off));
  DpdkLockDoctor doctor = Watching(std::move(words));
  std::vector<std::string> repaired;
  const int64_t deadline = MonotonicNanos() + give_up.count();
  for (;;) {
    int64_t now = MonotonicNanos();
    for (std::string& r : doctor.Check(now, stuck_after)) repaired.push_back(std::move(r));
    bool any_held = false;
    for (const Watched& w : doctor.locks_)
      if (std::atomic_ref<int32_t>(*w.word).load(std::memory_order_acquire) != 0) any_held = true;
    if (!any_held) break;
    if (now >= deadline) {
      for (const Watched& w : doctor.locks_)
        if (std::atomic_ref<int32_t>(*w.word).load(std::memory_order_acquire) != 0)
          NVMUX_LOG(kWarning, "DPDK's %s is still held after %lld ms (a live process inside DPDK?): joining anyway",
                    w.name.c_str(), static_cast<long long>(give_up.count() / 1'000'000));
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::munmap(base, length);
  return repaired;
}

std::vector<std::string> DpdkLockDoctor::Check(int64_t now_ns, Nanos stuck_after) {
  std::vector<std::string> repaired;
  // Asked once per check, only when some word is a candidate (cheap then:
  // one fcntl). A live process inside a section may hold any of the words
  // legitimately (nvmuxd's own memory-event callback holds the hotplug
  // lock across a DMA_MAP of up to 5 s): restart every wait instead.
  bool asked = false, live = false;
  for (Watched& w : locks_) {
    std::atomic_ref<int32_t> word(*w.word);
    int32_t v = word.load(std::memory_order_acquire);
    if (v == 0 || v != w.last) {
      w.last = v;
      w.since_ns = now_ns;
      continue;
    }
    if (now_ns - w.since_ns < stuck_after.count()) continue;
    if (!asked) {
      live = DpdkSection::AnyLive();
      asked = true;
    }
    if (live) {
      w.since_ns = now_ns;
      continue;
    }
    int32_t expected = v;
    if (word.compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) {
      std::ostringstream msg;
      msg << "DPDK's " << w.name << " was held (value 0x" << std::hex << v << std::dec << ") for "
          << (now_ns - w.since_ns) / 1'000'000 << " ms, with no live process inside DPDK: left by a killed process; released it";
      NVMUX_LOG(kWarning, "%s", msg.str().c_str());
      repaired.push_back(msg.str());
    }
    w.last = 0;
    w.since_ns = now_ns;
  }
  return repaired;
}

}  // namespace nvmux::shm
