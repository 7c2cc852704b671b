#include "test/integration/driver_test_support.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "shm/base/clock.h"
#include "shm/base/unique_fd.h"
#include "test/util/emu_control.h"

namespace nvmux::test {

Env& TestEnv() {
  static std::unique_ptr<Env> env = [] {
    EnvOptions options;
    options.name = "driver_test";
    auto e = Env::Init(options);
    if (!e) {
      std::fprintf(stderr, "driver test: cannot create the Env: %s\n", e.error().ToString().c_str());
      std::abort();
    }
    return std::move(*e);
  }();
  return *env;
}

// ---- EmuProcess ----

namespace {
constexpr const char* kSetpriv = "/usr/bin/setpriv";  // util-linux
}  // namespace

Result<std::unique_ptr<EmuProcess>> EmuProcess::Start(const std::vector<std::string>& args) {
  // A fresh name the emulator creates, and removes again when it exits —
  // also when the test process crashes: setpriv has the kernel send it
  // SIGTERM when its parent dies, so a crashed test leaves nothing behind.
  static uint32_t started = 0;
  std::string dir = "/tmp/nvmux-drv-" + std::to_string(::getpid()) + "-" + std::to_string(started++);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);  // a dead process's, which had this pid
  std::vector<std::string> argv;
  if (std::filesystem::exists(kSetpriv)) argv = {kSetpriv, "--pdeathsig", "TERM", "--"};
  argv.insert(argv.end(), {NVMUX_EMU, "--socket", dir});
  argv.insert(argv.end(), args.begin(), args.end());
  // Tests start hundreds of emulators: lazy RAM unless a test chose a
  // backing (the populated default costs start-up time and hugepages).
  if (std::find(args.begin(), args.end(), "--backing") == args.end()) {
    argv.insert(argv.end(), {"--backing", "ram-lazy"});
  }
  auto child = Subprocess::Spawn(argv);
  if (!child) return child.error();
  std::unique_ptr<EmuProcess> emu(new EmuProcess(dir, std::move(*child)));
  int64_t deadline = MonotonicNanos() + 10'000'000'000;
  while (!(std::filesystem::exists(dir + "/cntrl") && std::filesystem::exists(dir + "/control"))) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(emu->pid()), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == emu->pid()) {
      auto st = emu->process_.Wait();
      emu->killed_ = true;
      return Fail(ECHILD, "nvmux-emu exited at start (" + (st ? DescribeStatus(*st) : st.error().message) +
                              "); see its message above");
    }
    if (MonotonicNanos() > deadline) return Fail(ETIMEDOUT, "nvmux-emu did not create its sockets in " + dir);
    std::this_thread::sleep_for(1ms);
  }
  return emu;
}

EmuProcess::~EmuProcess() {
  if (!killed_ && process_.running()) {
    process_.Kill(SIGTERM);
    auto st = process_.Wait();
    EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0)
        << "nvmux-emu did not exit cleanly: " << (st ? DescribeStatus(*st) : st.error().message);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

TransportId EmuProcess::trid() const {
  TransportId t;
  t.trtype = TransportType::kVfioUser;
  t.traddr = dir_;
  return t;
}

void EmuProcess::KillHard() {
  process_.Kill(SIGKILL);
  auto st = process_.Wait();
  EXPECT_TRUE(st && WIFSIGNALED(*st) && WTERMSIG(*st) == SIGKILL);
  killed_ = true;
}

Result<std::string> EmuProcess::Control(std::string_view command) { return EmuControl(dir_, command); }

// ---- completions, polling, patterns ----

void OnDone(void* arg, const spec::Cqe& cpl) {
  auto* d = static_cast<Done*>(arg);
  d->calls++;
  d->cpl = cpl;
}

std::string StatusOf(const spec::Cqe& cpl) {
  char text[32];
  std::snprintf(text, sizeof(text), "%u/0x%02x", cpl.sct(), cpl.sc());
  return text;
}

bool PollUntil(IoQpair& qpair, const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  int64_t deadline = MonotonicNanos() + std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
  while (!pred()) {
    auto n = qpair.ProcessCompletions();
    if (!n) {
      ADD_FAILURE() << "ProcessCompletions: " << n.error().ToString();
      return false;
    }
    if (MonotonicNanos() > deadline) return pred();
  }
  return true;
}

bool PollAdminUntil(Controller& ctrlr, const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  int64_t deadline = MonotonicNanos() + std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
  while (!pred()) {
    auto n = ctrlr.ProcessAdminCompletions();
    if (!n) {
      ADD_FAILURE() << "ProcessAdminCompletions: " << n.error().ToString();
      return false;
    }
    if (MonotonicNanos() > deadline) return pred();
  }
  return true;
}

namespace {

uint8_t PatternByte(uint32_t seed, uint64_t i) {
  uint64_t x = (i / 4 + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t{seed} * 0xC2B2AE3D27D4EB4Full);
  x ^= x >> 29;
  return static_cast<uint8_t>(x >> (8 * (i % 4)));
}

}  // namespace

void FillPattern(void* data, size_t bytes, uint32_t seed) {
  auto* p = static_cast<uint8_t*>(data);
  for (size_t i = 0; i < bytes; ++i) p[i] = PatternByte(seed, i);
}

int64_t FirstPatternMismatch(const void* data, size_t bytes, uint32_t seed) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < bytes; ++i)
    if (p[i] != PatternByte(seed, i)) return static_cast<int64_t>(i);
  return -1;
}

