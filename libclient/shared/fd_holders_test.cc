// FdHolders against real processes: a forked holder records its fds in a
// SharedController in shared memory, the test process takes them with
// pidfd_getfd (a parent may, under any Yama ptrace scope).
#include "libclient/shared/fd_holders.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "shm/test_support.h"

namespace nvmux {
namespace {

using shm::testing::ForkChild;
using shm::testing::Pipe;
using shm::testing::SharedMapping;
using shm::testing::TempLockFile;

struct Shared {
  shm::RobustMutexState table_lock;
  shm::ProcessTableState table;
  SharedController controller;
};

// One process's view of the table (POSIX locks are per process).
struct View {
  shm::GroupLockFile file;
  shm::RobustLock table_lock;
  shm::ProcessTable table;
  shm::RobustLock controller_lock;
  View(Shared& s, const std::string& path)
      : file(std::move(*shm::GroupLockFile::Open(path, true))),
        table_lock(s.table_lock, nullptr),
        table(s.table, table_lock, file),
        controller_lock(s.controller.lock, nullptr) {}
};

// A memfd with `tag` as contents, at fd number `at` (dup2'd there).
void MemfdAt(const char* tag, int at) {
  int fd = ::memfd_create(tag, 0);
  if (fd < 0) std::abort();
  (void)!::write(fd, tag, std::char_traits<char>::length(tag));
  if (fd != at) {
    ::dup2(fd, at);
    ::close(fd);
  }
}

// What a taken memfd holds.
std::string Contents(int fd) {
  char buf[64] = {};
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

class FdHoldersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(shm::InitRobustMutex(shared_->table_lock));
    ASSERT_TRUE(shm::InitRobustMutex(shared_->controller.lock));
    shm::ProcessTable::InitState(shared_->table, 8);
  }
  void TearDown() override {
    for (pid_t pid : children_) {
      ::kill(pid, SIGKILL);
      shm::testing::WaitExit(pid);
    }
  }
  // A holder: registers, opens "doorbells" and "connection" at fds 100 and
  // 101 and an eventfd at 102, records them; with `reuse`, then closes both and opens other files
  // at the same numbers (what an exiting holder can do between a taker's
  // read of the record and its pidfd_getfd). Waits to be killed.
  void SpawnHolder(bool reuse, const char* name) {
    Pipe ready;
    pid_t pid = ForkChild([&] {
      View v(*shared_, file_.path());
      if (!v.table.Register(shm::ProcessRole::kSecondary, name, shm::CoreSet::CurrentAffinity())) return 1;
      MemfdAt((std::string(name) + "-doorbells").c_str(), 100);
      MemfdAt((std::string(name) + "-connection").c_str(), 101);
      // The kick fd is an eventfd: an anonymous inode, fstat type 0.
      int kick = ::eventfd(0, 0);
      if (kick < 0 || ::dup2(kick, 102) != 102) return 1;
      const int fds[] = {100, 101, 102};
      RecordFdHolder(shared_->controller, v.controller_lock, *v.table.self_slot(), v.table.self_generation(), fds,
                     4096);
      if (reuse) {
        ::close(100);
        ::close(101);
        MemfdAt("other-file", 100);
        MemfdAt("other-file", 101);
      }
      ready.Signal();
      for (;;) ::pause();
    });
    ASSERT_TRUE(ready.Wait());
    children_.push_back(pid);
  }

  SharedMapping<Shared> shared_;
  TempLockFile file_;
  std::vector<pid_t> children_;
};

TEST_F(FdHoldersTest, TakesTheRecordedFiles) {
  SpawnHolder(false, "a");
  View self(*shared_, file_.path());
  auto taken = TakeFdsFromHolder(shared_->controller, self.table, shm::kMaxProcesses);
  ASSERT_TRUE(taken) << taken.error().message;
  ASSERT_EQ(taken->fds.size(), 3u);
  EXPECT_EQ(Contents(taken->fds[0].get()), "a-doorbells");
  EXPECT_EQ(Contents(taken->fds[1].get()), "a-connection");
  EXPECT_EQ(taken->doorbell_file_offset, 4096u);
  EXPECT_EQ(taken->from_pid, children_[0]);
}

// Issue 16, item 8: the numbers in the record now name other files; the
// taker must refuse them (it used to hand them out as the controller's).
TEST_F(FdHoldersTest, RefusesFdNumbersReusedForOtherFiles) {
  SpawnHolder(true, "a");
  View self(*shared_, file_.path());
  auto taken = TakeFdsFromHolder(shared_->controller, self.table, shm::kMaxProcesses);
  ASSERT_FALSE(taken) << "took " << Contents(taken->fds[0].get()) << " as the controller's doorbell file";
  EXPECT_EQ(taken.error().code, ESTALE) << taken.error().message;
  EXPECT_NE(taken.error().message.find("no longer the file it recorded"), std::string::npos)
      << taken.error().message;
}

// ... and tries the next holder instead.
TEST_F(FdHoldersTest, SkipsAHolderWhoseFdsWereReusedAndTakesAnother) {
  SpawnHolder(true, "a");
  SpawnHolder(false, "b");
  View self(*shared_, file_.path());
  auto taken = TakeFdsFromHolder(shared_->controller, self.table, shm::kMaxProcesses);
  ASSERT_TRUE(taken) << taken.error().message;
  EXPECT_EQ(Contents(taken->fds[0].get()), "b-doorbells");
  EXPECT_EQ(Contents(taken->fds[1].get()), "b-connection");
  EXPECT_EQ(taken->from_pid, children_[1]);
}

}  // namespace
}  // namespace nvmux
