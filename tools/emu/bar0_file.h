// Bar0File: the file behind BAR0, shared with the client.
//
// The doorbell page [0x1000, 0x2000) of this file is what clients mmap: via
// the fd sent with DEVICE_GET_REGION_INFO (sparse mmap), or, for SPDK hosts
// that open it by name, as <dir>/bar0. The file is created unnamed (O_TMPFILE,
// or a hidden temporary name where that is unsupported) and only published as
// <dir>/bar0 once the caller owns the socket directory, so a failed start
// never touches a live server's file. Destruction removes the name it
// published (only if it still names this file) or the temporary one.
//
// Errors: Create returns the errno of open/ftruncate; Publish the errno of
// linkat/rename.
// Thread safety: none; one owner.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "shm/base/result.h"
#include "shm/base/unique_fd.h"

namespace nvmux::emu {

class Bar0File {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Bar0File>> Create(const std::string& dir, uint64_t size);
  ~Bar0File();
  Bar0File(const Bar0File&) = delete;
  Bar0File& operator=(const Bar0File&) = delete;

  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }
  // Makes the file visible as <dir>/bar0, replacing a stale one.
  [[nodiscard]] Status Publish();

 private:
  Bar0File(UniqueFd fd, std::string path, std::string temp_path)
      : fd_(std::move(fd)), path_(std::move(path)), temp_path_(std::move(temp_path)) {}

  UniqueFd fd_;
  std::string path_;       // <dir>/bar0
  std::string temp_path_;  // hidden name when O_TMPFILE is unavailable
  bool published_ = false;
};

}  // namespace nvmux::emu
