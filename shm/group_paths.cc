#include "shm/group_paths.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace nvmux::shm {
namespace {

// DPDK's eal_get_runtime_dir(): /var/run/dpdk for root, else
// $XDG_RUNTIME_DIR/dpdk or /tmp/dpdk.
std::string DpdkRunDir() {
  if (getuid() == 0) return "/var/run/dpdk";
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  return std::string(xdg != nullptr ? xdg : "/tmp") + "/dpdk";
}

std::vector<std::string> ListDir(const std::string& dir, const std::string& name_prefix) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (name.rfind(name_prefix, 0) == 0) out.push_back(dir + "/" + name);
  }
  closedir(d);
  return out;
}

bool IsHugepageFile(const std::string& path) {
  return path.find("map_") != std::string::npos && path.rfind("/var/run/", 0) != 0;
}

}  // namespace

Result<GroupPaths> GroupPaths::For(int id) {
  if (id < 0 || id > kMaxGroupId)
    return Fail(EINVAL, "bad group id " + std::to_string(id) + ": allowed 0.." + std::to_string(kMaxGroupId));
  GroupPaths p;
  p.id = id;
  p.prefix = "nvmux" + std::to_string(id);
  p.runtime_dir = DpdkRunDir() + "/" + p.prefix;
  p.lock_file = p.runtime_dir + "/nvmux.lock";
  return p;
}

std::vector<std::string> HugetlbfsMounts() {
  std::vector<std::string> mounts;
  std::ifstream in("/proc/mounts");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string dev, dir, type;
    fields >> dev >> dir >> type;
    if (type == "hugetlbfs") mounts.push_back(dir);
  }
  return mounts;
}

std::vector<std::string> ListGroupFiles(const GroupPaths& paths) {
  std::vector<std::string> files = ListDir(paths.runtime_dir, "");
  // "nvmux1map_" never matches group 12's "nvmux12map_".
  for (const auto& mount : HugetlbfsMounts()) {
    auto pages = ListDir(mount, paths.prefix + "map_");
    files.insert(files.end(), pages.begin(), pages.end());
  }
  return files;
}

std::vector<std::string> RemoveGroupFiles(const GroupPaths& paths, bool keep_lock_file) {
  std::vector<std::string> removed;
  for (const auto& file : ListGroupFiles(paths)) {
    if (keep_lock_file && file == paths.lock_file) continue;
    if (::unlink(file.c_str()) == 0) removed.push_back(file);
  }
  if (!keep_lock_file && ::rmdir(paths.runtime_dir.c_str()) == 0) removed.push_back(paths.runtime_dir + "/");
  return removed;
}

std::string SummariseFiles(const std::vector<std::string>& files) {
  size_t pages = 0, runtime = 0;
  for (const auto& f : files) (IsHugepageFile(f) ? pages : runtime)++;
  return std::to_string(pages) + " hugepage file(s), " + std::to_string(runtime) + " runtime file(s)";
}

}  // namespace nvmux::shm
