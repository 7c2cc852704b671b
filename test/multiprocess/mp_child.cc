// nvmux_mp_child: the secondary the multi-process tests start (and kill).
//
//   nvmux_mp_child io -i G -r TRID --lba L --blocks N --seconds S [--qd Q]
//     joins group G, opens a queue pair, prints "ready <qid>", then writes
//     and reads back its own LBA range [L, L+N) with a per-pass pattern
//     until S seconds passed; prints "done <ios>" and exits 0, or exits 1
//     naming the first error (status, mismatch, ENXIO). Polls the admin
//     queue every 2 ms and prints "aen <cdw0>" for each asynchronous event;
//     with --admin-ms N also reads the SMART log every N ms (an error ends it).
//   nvmux_mp_child admin -i G -r TRID
//     joins, runs Identify Controller, Get Log Page (SMART) and creates and
//     deletes two queue pairs through the shared admin queue, then leaves;
//     prints "admin ok" (exit 0) or the error (exit 1).
//   nvmux_mp_child fill|verify -i G -r TRID --lba L --blocks N --seed S
//     writes (fill) or reads back and checks (verify) the range [L, L+N)
//     with the pattern of S, 8 blocks per command; prints "filled N" /
//     "verified N" (exit 0) or the first error or mismatch (exit 1).
//     scripts/soak.sh's final read-back.
//   nvmux_mp_child census -i G
//     joins group G and prints one line of JSON: the queue ids in use (with
//     owner slots), admin trackers in flight, live DMA records and bytes,
//     DPDK's shared heap (allocations and bytes, this process's included)
//     and the reap history (pid, realtime ns) — what the crash tests check.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "libclient/shared/shared_registry.h"
#include "nvmux/controller.h"
#include "nvmux/env.h"
#include "shm/eal.h"
#include "shm/base/clock.h"
#include "shm/group.h"

