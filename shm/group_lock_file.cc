#include "shm/group_lock_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

namespace nvmux::shm {
namespace {

constexpr char kMagic[8] = {'N', 'V', 'M', 'U', 'X', 'L', 'C', 'K'};

struct flock MakeLock(short type, off_t start, off_t len) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = start;
  fl.l_len = len;
  return fl;
}

// The directories above the group's are searchable by everyone (0755): the
// run dir is shared by every user (group_paths.h); the group's own is 0700
// until an access group is given.
Status MakeDirs(const std::string& path) {
  for (size_t pos = 1; pos != std::string::npos;) {
    pos = path.find('/', pos + 1);
    std::string dir = path.substr(0, pos);
    mode_t mode = pos == std::string::npos ? 0700 : 0755;
    if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) return ErrnoError("cannot create " + dir);
  }
  return Ok();
}

}  // namespace

Result<GroupLockFile> GroupLockFile::Open(const std::string& path, bool create) {
  if (create) {
    NVMUX_TRY(MakeDirs(path.substr(0, path.rfind('/'))));
  }
  int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0);
  UniqueFd fd(::open(path.c_str(), flags, 0600));
  if (!fd.valid()) {
    if (errno == ENOENT) return Fail(ENODEV, path + " does not exist");
    return ErrnoError("cannot open " + path);
  }
  return GroupLockFile(std::move(fd));
}

Result<GroupLockFile> GroupLockFile::OpenForProbe(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return Fail(ENODEV, path + " does not exist");
    return ErrnoError("cannot open " + path);
  }
  return GroupLockFile(std::move(fd));
}

std::optional<pid_t> GroupLockFile::Probe(short type, off_t start, off_t len) const {
  struct flock fl = MakeLock(type, start, len);
  // A failed query reads as "held": callers reap or remove on "not held".
  if (::fcntl(fd_.get(), F_GETLK, &fl) != 0) return pid_t{0};
  if (fl.l_type == F_UNLCK) return std::nullopt;
  return fl.l_pid;
}

bool GroupLockFile::StillAtPath(const std::string& path) const {
  struct stat open_file {}, at_path {};
  if (::fstat(fd_.get(), &open_file) != 0 || ::stat(path.c_str(), &at_path) != 0) return false;
  return open_file.st_dev == at_path.st_dev && open_file.st_ino == at_path.st_ino;
}

Status GroupLockFile::LockPrimaryRole() {
  struct flock fl = MakeLock(F_WRLCK, kPrimaryByte, 1);
  if (::fcntl(fd_.get(), F_SETLK, &fl) == 0) return Ok();
  int err = errno;
  if (err == EAGAIN || err == EACCES) {
    auto holder = PrimaryHolder();
    return Fail(EBUSY, "the group already has a primary (pid " + std::to_string(holder.value_or(0)) + ")");
  }
  return Fail(err, std::string("cannot lock the primary role: ") + std::strerror(err));
}

std::optional<pid_t> GroupLockFile::PrimaryHolder() const { return Probe(F_WRLCK, kPrimaryByte, 1); }

Status GroupLockFile::JoinMembership() {
  struct flock fl = MakeLock(F_RDLCK, kMemberByte, 1);
  if (::fcntl(fd_.get(), F_SETLK, &fl) != 0) return ErrnoError("cannot take group membership lock");
  return Ok();
}

std::optional<pid_t> GroupLockFile::OtherLiveMember() const {
  // l_len 0 = to the end of the file and beyond: membership and every slot.
  return Probe(F_WRLCK, kMemberByte, 0);
}

Status GroupLockFile::LockSlot(uint32_t slot) {
  struct flock fl = MakeLock(F_WRLCK, kSlotBase + static_cast<off_t>(slot), 1);
  if (::fcntl(fd_.get(), F_SETLK, &fl) == 0) return Ok();
  if (errno == EAGAIN || errno == EACCES)
    return Fail(EBUSY, "slot " + std::to_string(slot) + " liveness lock is held by another process");
  return ErrnoError("cannot lock slot " + std::to_string(slot));
}

void GroupLockFile::UnlockSlot(uint32_t slot) {
  struct flock fl = MakeLock(F_UNLCK, kSlotBase + static_cast<off_t>(slot), 1);
  (void)::fcntl(fd_.get(), F_SETLK, &fl);
}

bool GroupLockFile::SlotHeldByOther(uint32_t slot) const {
  return Probe(F_WRLCK, kSlotBase + static_cast<off_t>(slot), 1).has_value();
}

Status GroupLockFile::WriteHeader(const LockFileHeader& header) {
  LockFileHeader h = header;
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  if (::pwrite(fd_.get(), &h, sizeof(h), 0) != static_cast<ssize_t>(sizeof(h)))
    return ErrnoError("cannot write the group lock file header");
  return Ok();
}

Result<LockFileHeader> GroupLockFile::ReadHeader() const {
  LockFileHeader h{};
  if (::pread(fd_.get(), &h, sizeof(h), 0) != static_cast<ssize_t>(sizeof(h)) ||
      std::memcmp(h.magic, kMagic, sizeof(kMagic)) != 0)
    return Fail(ENODATA, "the group lock file has no primary header yet");
  return h;
}

}  // namespace nvmux::shm
