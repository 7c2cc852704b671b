// Where a group lives on the filesystem, and how its leftovers are found and
// removed. Group N uses DPDK file prefix "nvmux<N>": runtime files under
// <run dir>/dpdk/nvmux<N>/ (config, fbarrays, mp sockets, and nvmux's own
// lock file) and hugepage files <hugetlbfs mount>/nvmux<N>map_*.
//
// The run dir is the same for every user, so a group's location never
// depends on who asks: NVMUX_RUN_DIR, or SetRunDir() (tools' --run-dir), or
// kDefaultRunDir. Every process gives it to DPDK as its runtime directory
// (RUNTIME_DIRECTORY, which DPDK prefers to its per-user default of
// XDG_RUNTIME_DIR or /tmp for non-root users).
//
// Thread safety: free functions over the filesystem; callers serialise with
// the group lock file (see group_lock_file.h) before removing anything.
// SetRunDir before any other call, from the main thread.
#pragma once

#include <string>
#include <vector>

#include "shm/base/result.h"

namespace nvmux::shm {

constexpr int kMaxGroupId = 999'999;
inline constexpr char kDefaultRunDir[] = "/var/run";
inline constexpr char kRunDirEnv[] = "NVMUX_RUN_DIR";

// The run dir in force: SetRunDir's, else $NVMUX_RUN_DIR, else kDefaultRunDir.
std::string RunDir();
// Errors: EINVAL if dir is not an absolute path (names it).
Status SetRunDir(const std::string& dir);

struct GroupPaths {
  int id = 0;
  std::string prefix;       // DPDK --file-prefix: "nvmux<N>"
  std::string run_dir;      // RunDir(): DPDK's runtime directory (RUNTIME_DIRECTORY)
  std::string runtime_dir;  // run_dir + "/dpdk/nvmux<N>"
  std::string lock_file;    // runtime_dir + "/nvmux.lock"

  // Errors: EINVAL if id is outside [0, kMaxGroupId].
  static Result<GroupPaths> For(int id);
};

// Mount points of hugetlbfs file systems, from /proc/mounts.
std::vector<std::string> HugetlbfsMounts();

// Every file of the group that exists now, and every directory that could
// not be read (path and reason: an unreadable directory never reads as empty).
struct GroupFiles {
  std::vector<std::string> files;
  std::vector<std::string> errors;
};
GroupFiles ScanGroupFiles(const GroupPaths& paths);

// Every file of the group that exists now: runtime directory entries and
// hugepage files. Empty when the group has left nothing (or nothing is readable:
// see ScanGroupFiles).
std::vector<std::string> ListGroupFiles(const GroupPaths& paths);

// Removes the group's files (the lock file too unless keep_lock_file) and the
// runtime directory if it ends up empty. Returns what was removed.
// REQUIRES: no process of the group is alive (checked by the caller).
std::vector<std::string> RemoveGroupFiles(const GroupPaths& paths, bool keep_lock_file);

// One line summarising a list of removed files: "3 hugepage files, 5 runtime files".
std::string SummariseFiles(const std::vector<std::string>& files);

}  // namespace nvmux::shm