namespace nvmux {
namespace {

std::atomic<bool> g_stop{false};

struct Slot {
  uint64_t lba = 0;
  bool busy = false;
  bool writing = false;  // the last operation: the first is a write
  uint32_t pass = 0;
  DmaBuffer buffer;
  int* errors = nullptr;
  uint64_t* ios = nullptr;
  uint32_t block = 512;
  uint32_t count = 8;
};

void Fill(Slot& s) {
  auto* words = static_cast<uint32_t*>(s.buffer.data());
  for (uint32_t i = 0; i < s.count * s.block / 4; ++i) words[i] = static_cast<uint32_t>(s.lba * 7919 + s.pass * 31 + i);
}

bool Check(const Slot& s) {
  const auto* words = static_cast<const uint32_t*>(s.buffer.data());
  for (uint32_t i = 0; i < s.count * s.block / 4; ++i)
    if (words[i] != static_cast<uint32_t>(s.lba * 7919 + s.pass * 31 + i)) return false;
  return true;
}

void OnDone(void* arg, const spec::Cqe& cpl) {
  auto* s = static_cast<Slot*>(arg);
  s->busy = false;
  ++*s->ios;
  if (IsError(cpl)) {
    std::fprintf(stderr, "mp_child: %s at LBA %llu failed: status %u/0x%02x\n", s->writing ? "write" : "read",
                 static_cast<unsigned long long>(s->lba), cpl.sct(), cpl.sc());
    ++*s->errors;
    return;
  }
  if (!s->writing && !Check(*s)) {
    std::fprintf(stderr, "mp_child: data mismatch at LBA %llu\n", static_cast<unsigned long long>(s->lba));
    ++*s->errors;
  }
}

// Joins the group and connects the controller; prints why not.
struct Joined {
  std::unique_ptr<Env> env;
  std::unique_ptr<Controller> ctrlr;
};
std::optional<Joined> Join(int group, const std::string& trid_text, const char* name) {
  EnvOptions o;
  o.name = name;
  o.group_id = group;
  auto env = Env::Init(o);
  if (!env) {
    std::fprintf(stderr, "mp_child: %s\n", env.error().message.c_str());
    return std::nullopt;
  }
  auto trid = TransportId::Parse(trid_text);
  if (!trid) {
    std::fprintf(stderr, "mp_child: -r: %s\n", trid.error().message.c_str());
    return std::nullopt;
  }
  auto ctrlr = Controller::Connect(**env, *trid);
  if (!ctrlr) {
    std::fprintf(stderr, "mp_child: %s\n", ctrlr.error().message.c_str());
    return std::nullopt;
  }
  return Joined{std::move(*env), std::move(*ctrlr)};
}

int RunRange(int group, const std::string& trid_text, uint64_t lba0, uint64_t blocks, uint32_t seed, bool verify) {
  auto joined = Join(group, trid_text, verify ? "mp_verify" : "mp_fill");
  if (!joined) return 1;
  Namespace* ns = joined->ctrlr->GetNamespace(1);
  // Before the queue pair: leaving on an error destroys it first, and its
  // destruction completes what is outstanding (OnDone writes these).
  int errors = 0;
  uint64_t ios = 0;
  Slot s;
  auto qpair = joined->ctrlr->AllocIoQpair();
  if (!qpair) {
    std::fprintf(stderr, "mp_child: %s\n", qpair.error().message.c_str());
    return 1;
  }
  auto b = joined->env->AllocDma(8 * ns->sector_size());
  if (!b) return 1;
  s.buffer = std::move(*b);
  s.errors = &errors;
  s.ios = &ios;
  s.block = ns->sector_size();
  s.count = 8;
  s.pass = seed;
  for (uint64_t off = 0; off + 8 <= blocks && errors == 0; off += 8) {
    s.lba = lba0 + off;
    s.writing = !verify;
    if (!verify) Fill(s);
    s.busy = true;
    Status st = verify ? (*qpair)->Read(*ns, s.buffer.data(), s.lba, 8, OnDone, &s)
                       : (*qpair)->Write(*ns, s.buffer.data(), s.lba, 8, OnDone, &s);
    if (!st) {
      std::fprintf(stderr, "mp_child: submit: %s\n", st.error().message.c_str());
      return 1;
    }
    while (s.busy) {
      auto n = (*qpair)->ProcessCompletions();
      if (!n) {
        std::fprintf(stderr, "mp_child: %s\n", n.error().message.c_str());
        return 1;
      }
    }
  }
  if (errors != 0) return 1;
  std::printf("%s %llu\n", verify ? "verified" : "filled", static_cast<unsigned long long>(blocks));
  return 0;
}

// The queue pair `io --leak-qpair` never frees.
IoQpair* volatile g_leaked_qpair = nullptr;  // volatile: a write-only global would be optimised away

int RunIo(int group, const std::string& trid_text, uint64_t lba0, uint64_t blocks, double seconds, uint32_t qd,
          int admin_ms, bool leak_qpair) {
  auto joined = Join(group, trid_text, "mp_child");
  if (!joined) return 1;
  std::unique_ptr<Env>* env = &joined->env;
  std::unique_ptr<Controller>* ctrlr = &joined->ctrlr;
  Namespace* ns = (*ctrlr)->GetNamespace(1);
  // Before the queue pair: leaving on an error (ENXIO) destroys it first,
  // and its destruction completes what is outstanding (OnDone writes these).
  int errors = 0;
  uint64_t ios = 0;
  std::vector<Slot> slots(qd);
  auto qpair = (*ctrlr)->AllocIoQpair();
  if (!qpair) {
    std::fprintf(stderr, "mp_child: %s\n", qpair.error().message.c_str());
    return 1;
  }
  uint32_t per = 8;
  if (blocks % (uint64_t{per} * qd) != 0) {
    std::fprintf(stderr, "mp_child: --blocks %llu must be a multiple of 8 x --qd\n", static_cast<unsigned long long>(blocks));
    return 2;
  }
  for (uint32_t i = 0; i < qd; ++i) {
    auto b = (*env)->AllocDma(per * ns->sector_size());
    if (!b) return 1;
    slots[i].buffer = std::move(*b);
    slots[i].errors = &errors;
    slots[i].ios = &ios;
    slots[i].block = ns->sector_size();
    slots[i].count = per;
    slots[i].lba = lba0 + (i * per) % blocks;
  }
  // Events reach every process's mailbox; each is printed when polled.
  (*ctrlr)->SetAerCallback(
      [](void*, const spec::Cqe& cpl) {
        std::printf("aen 0x%08x\n", cpl.cdw0);
        std::fflush(stdout);
      },
      nullptr);
  std::printf("ready %u\n", (*qpair)->id());
  std::fflush(stdout);
  int64_t end = MonotonicNanos() + static_cast<int64_t>(seconds * 1e9);
  int64_t next_admin_poll = 0;
  int64_t next_admin_command = admin_ms > 0 ? MonotonicNanos() : INT64_MAX;
  auto log = (*env)->AllocDma(4096);
  if (!log) return 1;
  while (MonotonicNanos() < end && errors == 0 && !g_stop.load()) {
    if (int64_t now = MonotonicNanos(); now >= next_admin_poll) {
      next_admin_poll = now + 2'000'000;
      if (auto n = (*ctrlr)->ProcessAdminCompletions(); !n) {
        std::fprintf(stderr, "mp_child: admin: %s\n", n.error().message.c_str());
        return 1;
      }
    }
    if (int64_t now = MonotonicNanos(); now >= next_admin_command) {
      next_admin_command = now + int64_t{admin_ms} * 1'000'000;
      if (Status st = (*ctrlr)->GetLogPage(0x02, 0xFFFFFFFFu, log->data(), 512); !st) {
        std::fprintf(stderr, "mp_child: admin command: %s\n", st.error().message.c_str());
        return 1;
      }
    }
    for (Slot& s : slots) {
      if (s.busy) continue;
      if (s.writing) {
        s.writing = false;  // read back what was just written
      } else {
        s.writing = true;
        s.pass++;
        // Slot i owns residue i (mod qd) of the range's 8-block units: no
        // two slots ever touch the same LBAs at once.
        uint64_t i = static_cast<uint64_t>(&s - slots.data());
        s.lba = lba0 + ((i + uint64_t{s.pass} * qd) * per) % blocks;
        Fill(s);
      }
      s.busy = true;
      Status st = s.writing ? (*qpair)->Write(*ns, s.buffer.data(), s.lba, per, OnDone, &s)
                            : (*qpair)->Read(*ns, s.buffer.data(), s.lba, per, OnDone, &s);
      if (!st) {
        std::fprintf(stderr, "mp_child: submit: %s\n", st.error().message.c_str());
        return 1;
      }
    }
    auto n = (*qpair)->ProcessCompletions();
    if (!n) {
      std::fprintf(stderr, "mp_child: %s\n", n.error().message.c_str());
      return 1;
    }
  }
  while ((*qpair)->outstanding() > 0)
    if (!(*qpair)->ProcessCompletions()) return 1;
  std::printf("done %llu\n", static_cast<unsigned long long>(ios));
  std::fflush(stdout);
  if (leak_qpair) {
    // Leaves with the queue pair still allocated (the Controller and Env
    // are destroyed as usual): its queue must not outlive us on the device.
    // (Kept reachable from a global so LeakSanitizer does not count it.)
    g_leaked_qpair = qpair->release();
  }
  return errors == 0 ? 0 : 1;
}

// Joins, runs admin commands (Identify Controller, SMART log, two queue
// pairs created and deleted) and leaves; prints "admin ok" or exits 1.
int RunAdmin(int group, const std::string& trid_text) {
  auto joined = Join(group, trid_text, "mp_admin");
  if (!joined) return 1;
  std::unique_ptr<Env>* env = &joined->env;
  std::unique_ptr<Controller>* ctrlr = &joined->ctrlr;
  auto page = (*env)->AllocDma(4096);
  if (!page) return 1;
  if (Status st = (*ctrlr)->Identify(0x01, 0, page->data()); !st) {
    std::fprintf(stderr, "mp_child: identify: %s\n", st.error().message.c_str());
    return 1;
  }
  const auto* id = static_cast<const spec::IdentifyController*>(page->data());
  if (id->vid != (*ctrlr)->data().vid) {
    std::fprintf(stderr, "mp_child: identify data differs from the published copy\n");
    return 1;
  }
  if (Status st = (*ctrlr)->GetLogPage(0x02, 0xFFFFFFFFu, page->data(), 512); !st) {
    std::fprintf(stderr, "mp_child: get log page: %s\n", st.error().message.c_str());
    return 1;
  }
  for (int i = 0; i < 2; ++i) {
    auto q = (*ctrlr)->AllocIoQpair();
    if (!q) {
      std::fprintf(stderr, "mp_child: qpair: %s\n", q.error().message.c_str());
      return 1;
    }
  }
  std::printf("admin ok\n");
  return 0;
}

int Census(int group) {
  EnvOptions o;
  o.name = "mp_census";
  o.group_id = group;
  auto env = Env::Init(o);
  if (!env) {
    std::fprintf(stderr, "mp_child: %s\n", env.error().message.c_str());
    return 1;
  }
  shm::Group& g = (*env)->group();
  std::string qids, trackers;
  auto published = PublishedControllers(g);
  uint64_t orphaned = 0;
  if (published) {
    for (SharedController* c : *published) {
      shm::RobustLock lock(c->lock, [] { return Ok(); });
      auto guard = lock.Lock();
      for (uint32_t q = 1; q < kMaxSharedQids; ++q)
        if (c->qids[q].state != 0)
          qids += (qids.empty() ? "" : ",") + std::string("[") + std::to_string(q) + "," +
                  std::to_string(c->qids[q].owner_slot) + "," + std::to_string(c->qids[q].on_device) + "]";
      uint32_t busy = 0;
      for (uint32_t t = 0; t < c->admin_entries; ++t)
        if (c->trackers[t].state != 0 && c->trackers[t].owner_slot != kAerOwner) ++busy;
      trackers += (trackers.empty() ? "" : ",") + std::to_string(busy);
      orphaned += c->orphaned;
    }
  }
  auto usage = g.dma().TotalUsage();
  const shm::HeapStats heap = shm::ReadHeapStats();
  std::string reaped;
  for (const shm::ReapRecord& r : g.processes().ReapHistory())
    reaped += (reaped.empty() ? "" : ",") + std::string("[") + std::to_string(r.pid) + "," +
              std::to_string(r.reaped_realtime_ns) + "]";
  std::printf("{\"self_slot\": %u, \"qids\": [%s], \"admin_in_flight\": [%s], \"orphaned\": %llu, "
              "\"dma_records\": %u, \"dma_bytes\": %llu, \"heap_allocations\": %zu, \"heap_bytes\": %zu, "
              "\"reaped\": [%s]}\n",
              g.self_slot(), qids.c_str(), trackers.c_str(), static_cast<unsigned long long>(orphaned),
              usage.allocations, static_cast<unsigned long long>(usage.bytes), heap.allocations,
              heap.allocated_bytes, reaped.c_str());
  return 0;
}

}  // namespace
}  // namespace nvmux

