#include "test/util/group_fixture.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>

#include "shm/group.h"

namespace nvmux::test {

int FreshGroupId(int salt) {
  static int counter = 0;
  int id = static_cast<int>((static_cast<long>(getpid()) * 16 + salt + counter++) % 900'000) + 10'000;
  EXPECT_TRUE(shm::CleanStaleGroup(id)) << "cleaning stale group " << id;
  return id;
}

std::string MakeTempDir(const std::string& tag) {
  std::string tmpl = "/tmp/nvmux-" + tag + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << tmpl << ": " << std::strerror(errno);
    return "";
  }
  return tmpl;
}

std::unique_ptr<Subprocess> StartProcess(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  auto p = Subprocess::Spawn(argv, env);
  if (!p) {
    ADD_FAILURE() << "starting " << argv.front() << ": " << p.error().message;
    return nullptr;
  }
  return std::make_unique<Subprocess>(std::move(*p));
}

std::unique_ptr<Subprocess> StartEmu(const std::vector<std::string>& argv, const std::string& dir,
                                     const std::vector<std::string>& env) {
  auto emu = StartProcess(argv, env);
  if (!emu) return nullptr;
  // A RAM namespace populated 4 KiB at a time (no spare hugepages) takes
  // seconds on a loaded machine: wait for as long as the emulator lives.
  auto up = [&] { return std::filesystem::exists(dir + "/cntrl") && std::filesystem::exists(dir + "/control"); };
  const auto deadline = std::chrono::steady_clock::now() + kEmuStartTimeout;
  std::optional<int> exited;
  while (!up() && !(exited = emu->TryWait()) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (!up()) {
    ADD_FAILURE() << "nvmux-emu did not come up at " << dir << ": "
                  << (exited ? "it " + DescribeStatus(*exited)
                              : "no socket within " + std::to_string(kEmuStartTimeout.count()) + " s");
    return nullptr;
  }
  return emu;
}

std::unique_ptr<Subprocess> StartNvmuxd(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  auto daemon = StartProcess(argv, env);
  if (!daemon) return nullptr;
  auto line = daemon->ReadUntil("nvmuxd: group", std::chrono::seconds(20));
  if (!line) {
    ADD_FAILURE() << "nvmuxd did not come up: " << line.error().message;
    return nullptr;
  }
  return daemon;
}

void StopCleanly(std::unique_ptr<Subprocess>& p, const std::string& what) {
  if (p && p->running()) {
    p->Kill(SIGTERM);
    auto st = p->Wait(std::chrono::seconds(20));
    EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0)
        << what << " did not stop cleanly: " << (st ? DescribeStatus(*st) : st.error().message);
  }
  p.reset();
}

void KillAll(std::vector<std::unique_ptr<Subprocess>>& children) {
  for (auto& c : children)
    if (c && c->running()) {
      c->Kill(SIGKILL);
      (void)c->Wait();
    }
  children.clear();
}

}  // namespace nvmux::test