bool AllZero(const void* data, size_t bytes) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < bytes; ++i)
    if (p[i] != 0) return false;
  return true;
}

uint64_t SgList::total() const {
  uint64_t n = 0;
  for (const Sge& s : pieces) n += s.length;
  return n;
}

void SgList::Reset(void* arg, uint32_t offset) {
  auto* l = static_cast<SgList*>(arg);
  l->index = 0;
  while (l->index < l->pieces.size() && offset >= l->pieces[l->index].length) {
    offset -= l->pieces[l->index].length;
    l->index++;
  }
  l->offset = offset;
}

Sge SgList::Next(void* arg) {
  auto* l = static_cast<SgList*>(arg);
  if (l->index >= l->pieces.size()) return {};
  const Sge& s = l->pieces[l->index];
  Sge out{static_cast<uint8_t*>(s.address) + l->offset, s.length - l->offset};
  l->index++;
  l->offset = 0;
  return out;
}

// ---- DriverTest ----

void DriverTest::SetUp() {
  (void)TestEnv();
  auto emu = EmuProcess::Start(EmuArgs());
  ASSERT_TRUE(emu) << emu.error().ToString();
  emu_ = std::move(*emu);
  auto c = Controller::Connect(env(), emu_->trid(), ControllerOpts());
  ASSERT_TRUE(c) << c.error().ToString();
  ctrlr_ = std::move(*c);
  auto q = ctrlr_->AllocIoQpair();
  ASSERT_TRUE(q) << q.error().ToString();
  qpair_ = std::move(*q);
}

void DriverTest::TearDown() {
  qpair_.reset();
  ctrlr_.reset();
  emu_.reset();
}

Namespace& DriverTest::ns(uint32_t nsid) {
  Namespace* n = ctrlr_->GetNamespace(nsid);
  if (n == nullptr) {
    ADD_FAILURE() << "namespace " << nsid << " is not active";
    std::abort();  // nothing sensible to return; the failure above says why
  }
  return *n;
}

DmaBuffer DriverTest::Alloc(size_t bytes, size_t align) {
  auto b = env().AllocDma(bytes, align, "driver-test");
  if (!b) {
    ADD_FAILURE() << "AllocDma(" << bytes << "): " << b.error().ToString();
    std::abort();
  }
  return std::move(*b);
}

spec::Cqe DriverTest::Run(IoQpair& q, const std::function<Status(CompletionFn, void*)>& submit) {
  Done d;
  Status st = submit(OnDone, &d);
  if (!st) {
    ADD_FAILURE() << "submission failed: " << st.error().ToString();
    return spec::Cqe{};
  }
  EXPECT_TRUE(PollUntil(q, [&] { return d.done(); })) << "no completion within the deadline";
  EXPECT_EQ(d.calls, 1);
  return d.cpl;
}

void DriverTest::WritePattern(Namespace& n, uint64_t lba, uint32_t count, uint32_t seed) {
  size_t bytes = size_t{count} * n.extended_sector_size();
  DmaBuffer buf = Alloc(bytes);
  FillPattern(buf.data(), bytes, seed);
  spec::Cqe c = Run([&](CompletionFn fn, void* arg) { return qpair().Write(n, buf.data(), lba, count, fn, arg); });
  EXPECT_FALSE(IsError(c)) << "write of " << count << " blocks at " << lba << ": " << StatusOf(c);
}

void DriverTest::ExpectPattern(Namespace& n, uint64_t lba, uint32_t count, uint32_t seed) {
  size_t bytes = size_t{count} * n.extended_sector_size();
  DmaBuffer buf = Alloc(bytes);
  spec::Cqe c = Run([&](CompletionFn fn, void* arg) { return qpair().Read(n, buf.data(), lba, count, fn, arg); });
  EXPECT_FALSE(IsError(c)) << "read of " << count << " blocks at " << lba << ": " << StatusOf(c);
  EXPECT_EQ(FirstPatternMismatch(buf.data(), bytes, seed), -1) << count << " blocks at LBA " << lba;
}

void DriverTest::ExpectZeroes(Namespace& n, uint64_t lba, uint32_t count) {
  size_t bytes = size_t{count} * n.extended_sector_size();
  DmaBuffer buf = Alloc(bytes);
  FillPattern(buf.data(), bytes, 99);
  spec::Cqe c = Run([&](CompletionFn fn, void* arg) { return qpair().Read(n, buf.data(), lba, count, fn, arg); });
  EXPECT_FALSE(IsError(c)) << "read of " << count << " blocks at " << lba << ": " << StatusOf(c);
  EXPECT_TRUE(AllZero(buf.data(), bytes)) << count << " blocks at LBA " << lba << " are not zeroes";
}

}  // namespace nvmux::test
