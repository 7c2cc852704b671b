// Where a group lives on the filesystem, and how its leftovers are found and
// removed. Group N uses DPDK file prefix "nvmux<N>": runtime files under
// <dpdk run dir>/nvmux<N>/ (config, fbarrays, mp sockets, and nvmux's own
// lock file) and hugepage files <hugetlbfs mount>/nvmux<N>map_*.
//
// Thread safety: free functions over the filesystem; callers serialise with
// the group lock file (see group_lock_file.h) before removing anything.
#pragma once

#include <string>
#include <vector>

#include "shm/base/result.h"

namespace nvmux::shm {

constexpr int kMaxGroupId = 999'999;

struct GroupPaths {
  int id = 0;
  std::string prefix;       // DPDK --file-prefix: "nvmux<N>"
  std::string runtime_dir;  // "/var/run/dpdk/nvmux<N>" (DPDK's rule for non-root too)
  std::string lock_file;    // runtime_dir + "/nvmux.lock"

  // Errors: EINVAL if id is outside [0, kMaxGroupId].
  static Result<GroupPaths> For(int id);
};

// Mount points of hugetlbfs file systems, from /proc/mounts.
std::vector<std::string> HugetlbfsMounts();

// Every file of the group that exists now: runtime directory entries and
// hugepage files. Empty when the group has left nothing.
std::vector<std::string> ListGroupFiles(const GroupPaths& paths);

// Removes the group's files (the lock file too unless keep_lock_file) and the
// runtime directory if it ends up empty. Returns what was removed.
// REQUIRES: no process of the group is alive (checked by the caller).
std::vector<std::string> RemoveGroupFiles(const GroupPaths& paths, bool keep_lock_file);

// One line summarising a list of removed files: "3 hugepage files, 5 runtime files".
std::string SummariseFiles(const std::vector<std::string>& files);

}  // namespace nvmux::shm
