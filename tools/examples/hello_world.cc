// hello_world: the smallest nvmux program. Attaches one controller, writes
// "Hello world!" to LBA 0 of its first namespace, reads it back and prints
// it — SPDK's hello_world, with nvmux's API.
//
//   nvmux-hello-world -r 'trtype:vfiouser traddr:/tmp/emu'   (standalone)
//   nvmux-hello-world -i 0                                   (secondary of nvmuxd -i 0)
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>

#include "nvmux/controller.h"
#include "nvmux/env.h"
#include "nvmux/probe.h"

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

// Polls until the request completed; false on a queue-pair failure.
bool Wait(nvmux::IoQpair& qpair, Done& d) {
  while (!d.done) {
    auto n = qpair.ProcessCompletions();
    if (!n) {
      std::fprintf(stderr, "hello_world: %s\n", n.error().message.c_str());
      return false;
    }
  }
  return true;
}

int Run(const std::string& trid_text, std::optional<int> group) {
  std::optional<nvmux::TransportId> trid;
  if (!trid_text.empty()) {
    auto parsed = nvmux::TransportId::Parse(trid_text);
    if (!parsed) {
      std::fprintf(stderr, "hello_world: -r '%s': %s\n", trid_text.c_str(), parsed.error().message.c_str());
      return 2;
    }
    trid = *parsed;
  } else if (!group) {
    std::fprintf(stderr, "hello_world: which controller? give -r TRID, or -i GROUP for nvmuxd -i GROUP's first\n");
    return 2;
  }
  nvmux::EnvOptions options;
  options.name = "hello_world";
  options.group_id = group;
  auto env = nvmux::Env::Init(options);
  if (!env) {
    std::fprintf(stderr, "hello_world: %s\n", env.error().message.c_str());
    return 1;
  }
  if (!trid) {
    // -i alone: the first controller the group's primary published.
    auto published = nvmux::GroupControllers(**env);
    if (!published) {
      std::fprintf(stderr, "hello_world: -i %d: %s\n", *group, published.error().message.c_str());
      return 1;
    }
    trid = published->front();
  }
  auto ctrlr = nvmux::Controller::Connect(**env, *trid);
  if (!ctrlr) {
    std::fprintf(stderr, "hello_world: %s\n", ctrlr.error().message.c_str());
    return 1;
  }
  std::printf("Attached to %s\n", trid->ToString().c_str());
  if ((*ctrlr)->active_namespaces().empty()) {
    std::fprintf(stderr, "hello_world: the controller has no active namespace\n");
    return 1;
  }
  nvmux::Namespace& ns = *(*ctrlr)->GetNamespace((*ctrlr)->active_namespaces()[0]);
  std::printf("  Namespace ID: %u size: %lu GB\n", ns.id(), static_cast<unsigned long>(ns.size_bytes() / 1000000000));
  auto qpair = (*ctrlr)->AllocIoQpair();
  if (!qpair) {
    std::fprintf(stderr, "hello_world: %s\n", qpair.error().message.c_str());
    return 1;
  }
  auto buffer = (*env)->AllocDma(ns.extended_sector_size());
  if (!buffer) {
    std::fprintf(stderr, "hello_world: %s\n", buffer.error().message.c_str());
    return 1;
  }
  std::snprintf(static_cast<char*>(buffer->data()), ns.sector_size(), "%s", "Hello world!\n");
  Done wrote;
  if (auto st = (*qpair)->Write(ns, buffer->data(), 0, 1, OnDone, &wrote); !st) {
    std::fprintf(stderr, "hello_world: write: %s\n", st.error().message.c_str());
    return 1;
  }
  if (!Wait(**qpair, wrote) || nvmux::IsError(wrote.cpl)) {
    std::fprintf(stderr, "hello_world: write failed (status %u/0x%02x)\n", wrote.cpl.sct(), wrote.cpl.sc());
    return 1;
  }
  std::memset(buffer->data(), 0, ns.sector_size());
  Done read;
  if (auto st = (*qpair)->Read(ns, buffer->data(), 0, 1, OnDone, &read); !st) {
    std::fprintf(stderr, "hello_world: read: %s\n", st.error().message.c_str());
    return 1;
  }
  if (!Wait(**qpair, read) || nvmux::IsError(read.cpl)) {
    std::fprintf(stderr, "hello_world: read failed (status %u/0x%02x)\n", read.cpl.sct(), read.cpl.sc());
    return 1;
  }
  std::printf("%s", static_cast<const char*>(buffer->data()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nvmux hello world: write a string to LBA 0 and read it back"};
  app.footer(
      "Examples:\n  nvmux-hello-world -r 'trtype:vfiouser traddr:/tmp/nvmux-emu'\n  nvmux-hello-world -i 0   (the "
      "first controller of nvmuxd -i 0, as its secondary)");
  std::string trid;
  std::optional<int> group;
  app.add_option("-r,--transport-id", trid,
                 "controller to use (SPDK-style transport id); with -i and no -r: the group's first controller");
  app.add_option("-i,--shm-id", group, "shared-memory group id (join nvmuxd -i N as a secondary)");
  CLI11_PARSE(app, argc, argv);
  return Run(trid, group);
}
