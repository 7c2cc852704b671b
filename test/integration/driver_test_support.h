// Support for the driver's integration tests (driver_*_test.cc): the one
// Env of the test process, a real nvmux-emu process per test (its own
// /tmp/nvmux-drv-* directory, removed even when the test fails), its fault
// control socket, and small helpers to submit, poll with deadlines and check
// data.
//
// Thread safety: single-threaded, like the tests.
// Ownership: fixtures destroy queue pairs, then controllers, then the
// emulator; the Env lives until the process exits (DPDK initialises once).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "nvmux/controller.h"
#include "nvmux/env.h"
#include "test/util/subprocess.h"

namespace nvmux::test {

using namespace std::chrono_literals;

// The process's Env (standalone, created on first use). Aborts the test
// binary when it cannot be created (no hugepages), since nothing can run.
Env& TestEnv();

// One nvmux-emu process on a private socket directory.
class EmuProcess {
 public:
  // Starts `NVMUX_EMU --socket <new dir> args...` and waits (10 s at most)
  // for its vfio-user and control sockets. Errors: from mkdtemp/fork, or
  // ETIMEDOUT when the sockets did not appear (the process is killed).
  static Result<std::unique_ptr<EmuProcess>> Start(const std::vector<std::string>& args = {});
  // SIGTERM and a clean exit expected (unless it was killed); the directory removed.
  ~EmuProcess();
  EmuProcess(const EmuProcess&) = delete;
  EmuProcess& operator=(const EmuProcess&) = delete;

  const std::string& dir() const { return dir_; }
  TransportId trid() const;
  // One command on <dir>/control; returns its reply line ("ok ..." or
  // "error ..."). Errors: ECONNREFUSED/ENOENT, ETIMEDOUT (5 s), EPIPE.
  Result<std::string> Control(std::string_view command);
  void Signal(int sig) { process_.Kill(sig); }
  // SIGKILL and reap (the emulator dies as if it crashed).
  void KillHard();
  pid_t pid() const { return process_.pid(); }

 private:
  EmuProcess(std::string dir, Subprocess process) : dir_(std::move(dir)), process_(std::move(process)) {}
  std::string dir_;
  Subprocess process_;
  bool killed_ = false;
};

// A completion recorded by OnDone (cb_arg = Done*).
struct Done {
  int calls = 0;
  spec::Cqe cpl{};
  bool done() const { return calls > 0; }
  bool ok() const { return calls == 1 && !IsError(cpl); }
};
void OnDone(void* arg, const spec::Cqe& cpl);

// "SCT/SC" of a completion, for messages.
std::string StatusOf(const spec::Cqe& cpl);

// Polls `qpair` until `pred` holds; false on deadline. A ProcessCompletions
// error is a test failure (and returns false).
bool PollUntil(IoQpair& qpair, const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s);
// Polls the admin queue likewise.
bool PollAdminUntil(Controller& ctrlr, const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s);

// Bytes of a test pattern: a function of (seed, byte offset).
void FillPattern(void* data, size_t bytes, uint32_t seed);
// Index of the first byte that differs from the pattern, or -1.
int64_t FirstPatternMismatch(const void* data, size_t bytes, uint32_t seed);
bool AllZero(const void* data, size_t bytes);

// A scatter-gather iterator over a list of (address, length) pieces, for
// ReadV/WriteV: cb_arg is the SgList itself, so it also records the
// completion (pass SgList::Completed as the callback).
struct SgList {
  std::vector<Sge> pieces;
  size_t index = 0;
  uint32_t offset = 0;  // into pieces[index]
  Done done;
  uint64_t total() const;
  static void Reset(void* arg, uint32_t offset);
  static Sge Next(void* arg);
  static void Completed(void* arg, const spec::Cqe& cpl) { OnDone(&static_cast<SgList*>(arg)->done, cpl); }
};

// The common fixture: a fresh emulator with EmuArgs(), a controller
// attached with ControllerOpts(), and one queue pair. Namespace 1 is ns().
class DriverTest : public ::testing::Test {
 protected:
  virtual std::vector<std::string> EmuArgs() const { return {"--ns", "size=256M"}; }
  virtual ControllerOptions ControllerOpts() const { return {}; }
  void SetUp() override;
  void TearDown() override;

  Env& env() { return TestEnv(); }
  Controller& ctrlr() { return *ctrlr_; }
  IoQpair& qpair() { return *qpair_; }
  // Namespace `nsid`, looked up now: a namespace refresh (Format, attach,
  // an AEN, Reset) replaces the objects, so tests never keep the pointer
  // across admin work.
  Namespace& ns(uint32_t nsid = 1);
  DmaBuffer Alloc(size_t bytes, size_t align = 4096);

  // Submits with `submit(fn, arg)` (which must succeed) and polls `q` until
  // its callback ran; returns the completion (a test failure on timeout).
  spec::Cqe Run(IoQpair& q, const std::function<Status(CompletionFn, void*)>& submit);
  spec::Cqe Run(const std::function<Status(CompletionFn, void*)>& submit) { return Run(qpair(), submit); }
  // Writes `count` blocks of pattern `seed` at `lba` of `n`, checking success.
  void WritePattern(Namespace& n, uint64_t lba, uint32_t count, uint32_t seed);
  // Reads `count` blocks and checks them against pattern `seed`.
  void ExpectPattern(Namespace& n, uint64_t lba, uint32_t count, uint32_t seed);
  void ExpectZeroes(Namespace& n, uint64_t lba, uint32_t count);
  // One command on the emulator's control socket, which must answer "ok".
  void ControlOk(const std::string& command) {
    auto reply = emu_->Control(command);
    ASSERT_TRUE(reply) << command << ": " << reply.error().ToString();
    ASSERT_EQ(reply->rfind("ok", 0), 0u) << command << ": " << *reply;
  }

  std::unique_ptr<EmuProcess> emu_;
  std::unique_ptr<Controller> ctrlr_;
  std::unique_ptr<IoQpair> qpair_;
};

}  // namespace nvmux::test
