#include "shm/group_paths.h"

#include <dirent.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace nvmux::shm {
namespace {

std::string& RunDirOverride() {
  static std::string dir;
  return dir;
}

// A directory that does not exist holds nothing; one that cannot be read is
// an error, with its path and the reason.
std::vector<std::string> ListDir(const std::string& dir, const std::string& name_prefix,
                                 std::vector<std::string>* errors = nullptr) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    if (errno != ENOENT && errors != nullptr) errors->push_back("cannot read " + dir + ": " + std::strerror(errno));
    return out;
  }
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (name.rfind(name_prefix, 0) == 0) out.push_back(dir + "/" + name);
  }
  closedir(d);
  return out;
}

bool IsHugepageFile(const std::string& path) {
  return path.find("map_") != std::string::npos && path.find("/dpdk/nvmux") == std::string::npos;
}

}  // namespace

std::string RunDir() {
  if (!RunDirOverride().empty()) return RunDirOverride();
  const char* env = std::getenv(kRunDirEnv);
  if (env != nullptr && env[0] == '/') return env;
  return kDefaultRunDir;
}

Status SetRunDir(const std::string& dir) {
  if (dir.empty() || dir[0] != '/')
    return Fail(EINVAL, "bad run directory '" + dir + "': an absolute path is needed (default " +
                            std::string(kDefaultRunDir) + ")");
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  RunDirOverride() = d;
  return Ok();
}

Result<GroupPaths> GroupPaths::For(int id) {
  if (id < 0 || id > kMaxGroupId)
    return Fail(EINVAL, "bad group id " + std::to_string(id) + ": allowed 0.." + std::to_string(kMaxGroupId));
  const char* env = std::getenv(kRunDirEnv);
  if (RunDirOverride().empty() && env != nullptr && env[0] != '\0' && env[0] != '/')
    return Fail(EINVAL, std::string("bad ") + kRunDirEnv + " '" + env + "': an absolute path is needed (default " +
                            kDefaultRunDir + ")");
  GroupPaths p;
  p.id = id;
  p.prefix = "nvmux" + std::to_string(id);
  p.run_dir = RunDir();
  p.runtime_dir = p.run_dir + "/dpdk/" + p.prefix;
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

GroupFiles ScanGroupFiles(const GroupPaths& paths) {
  GroupFiles out;
  out.files = ListDir(paths.runtime_dir, "", &out.errors);
  // "nvmux1map_" never matches group 12's "nvmux12map_".
  for (const auto& mount : HugetlbfsMounts()) {
    auto pages = ListDir(mount, paths.prefix + "map_", &out.errors);
    out.files.insert(out.files.end(), pages.begin(), pages.end());
  }
  return out;
}

std::vector<std::string> ListGroupFiles(const GroupPaths& paths) { return ScanGroupFiles(paths).files; }

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
