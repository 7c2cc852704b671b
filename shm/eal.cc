#include "shm/eal.h"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_log.h>
#include <rte_malloc.h>
#include <rte_memory.h>
#include <rte_memzone.h>
#include <rte_service_component.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <dirent.h>
#include <limits.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "shm/base/log.h"
#include "shm/group_paths.h"

namespace nvmux::shm {
namespace {

bool g_eal_initialised = false;

// EAL levels: ERR 4, WARNING 5, NOTICE 6, INFO 7, DEBUG 8.
LogLevel FromRteLevel(uint32_t level) {
  if (level <= RTE_LOG_ERR) return LogLevel::kError;
  if (level == RTE_LOG_WARNING) return LogLevel::kWarning;
  if (level == RTE_LOG_NOTICE) return LogLevel::kNotice;
  if (level == RTE_LOG_INFO) return LogLevel::kInfo;
  return LogLevel::kDebug;
}

// Keeps EAL quiet at nvmux's default (warning): only its errors pass.
int ToRteLevel(LogLevel level) {
  switch (level) {
    case LogLevel::kError:
    case LogLevel::kWarning: return RTE_LOG_ERR;
    case LogLevel::kNotice: return RTE_LOG_WARNING;
    case LogLevel::kInfo: return RTE_LOG_INFO;
    case LogLevel::kDebug: return RTE_LOG_DEBUG;
  }
  return RTE_LOG_ERR;
}

ssize_t EalLogWrite(void*, const char* buf, size_t size) {
  LogLevel level = FromRteLevel(static_cast<uint32_t>(rte_log_cur_msg_loglevel()));
  std::string_view text(buf, size);
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  if (!text.empty()) LogRaw(level, std::string("EAL: ").append(text));
  return static_cast<ssize_t>(size);
}

void RouteEalLog() {
  static FILE* stream = [] {
    cookie_io_functions_t io{};
    io.write = EalLogWrite;
    FILE* f = fopencookie(nullptr, "w", io);
    if (f != nullptr) setvbuf(f, nullptr, _IOLBF, 0);
    return f;
  }();
  if (stream != nullptr) rte_openlog_stream(stream);
}

}  // namespace

std::vector<std::string> BuildEalArgs(const EalOptions& o) {
  std::vector<std::string> args = {o.program_name};
  CoreSet cores = o.cores.value_or(CoreSet::CurrentAffinity());
  args.push_back("-l");
  args.push_back(std::to_string(cores.Empty() ? 0 : cores.First()));
  args.push_back(o.iova_pa ? "--iova-mode=pa" : "--iova-mode=va");
  args.push_back("--base-virtaddr=0x200000000000");
  args.push_back("--no-telemetry");
  // One hugepage file (or memfd) per memseg list rather than per page: a
  // vfio-user device is told of memory by fd, and contiguous pages of one
  // file can then be one DMA region (SPDK's target allows 64 of them).
  // Every process of a group must agree on it.
  args.push_back("--single-file-segments");
  if (!o.pci) args.push_back("--no-pci");
  args.push_back("--log-level=" + std::to_string(ToRteLevel(GetLogLevel())));
  switch (o.proc_type) {
    case EalProcType::kPrimary:
      args.push_back("--file-prefix=" + o.file_prefix);
      args.push_back("--proc-type=primary");
      break;
    case EalProcType::kSecondary:
      args.push_back("--file-prefix=" + o.file_prefix);
      args.push_back("--proc-type=secondary");
      break;
    case EalProcType::kInMemory:
      args.push_back("--file-prefix=" + o.file_prefix);
      args.push_back("--in-memory");
      break;
  }
  if (!o.huge_dir.empty() && o.proc_type == EalProcType::kPrimary) args.push_back("--huge-dir=" + o.huge_dir);
  if (o.mem_mb > 0 && o.proc_type != EalProcType::kSecondary) {
    args.push_back("-m");
    args.push_back(std::to_string(o.mem_mb));
  }
  return args;
}

Result<bool> PciNeedsPhysicalAddresses() {
  if (const char* mode = std::getenv("NVMUX_IOVA_MODE"); mode != nullptr && *mode != '\0') {
    std::string m(mode);
    if (m == "pa") return true;
    if (m == "va") return false;
    return Fail(EINVAL, "NVMUX_IOVA_MODE='" + m + "' (allowed: va, pa)");
  }
  const char* root = "/sys/bus/pci/devices";
  DIR* d = ::opendir(root);
  if (d == nullptr) return false;
  bool pa = false;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string dir = std::string(root) + "/" + e->d_name;
    std::string cls;
    std::ifstream(dir + "/class") >> cls;
    if (cls != "0x010802") continue;
    char link[PATH_MAX];
    ssize_t n = ::readlink((dir + "/driver").c_str(), link, sizeof(link) - 1);
    if (n <= 0) continue;
    std::string driver(link, static_cast<size_t>(n));
    if (driver.ends_with("/uio_pci_generic")) pa = true;
  }
  ::closedir(d);
  return pa;
}

bool IovaIsPhysical() { return rte_eal_iova_mode() == RTE_IOVA_PA; }

HeapStats ReadHeapStats() {
  HeapStats out;
  for (unsigned socket = 0; socket < RTE_MAX_NUMA_NODES; ++socket) {
    rte_malloc_socket_stats s{};
    if (rte_malloc_get_socket_stats(static_cast<int>(socket), &s) != 0) continue;
    out.allocated_bytes += s.heap_allocsz_bytes;
    out.allocations += s.alloc_count;
  }
  return out;
}

