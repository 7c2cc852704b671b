// SpdkPeer: runs the programs of an SPDK build (a peer nobody here wrote:
// ../shared/peers/spdk, named by NVMUX_SPDK_DIR) from the interop tests, and
// cleans what they leave: SPDK's host tools run with -g keep their hugepage
// file (and DPDK runtime directory) after they exit.
//
// Thread safety: one thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace nvmux::test {

struct RunResult {
  int status = -1;     // wait status (-1: could not run)
  std::string output;  // stdout and stderr, interleaved as written
  bool ok() const;     // exited 0
  std::string Describe() const;  // "exited 1" + the output, for assertion messages
};

// Runs argv to its end (killed after `timeout`), stdout and stderr captured
// together. `env` entries ("NAME=value") are added to the environment;
// `input`, if given, is written to its stdin (then closed).
RunResult RunCaptured(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                      std::chrono::seconds timeout, const std::optional<std::string>& input = std::nullopt);

class SpdkPeer {
 public:
  // The SPDK build named by NVMUX_SPDK_DIR, or nullopt (the reason in `why`)
  // when it is unset or holds no bin/spdk_nvme_perf.
  static std::optional<SpdkPeer> Find(std::string& why);

  const std::string& dir() const { return dir_; }
  std::string Bin(const std::string& program) const { return dir_ + "/bin/" + program; }
  // Runs one of SPDK's programs with its libraries found; then removes the
  // hugepage files and DPDK runtime directories of SPDK processes that are gone.
  RunResult Run(const std::string& program, std::vector<std::string> args, std::chrono::seconds timeout,
                const std::optional<std::string>& input = std::nullopt) const;
  // target.sh start vfiouser DIR / tcp PORT; returns SPDK's trid line.
  std::optional<std::string> StartTarget(const std::string& kind, const std::string& address,
                                         std::string& error) const;
  void StopTarget() const;
  // Removes what SPDK processes that are gone left in hugetlbfs and /var/run/dpdk.
  static void CleanLeftovers();

 private:
  explicit SpdkPeer(std::string dir) : dir_(std::move(dir)) {}
  std::vector<std::string> Env() const;

  std::string dir_;
};

// The SPDK host's trid for a vfio-user socket directory: SPDK needs a subnqn
// (without one it treats the address as a discovery service).
std::string SpdkVfioUserTrid(const std::string& dir, const std::string& subnqn);

}  // namespace nvmux::test