int main(int argc, char** argv) {
  CLI::App app{"multi-process test child"};
  app.require_subcommand(1);
  int group = 0;
  std::string trid;
  uint64_t lba = 0, blocks = 1024;
  double seconds = 1;
  uint32_t qd = 8;
  auto* io = app.add_subcommand("io", "I/O on an own LBA range");
  io->add_option("-i", group)->required();
  io->add_option("-r", trid)->required();
  io->add_option("--lba", lba);
  io->add_option("--blocks", blocks);
  io->add_option("--seconds", seconds);
  io->add_option("--qd", qd);
  int admin_ms = 0;
  io->add_option("--admin-ms", admin_ms, "also read the SMART log (an admin command) every N ms");
  bool leak_qpair = false;
  io->add_flag("--leak-qpair", leak_qpair, "exit without freeing the queue pair");
  auto* admin = app.add_subcommand("admin", "join, run admin commands, leave");
  admin->add_option("-i", group)->required();
  admin->add_option("-r", trid)->required();
  uint32_t seed = 0;
  auto* fill = app.add_subcommand("fill", "write a pattern over an LBA range");
  auto* verify = app.add_subcommand("verify", "read an LBA range back and check the pattern");
  for (CLI::App* sub : {fill, verify}) {
    sub->add_option("-i", group)->required();
    sub->add_option("-r", trid)->required();
    sub->add_option("--lba", lba);
    sub->add_option("--blocks", blocks);
    sub->add_option("--seed", seed);
  }
  auto* census = app.add_subcommand("census", "print the group's driver state");
  census->add_option("-i", group)->required();
  CLI11_PARSE(app, argc, argv);
  // SIGTERM: finish what is outstanding and report, as a clean stop.
  signal(SIGTERM, [](int) { nvmux::g_stop.store(true); });
  if (io->parsed()) return nvmux::RunIo(group, trid, lba, blocks, seconds, qd, admin_ms, leak_qpair);
  if (admin->parsed()) return nvmux::RunAdmin(group, trid);
  if (fill->parsed() || verify->parsed()) return nvmux::RunRange(group, trid, lba, blocks, seed, verify->parsed());
  return nvmux::Census(group);
}
