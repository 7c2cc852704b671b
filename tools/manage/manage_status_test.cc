#include "tools/manage/manage_status.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>

namespace nvmux::manage {
namespace {

shm::ProcessInfo Process(uint32_t slot, uint32_t generation, int pid, const char* name) {
  shm::ProcessInfo p;
  p.slot = slot;
  p.generation = generation;
  p.state = shm::SlotState::kActive;
  p.id.pid = pid;
  p.role = shm::ProcessRole::kSecondary;
  p.name = name;
  return p;
}

// A published controller as a primary leaves it: two processes (slot 0 the
// primary, slot 2 a secondary of generation 5), queues, trackers, mailboxes.
std::unique_ptr<SharedController> Sample() {
  auto c = std::make_unique<SharedController>();
  c->index = 1;
  std::strcpy(c->trid, "trtype:vfiouser traddr:/tmp/x");
  std::strcpy(c->transport_name, "VFIOUSER");
  std::memcpy(c->ctrlr.sn, "SN42                ", 20);
  std::memcpy(c->ctrlr.mn, "model", 5);
  c->ctrlr.cntlid = 7;
  c->num_namespaces = 1;
  c->nsids[0] = 3;
  c->namespaces[0].nsze = 1000;
  c->namespaces[0].ncap = 1000;
  c->namespaces[0].nuse = 10;
  c->namespaces[0].flbas = 1;
  c->namespaces[0].lbaf[1] = spec::LbaFormat{8, 12, 0};
  c->admin_entries = 32;
  auto in_use = [](uint32_t slot, uint32_t generation) {
    return SharedQid{static_cast<uint32_t>(QidState::kInUse), slot, generation, 1, 0, 0};
  };
  c->qids[1] = in_use(2, 5);
  c->qids[2] = in_use(2, 5);
  c->qids[3] = in_use(2, 4);  // an earlier owner of slot 2, gone: not charged to the new one
  c->qids[3].on_device = 0;
  auto flight = [](uint32_t slot, uint32_t generation) {
    return SharedAdminTracker{static_cast<uint32_t>(TrackerState::kInFlight), slot, generation, 0, 0};
  };
  c->trackers[0] = flight(kAerOwner, 0);
  c->trackers[1] = flight(2, 5);
  c->trackers[40] = flight(2, 5);  // beyond admin_entries: not a tracker
  c->aers_outstanding = 1;
  c->admin_submitted = 9;
  c->mailboxes[0].generation = 1;
  c->mailboxes[2].generation = 5;
  c->mailboxes[2].head = 3;
  c->mailboxes[2].tail = 5;
  c->mailboxes[2].dropped = 1;
  return c;
}

TEST(DescribeControllerTest, CountsQueuesAndCommandsOfLiveOwnersOnly) {
  auto c = Sample();
  std::vector<shm::ProcessInfo> procs{Process(0, 1, 100, "nvmuxd"), Process(2, 5, 200, "perf")};
  std::vector<StatusProcess> processes{{0, 100, "primary", "nvmuxd", "any", 0, 0},
                                       {2, 200, "secondary", "perf", "any", 0, 0}};
  StatusController s = DescribeController(*c, true, procs, processes);
  EXPECT_EQ(s.index, 1u);
  EXPECT_EQ(s.trid, "trtype:vfiouser traddr:/tmp/x");
  EXPECT_EQ(s.serial, "SN42");
  EXPECT_EQ(s.model, "model");
  EXPECT_EQ(s.cntlid, 7);
  ASSERT_EQ(s.namespaces.size(), 1u);
  EXPECT_EQ(s.namespaces[0].nsid, 3u);
  EXPECT_EQ(s.namespaces[0].block_size, 4096u);
  EXPECT_EQ(s.namespaces[0].metadata_size, 8);
  EXPECT_EQ(s.namespaces[0].used_blocks, 10u);
  ASSERT_EQ(s.io_queues.size(), 3u);
  EXPECT_EQ(s.io_queues[0].owner.pid, 200);
  EXPECT_EQ(s.io_queues[0].owner.name, "perf");
  EXPECT_EQ(s.io_queues[2].qid, 3);
  EXPECT_EQ(s.io_queues[2].owner.name, "(exited)");
  EXPECT_FALSE(s.io_queues[2].on_device);
  EXPECT_EQ(s.admin_in_flight, 2u);
  EXPECT_EQ(s.aers_outstanding, 1u);
  EXPECT_EQ(processes[1].qpairs, 2u);
  EXPECT_EQ(processes[1].admin_outstanding, 1u);
  EXPECT_EQ(processes[0].qpairs, 0u);
  ASSERT_EQ(s.mailboxes.size(), 2u);
  EXPECT_EQ(s.mailboxes[1].owner.pid, 200);
  EXPECT_EQ(s.mailboxes[1].fill, 2u);
  EXPECT_EQ(s.mailboxes[1].dropped, 1u);

  StatusReport r;
  r.group = 4;
  r.primary_pid = 100;
  r.processes = processes;
  r.controllers.push_back(s);
  r.reaped.push_back({300, 3, "victim", 2, 1'000'000'000});
  std::string json = StatusJson(r);
  EXPECT_NE(json.find("{\"pid\": 300, \"name\": \"victim\", \"released\": 2, \"when_ns\": 1000000000, \"slot\": 3"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"name\": \"perf\", \"cores\": \"any\", \"qpairs\": 2, \"admin_outstanding\": 1}"),
            std::string::npos)
      << json;
  EXPECT_NE(
      json.find("\"io_queues\": [{\"qid\": 1, \"slot\": 2, \"pid\": 200, \"name\": \"perf\", \"on_device\": true}"),
      std::string::npos)
      << json;
  EXPECT_NE(json.find("\"mailboxes\": [{\"slot\": 0, \"pid\": 100, \"name\": \"nvmuxd\", \"fill\": 0, \"dropped\": 0}, "
                      "{\"slot\": 2, \"pid\": 200, \"name\": \"perf\", \"fill\": 2, \"dropped\": 1}]"),
            std::string::npos)
      << json;
  std::string text = StatusText(r);
  EXPECT_NE(text.find("qid 3    slot 2 (exited) (not on the device)"), std::string::npos) << text;
  EXPECT_NE(text.find("reaped: pid 300 (victim, slot 3) at "), std::string::npos) << text;
}

}  // namespace
}  // namespace nvmux::manage
