#include "tools/emu/bar0_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace nvmux::emu {

Result<std::unique_ptr<Bar0File>> Bar0File::Create(const std::string& dir, uint64_t size) {
  const std::string path = dir + "/bar0";
  std::string temp_path;
  UniqueFd fd(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    // Filesystems without O_TMPFILE: a hidden unique name, renamed on Publish.
    std::string templ = dir + "/.bar0-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    fd.Reset(::mkostemp(buf.data(), O_CLOEXEC));
    if (!fd.valid()) return ErrnoError("creating the BAR0 file in '" + dir + "'");
    temp_path = buf.data();
  }
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    Error e = ErrnoError("sizing the BAR0 file in '" + dir + "'");
    if (!temp_path.empty()) ::unlink(temp_path.c_str());
    return e;
  }
  return std::unique_ptr<Bar0File>(new Bar0File(std::move(fd), path, std::move(temp_path)));
}

Status Bar0File::Publish() {
  if (published_) return Ok();
  if (!temp_path_.empty()) {
    if (::rename(temp_path_.c_str(), path_.c_str()) != 0) return ErrnoError("publishing '" + path_ + "'");
    temp_path_.clear();
    published_ = true;
    return Ok();
  }
  const std::string self = "/proc/self/fd/" + std::to_string(fd_.get());
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, path_.c_str(), AT_SYMLINK_FOLLOW) == 0) {
      published_ = true;
      return Ok();
    }
    if (errno != EEXIST) break;
    ::unlink(path_.c_str());  // stale file of a server that is gone (its socket was stale)
  }
  return ErrnoError("publishing '" + path_ + "'");
}

Bar0File::~Bar0File() {
  if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
  if (!published_) return;
  // Remove the name only if it still refers to this file.
  struct stat mine{};
  struct stat named{};
  if (::fstat(fd_.get(), &mine) == 0 && ::stat(path_.c_str(), &named) == 0 && mine.st_dev == named.st_dev &&
      mine.st_ino == named.st_ino) {
    ::unlink(path_.c_str());
  }
}

}  // namespace nvmux::emu
