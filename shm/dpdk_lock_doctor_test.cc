// The lock doctor's decision against real processes (no EAL needed): it
// watches plain words in shared memory as it would DPDK's lock words, and
// asks the lock file which processes are inside a DpdkSection.
#include "shm/dpdk_lock_doctor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <optional>

#include "shm/group_lock_file.h"
#include "shm/test_support.h"

namespace nvmux::shm {
namespace {

using testing::ForkChild;
using testing::Pipe;
using testing::SharedMapping;
using testing::TempLockFile;
using testing::WaitExit;

constexpr int64_t kSecond = 1'000'000'000;

struct Words {
  int32_t hotplug;
};

class DpdkLockDoctorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto f = GroupLockFile::Open(file_.path(), true);
    ASSERT_TRUE(f) << f.error().message;
    file_open_ = std::make_unique<GroupLockFile>(std::move(*f));
    DpdkSection::Bind(file_open_->fd());
  }
  void TearDown() override {
    DpdkSection::Bind(-1);
    if (child_ > 0) {
      ::kill(child_, SIGKILL);
      WaitExit(child_);
    }
  }
  // A process that takes the "lock" (the word) and holds it until killed,
  // inside a DpdkSection as nvmux code holding a DPDK lock is (the
  // memory-event callback), or outside one as DPDK's own code is.
  void SpawnHolder(bool in_section) {
    Pipe holding;
    child_ = ForkChild([&] {
      auto f = GroupLockFile::Open(file_.path(), false);
      if (!f) return 1;
      DpdkSection::Bind(f->fd());
      std::optional<DpdkSection> section;
      if (in_section) section.emplace();
      std::atomic_ref<int32_t>(words_->hotplug).store(1);
      holding.Signal();
      for (;;) ::pause();
    });
    ASSERT_TRUE(holding.Wait());
  }
  DpdkLockDoctor Doctor() { return DpdkLockDoctor::Watching({{"hotplug", &words_->hotplug}}); }

  TempLockFile file_;
  std::unique_ptr<GroupLockFile> file_open_;
  SharedMapping<Words> words_;
  pid_t child_ = -1;
};

// Issue 16, item 9: a live process inside DPDK (nvmuxd's memory-event
// callback blocked in a DMA_MAP, say) holds the lock for longer than a
// second; the doctor used to release it then, letting a second writer in.
TEST_F(DpdkLockDoctorTest, NeverReleasesALockWhileItsHolderIsAliveInsideDpdk) {
  SpawnHolder(true);
  DpdkLockDoctor doctor = Doctor();
  for (int64_t t = 0; t <= 5 * kSecond; t += kSecond / 4)
    EXPECT_TRUE(doctor.Check(t).empty()) << "released at " << t / 1'000'000 << " ms while its holder lives";
  EXPECT_EQ(words_->hotplug, 1);
}

// The doctor's own process inside a section (its memory-event callback runs
// on DPDK's IPC thread while the main thread checks): F_GETLK does not
// report a process's own locks, so this is a case of its own.
TEST_F(DpdkLockDoctorTest, NeverReleasesALockItsOwnProcessHoldsInsideDpdk) {
  DpdkLockDoctor doctor = Doctor();
  {
    DpdkSection section;
    words_->hotplug = 1;
    for (int64_t t = 0; t <= 3 * kSecond; t += kSecond / 4) EXPECT_TRUE(doctor.Check(t).empty());
  }
  EXPECT_EQ(words_->hotplug, 1);
}

// A holder killed inside DPDK: its section ends with it, and the word it
// left held is released one stuck period after the doctor last saw a live
// section.
TEST_F(DpdkLockDoctorTest, ReleasesALockLeftByAKilledHolder) {
  SpawnHolder(true);
  DpdkLockDoctor doctor = Doctor();
  EXPECT_TRUE(doctor.Check(0).empty());
  EXPECT_TRUE(doctor.Check(2 * kSecond).empty());  // alive: the wait restarts here
  ::kill(child_, SIGKILL);
  WaitExit(child_);
  child_ = -1;
  EXPECT_TRUE(doctor.Check(2 * kSecond + kSecond / 2).empty()) << "released before a full stuck period";
  auto released = doctor.Check(3 * kSecond + kSecond / 10);
  ASSERT_EQ(released.size(), 1u);
  EXPECT_NE(released[0].find("hotplug"), std::string::npos) << released[0];
  EXPECT_EQ(words_->hotplug, 0);
}

// A word held by a process killed outside any section (DPDK's own threads)
// is still released after the stuck period, as before.
TEST_F(DpdkLockDoctorTest, ReleasesAStuckLockWhenNoLiveProcessIsInsideDpdk) {
  SpawnHolder(false);
  DpdkLockDoctor doctor = Doctor();
  EXPECT_TRUE(doctor.Check(0).empty());
  ::kill(child_, SIGKILL);
  WaitExit(child_);
  child_ = -1;
  EXPECT_TRUE(doctor.Check(kSecond / 2).empty());
  EXPECT_EQ(doctor.Check(kSecond + kSecond / 10).size(), 1u);
  EXPECT_EQ(words_->hotplug, 0);
}

}  // namespace
}  // namespace nvmux::shm
