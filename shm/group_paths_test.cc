#include "shm/group_paths.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm/group_lock_file.h"

namespace nvmux::shm {
namespace {

TEST(GroupPaths, RejectsOutOfRangeIds) {
  for (int bad : {-1, kMaxGroupId + 1}) {
    auto p = GroupPaths::For(bad);
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error().code, EINVAL);
    EXPECT_NE(p.error().message.find(std::to_string(bad)), std::string::npos);
  }
  auto p = GroupPaths::For(12);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->prefix, "nvmux12");
}

// One location whoever asks (issue 14): the run dir, not the user, decides.
TEST(GroupPaths, TheRunDirAloneDecidesWhereAGroupLives) {
  std::string before = RunDir();
  ASSERT_TRUE(SetRunDir("/srv/nvmux/"));
  auto p = GroupPaths::For(56);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->run_dir, "/srv/nvmux");
  EXPECT_EQ(p->runtime_dir, "/srv/nvmux/dpdk/nvmux56");
  EXPECT_EQ(p->lock_file, "/srv/nvmux/dpdk/nvmux56/nvmux.lock");
  auto bad = SetRunDir("relative/dir");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, EINVAL);
  EXPECT_NE(bad.error().message.find("relative/dir"), std::string::npos);
  ASSERT_TRUE(SetRunDir(before));
  EXPECT_EQ(GroupPaths::For(56)->runtime_dir, before + "/dpdk/nvmux56");
}

TEST(GroupPaths, ListsAndRemovesOnlyItsOwnGroupsFiles) {
  // Ids of our own: the group tests use 10000..909999 from pids; this one and
  // its neighbour sit above that range (and never on group 0, the demo's).
  int id = 910'000 + getpid() % 40'000 * 2;
  auto p = *GroupPaths::For(id);
  auto other = *GroupPaths::For(id + 1);
  auto lf = GroupLockFile::Open(p.lock_file, true);  // creates the runtime dir
  ASSERT_TRUE(lf) << lf.error().message;
  std::string runtime_file = p.runtime_dir + "/config";
  ::close(::open(runtime_file.c_str(), O_CREAT | O_WRONLY, 0600));
  std::vector<std::string> pages;
  for (const auto& mount : HugetlbfsMounts()) {
    // Only the mounts this user may write (a non-root user's: scripts/setup.sh's).
    if (::access(mount.c_str(), W_OK) != 0) continue;
    pages.push_back(mount + "/" + p.prefix + "map_0");
    pages.push_back(mount + "/" + other.prefix + "map_0");  // a neighbour's: untouched
    for (const auto& f : {pages[pages.size() - 2], pages.back()}) {
      int fd = ::open(f.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);  // never adopt someone else's file
      ASSERT_GE(fd, 0) << f << " already exists";
      ::close(fd);
    }
  }
  auto files = ListGroupFiles(p);
  EXPECT_EQ(files.size(), 2 + pages.size() / 2);
  auto removed = RemoveGroupFiles(p, false);
  EXPECT_TRUE(ListGroupFiles(p).empty());
  EXPECT_EQ(::access(p.runtime_dir.c_str(), F_OK), -1);
  for (size_t i = 1; i < pages.size(); i += 2) {
    EXPECT_EQ(::access(pages[i].c_str(), F_OK), 0) << pages[i];
    ::unlink(pages[i].c_str());
  }
}

}  // namespace
}  // namespace nvmux::shm