HugepageCounts ReadHugepageCounts() {
  // The 2 MiB pool by name (/proc/meminfo's HugePages_* is the default size's).
  HugepageCounts c;
  std::ifstream("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages") >> c.total;
  std::ifstream("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages") >> c.free;
  return c;
}

Result<std::string> ChooseHugeDir(const std::string& requested) {
  if (!requested.empty()) return requested;
  const char* env = std::getenv("NVMUX_HUGE_DIR");
  if (env != nullptr && env[0] != '\0') return std::string(env);
  std::vector<std::string> mounts = HugetlbfsMounts();
  auto writable = [](const std::string& dir) { return ::faccessat(AT_FDCWD, dir.c_str(), W_OK | X_OK, AT_EACCESS) == 0; };
  if (mounts.empty() || writable(mounts.front())) return std::string();  // DPDK's own choice works
  for (const std::string& m : mounts)
    if (writable(m)) return m;
  std::string list;
  for (const std::string& m : mounts) list += (list.empty() ? "" : ", ") + m;
  return Fail(EACCES, "no hugetlbfs mount is writable by uid " + std::to_string(geteuid()) + " (" + list +
                          "): as root, run scripts/setup.sh user <NAME> (or give --huge-dir / NVMUX_HUGE_DIR)");
}

Status InitEal(const EalOptions& options_in) {
  EalOptions options = options_in;
  if (options.proc_type == EalProcType::kPrimary) {
    auto dir = ChooseHugeDir(options.huge_dir);
    if (!dir) return dir.error();
    options.huge_dir = *dir;
  }
  if (g_eal_initialised) return Fail(EBUSY, "DPDK EAL is already initialised in this process (one group per process)");
  if (options.proc_type == EalProcType::kSecondary && options.mem_mb > 0)
    return Fail(EINVAL, "a secondary must not preallocate memory (-m " + std::to_string(options.mem_mb) + ")");
  if (ReadHugepageCounts().total == 0)
    return Fail(ENOMEM, "no 2 MiB hugepages are reserved: run scripts/hugepages.sh reserve");
  RouteEalLog();
  // Every user's processes of a group find its files at one place
  // (group_paths.h), not at DPDK's per-user default.
  if (!options.run_dir.empty()) setenv("RUNTIME_DIRECTORY", options.run_dir.c_str(), 1);
  // What DPDK creates with the umask (mp sockets) is usable by the group's
  // Unix group when the directory's setgid gives it one (group_access.h);
  // the directory itself still decides who may enter.
  mode_t old_mask = ::umask(0);
  ::umask(old_mask & ~static_cast<mode_t>(0070));
  CoreSet before = CoreSet::CurrentAffinity();
  std::vector<std::string> args = BuildEalArgs(options);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int rc = rte_eal_init(static_cast<int>(args.size()), argv.data());
  ::umask(old_mask);
  if (rc < 0) {
    int err = rte_errno != 0 ? rte_errno : EIO;
    return Fail(err, std::string("DPDK EAL initialisation failed: ") + rte_strerror(err));
  }
  g_eal_initialised = true;
  // nvmux runs no DPDK services. Its own programs never initialise DPDK's
  // service library (shm/dpdk_wraps.cc); where DPDK is linked without those
  // wraps (an application linking libnvmux.a and DPDK itself) rte_eal_init
  // allocated its tables in the group's shared heap, and only the skipped
  // rte_eal_cleanup would free them: free them now (a no-op when wrapped).
  rte_service_finalize();
  Status pinned = options.cores.value_or(before).ApplyToThisThread();
  if (!pinned) NVMUX_LOG(kWarning, "%s", pinned.error().ToString().c_str());
  return Ok();
}

void CleanupEal() {
  if (!g_eal_initialised) return;
  rte_eal_cleanup();
}

Result<void*> ReserveMemzone(const char* name, size_t size) {
  const rte_memzone* mz = rte_memzone_reserve_aligned(name, size, SOCKET_ID_ANY, 0, 4096);
  if (mz == nullptr)
    return Fail(rte_errno == EEXIST ? EEXIST : ENOMEM,
                std::string("cannot reserve memzone ") + name + " of " + std::to_string(size) +
                    " bytes: " + rte_strerror(rte_errno));
  return mz->addr;
}

Result<void*> LookupMemzone(const char* name, size_t& size_out) {
  const rte_memzone* mz = rte_memzone_lookup(name);
  if (mz == nullptr) return Fail(ENOENT, std::string("memzone ") + name + " not found");
  size_out = mz->len;
  return mz->addr;
}

void FreeMemzone(const char* name) {
  if (const rte_memzone* mz = rte_memzone_lookup(name)) rte_memzone_free(mz);
}

void* RteDmaBackend::Allocate(size_t size, size_t align, std::string_view tag) {
  std::string name(tag);
  return rte_zmalloc(name.c_str(), size, static_cast<unsigned>(align));
}

void RteDmaBackend::Free(void* addr) { rte_free(addr); }

uint64_t VirtToIova(const void* addr) { return rte_mem_virt2iova(addr); }

uint64_t RteDmaBackend::VirtToIova(const void* addr) const { return rte_malloc_virt2iova(addr); }

void* RteDmaBackend::IovaToVirt(uint64_t iova) const { return rte_mem_iova2virt(iova); }

size_t RteDmaBackend::FreeBytes() const { return ReadHugepageCounts().free * 2 * 1024 * 1024; }

}  // namespace nvmux::shm
