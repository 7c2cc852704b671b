// An application outside nvmux's tree: built against the installed package
// (CMake's find_package(nvmux) or pkg-config's nvmux.pc), run as a secondary
// of nvmuxd. It joins the group by its id alone, takes the first controller
// the primary published, writes a pattern to the last block of the first
// namespace, reads it back and compares.
//
//   nvmux-external-app GROUP
#include <nvmux/controller.h>
#include <nvmux/env.h>
#include <nvmux/probe.h>
#include <nvmux/version.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

struct Done {
  bool done = false;
  nvmux::spec::Cqe cpl{};
};

void OnDone(void* arg, const nvmux::spec::Cqe& cpl) {
  auto* d = static_cast<Done*>(arg);
  d->done = true;
  d->cpl = cpl;
}

int Fail(const char* what, const std::string& why) {
  std::fprintf(stderr, "external-app: %s: %s\n", what, why.c_str());
  return 1;
}

// Polls until `d` completed; false on a failed queue pair or an error status.
bool Wait(nvmux::IoQpair& qpair, Done& d) {
  while (!d.done)
    if (!qpair.ProcessCompletions()) return false;
  return !nvmux::IsError(d.cpl);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s GROUP (the -i of a running nvmuxd)\n", argv[0]);
    return 2;
  }
  nvmux::VersionInfo v = nvmux::Version();
  if (std::strcmp(v.string, NVMUX_VERSION_STRING) != 0)
    return Fail("version", std::string("compiled against ") + NVMUX_VERSION_STRING + ", running with " + v.string);
  nvmux::EnvOptions options;
  options.name = "external-app";
  options.group_id = std::atoi(argv[1]);
  auto env = nvmux::Env::Init(options);
  if (!env) return Fail("joining the group", env.error().ToString());
  int rc = 0;
  {
    auto trids = nvmux::GroupControllers(**env);
    if (!trids) return Fail("finding the group's controllers", trids.error().ToString());
    auto ctrlr = nvmux::Controller::Connect(**env, trids->front());
    if (!ctrlr) return Fail("attaching", ctrlr.error().ToString());
    if ((*ctrlr)->active_namespaces().empty()) return Fail("namespaces", "the controller has no active namespace");
    nvmux::Namespace& ns = *(*ctrlr)->GetNamespace((*ctrlr)->active_namespaces()[0]);
    auto qpair = (*ctrlr)->AllocIoQpair();
    if (!qpair) return Fail("queue pair", qpair.error().ToString());
    auto buffer = (*env)->AllocDma(ns.extended_sector_size());
    if (!buffer) return Fail("DMA buffer", buffer.error().ToString());
    const uint64_t lba = ns.num_sectors() - 1;
    auto* bytes = static_cast<unsigned char*>(buffer->data());
    for (size_t i = 0; i < ns.sector_size(); ++i) bytes[i] = static_cast<unsigned char>(i * 7 + lba);
    Done wrote, read;
    if (auto st = (*qpair)->Write(ns, bytes, lba, 1, OnDone, &wrote); !st || !Wait(**qpair, wrote))
      return Fail("write", st ? "completed with an error status" : st.error().ToString());
    std::memset(bytes, 0, ns.sector_size());
    if (auto st = (*qpair)->Read(ns, bytes, lba, 1, OnDone, &read); !st || !Wait(**qpair, read))
      return Fail("read", st ? "completed with an error status" : st.error().ToString());
    for (size_t i = 0; i < ns.sector_size() && rc == 0; ++i)
      if (bytes[i] != static_cast<unsigned char>(i * 7 + lba)) rc = Fail("compare", "byte " + std::to_string(i));
    if (rc == 0)
      std::printf("external-app: nvmux %s (ABI %u): wrote and read back LBA %llu of namespace %u on %s\n", v.string,
                  v.abi, static_cast<unsigned long long>(lba), ns.id(), trids->front().ToString().c_str());
  }
  env->reset();
  return rc;
}
