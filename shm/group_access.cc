#include "shm/group_access.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

namespace nvmux::shm {
namespace {


std::string Octal(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

std::string GroupName(gid_t gid) {
  std::vector<char> buf(4096);
  group gr{};
  group* out = nullptr;
  if (getgrgid_r(gid, &gr, buf.data(), buf.size(), &out) == 0 && out != nullptr) return out->gr_name;
  return std::to_string(gid);
}

std::string Dirname(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

// The first directory on the way to `path` this process may not search:
// "/var/run/dpdk (uid 0 (root), mode 0700)"; empty if none.
std::string BlockedAncestor(const std::string& path) {
  for (size_t pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
    std::string dir = path.substr(0, pos);
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) return "";
    if (::faccessat(AT_FDCWD, dir.c_str(), X_OK, AT_EACCESS) != 0)
      return dir + " (" + DescribeUid(st.st_uid) + ", mode " + Octal(st.st_mode) + ")";
  }
  return "";
}

Status Refused(const GroupPaths& paths, const std::string& path, const struct stat& st) {
  return Fail(EACCES, "permission denied: group " + std::to_string(paths.id) + " belongs to " +
                          DescribeUid(st.st_uid) + " (" + path + ": mode " + Octal(st.st_mode) + ", Unix group " +
                          GroupName(st.st_gid) + "; this process is " + DescribeUid(geteuid()) +
                          "); ask its owner or have its nvmuxd started with --access-group");
}

// Checks one path against this process's effective ids.
Status CheckPath(const GroupPaths& paths, const std::string& path, int mode) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Ok();
    int err = errno;
    std::string blocked = BlockedAncestor(path);
    if (err == EACCES && !blocked.empty())
      return Fail(EACCES, "permission denied: group " + std::to_string(paths.id) + " (" + paths.runtime_dir +
                              ") is behind " + blocked + ", which this process (" + DescribeUid(geteuid()) +
                              ") may not enter; make it searchable (scripts/setup.sh user does) or use another "
                              "--run-dir / NVMUX_RUN_DIR");
    return Fail(err, "group " + std::to_string(paths.id) + ": cannot look at " + path + ": " + std::strerror(err));
  }
  if (::faccessat(AT_FDCWD, path.c_str(), mode, AT_EACCESS) != 0) return Refused(paths, path, st);
  return Ok();
}

Status Share(const std::string& path, gid_t gid, bool directory) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT ? Ok() : ErrnoError("cannot stat " + path);
  if (S_ISLNK(st.st_mode)) return Ok();
  if (st.st_gid != gid && ::lchown(path.c_str(), static_cast<uid_t>(-1), gid) != 0)
    return ErrnoError("cannot give " + path + " to Unix group " + GroupName(gid) +
                      " (nvmuxd must run as root or as a member of it)");
  // The owner's read/write bits for the group too; a directory also setgid,
  // so what DPDK creates in it later belongs to the group.
  mode_t want = (st.st_mode & 07777) | ((st.st_mode & 0600) >> 3);
  if (directory) want |= S_ISGID | 0070;
  if (want != (st.st_mode & 07777) && ::chmod(path.c_str(), want) != 0) return ErrnoError("cannot chmod " + path);
  return Ok();
}

}  // namespace

Result<gid_t> LookupUnixGroup(const std::string& name) {
  std::vector<char> buf(4096);
  group gr{};
  group* out = nullptr;
  if (getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &out) != 0 || out == nullptr)
    return Fail(ENOENT, "no Unix group named '" + name + "' (see /etc/group; scripts/setup.sh user creates one)");
  return out->gr_gid;
}

std::string DescribeAccess(const std::string& path) {
  std::string blocked = BlockedAncestor(path);
  if (!blocked.empty()) return blocked + " may not be entered by " + DescribeUid(geteuid());
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  return path + " belongs to " + DescribeUid(st.st_uid) + ", mode " + Octal(st.st_mode) + "; this process is " +
         DescribeUid(geteuid());
}

std::string DescribeUid(uid_t uid) {
  std::vector<char> buf(4096);
  passwd pw{};
  passwd* out = nullptr;
  std::string text = "uid " + std::to_string(uid);
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &out) == 0 && out != nullptr) text += std::string(" (") + out->pw_name + ")";
  return text;
}

Status CheckGroupAccess(const GroupPaths& paths) {
  NVMUX_TRY(CheckPath(paths, paths.runtime_dir, R_OK | W_OK | X_OK));
  NVMUX_TRY(CheckPath(paths, paths.lock_file, R_OK | W_OK));
  // The hugepage files: each is mapped read/write by every member.
  for (const std::string& file : ListGroupFiles(paths))
    if (file.rfind(paths.runtime_dir + "/", 0) != 0) NVMUX_TRY(CheckPath(paths, file, R_OK | W_OK));
  return Ok();
}

Status CheckCanRemove(const GroupPaths& paths) {
  std::vector<std::string> files = ListGroupFiles(paths);
  files.push_back(paths.runtime_dir);
  for (const std::string& file : files) {
    struct stat st {}, dir {};
    if (::lstat(file.c_str(), &st) != 0) continue;
    std::string parent = Dirname(file);
    if (::stat(parent.c_str(), &dir) != 0) return ErrnoError("cannot look at " + parent);
    bool writable = ::faccessat(AT_FDCWD, parent.c_str(), W_OK | X_OK, AT_EACCESS) == 0;
    // Sticky directories (/tmp-like run dirs): only the file's or the
    // directory's owner (or root) may remove it.
    uid_t me = geteuid();
    bool sticky_ok = !(dir.st_mode & S_ISVTX) || me == 0 || st.st_uid == me || dir.st_uid == me;
    if (!writable || !sticky_ok)
      return Fail(EACCES, "group " + std::to_string(paths.id) + "'s file " + file + " belongs to " +
                              DescribeUid(st.st_uid) + " and this process (" + DescribeUid(me) +
                              ") cannot remove it: run the cleanup as its owner or as root");
  }
  return Ok();
}

Status ShareGroupDirectory(const GroupPaths& paths, gid_t gid) {
  NVMUX_TRY(Share(paths.runtime_dir, gid, true));
  return Share(paths.lock_file, gid, false);
}

namespace {
bool g_status_readable = false;
}  // namespace

void SetStatusReadable(bool on) { g_status_readable = on; }
bool StatusReadable() { return g_status_readable; }

Status MakeStatusReadable(const GroupPaths& paths) {
  for (auto [path, bit] : {std::pair{paths.runtime_dir, mode_t{0001}}, std::pair{paths.lock_file, mode_t{0004}}}) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return ErrnoError("cannot stat " + path);
    if ((st.st_mode & bit) == 0 && ::chmod(path.c_str(), (st.st_mode & 07777) | bit) != 0)
      return ErrnoError("cannot chmod " + path);
  }
  return Ok();
}

Status ShareGroupFiles(const GroupPaths& paths, gid_t gid) {
  NVMUX_TRY(ShareGroupDirectory(paths, gid));
  for (const std::string& file : ListGroupFiles(paths)) NVMUX_TRY(Share(file, gid, false));
  return Ok();
}

}  // namespace nvmux::shm
