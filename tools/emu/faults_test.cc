#include "tools/emu/faults.h"

#include <gtest/gtest.h>

namespace nvmux::emu {
namespace {

using Action = FaultDecision::Action;

TEST(FaultParse, CommandLineAndControlForms) {
  auto a = ParseFaultRule("fail:opc=0x02,count=3,sct=2,sc=0x81,queue=admin,dnr=1");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->kind, FaultKind::kFail);
  EXPECT_EQ(a->opcode, 0x02);
  EXPECT_EQ(a->count, 3u);
  EXPECT_EQ(a->status, spec::Dnr(2, 0x81));
  EXPECT_EQ(a->queue, FaultQueue::kAdmin);
  auto b = ParseFaultRule("fail opc=2 sct=2 sc=0x81");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->count, 1u);
  EXPECT_EQ(b->queue, FaultQueue::kIo);
  EXPECT_EQ(Describe(*b), "fail opc=0x02 queue=io count=1 sct=2 sc=0x81 dnr=0");
  auto d = ParseFaultRule("delay:us=500");
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->count.has_value());
  EXPECT_FALSE(d->opcode.has_value());
  auto c = ParseFaultRule("cfs");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->after_ms, 0u);
  EXPECT_EQ(ParseFaultRule("cfs:after_ms=20")->after_ms, 20u);
  auto f = ParseFaultRule("fail");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, spec::Retry(0, 0x06));
}

TEST(FaultParse, ErrorsNameTheValue) {
  for (auto [text, needle] : std::vector<std::pair<std::string, std::string>>{
           {"boom", "boom"}, {"fail:opc=256", "opc=256"}, {"fail:sc=zz", "sc=zz"}, {"delay:opc=1", "us="},
           {"delay:us=0", "us=0"}, {"drop:sct=1", "sct"}, {"fail:queue=x", "queue=x"}, {"cfs:opc=1", "opc"},
           {"fail:sct=0,sc=0", "success"}, {"drop:count=0", "count=0"}, {"fail:opc", "opc"}}) {
    auto r = ParseFaultRule(text);
    ASSERT_FALSE(r) << text;
    EXPECT_EQ(r.error().code, EINVAL);
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
  }
}

TEST(FaultInjectorTest, CountsQueuesAndOpcodes) {
  FaultInjector inj;
  EXPECT_EQ(inj.OnCommand(FaultQueue::kIo, 2).action, Action::kExecute);
  inj.Add(*ParseFaultRule("fail:opc=2,count=2,sct=2,sc=0x81"), 0);
  inj.Add(*ParseFaultRule("drop:opc=1"), 0);
  inj.Add(*ParseFaultRule("delay:us=7,queue=any,count=1"), 0);
  EXPECT_EQ(inj.OnCommand(FaultQueue::kAdmin, 2).action, Action::kExecute);  // admin: no fail; delay used
  FaultDecision d = inj.OnCommand(FaultQueue::kIo, 2);
  EXPECT_EQ(d.action, Action::kFail);
  EXPECT_EQ(d.status, spec::Retry(2, 0x81));
  EXPECT_EQ(d.delay_us, 0u);
  EXPECT_EQ(inj.OnCommand(FaultQueue::kIo, 1).action, Action::kDrop);
  EXPECT_EQ(inj.OnCommand(FaultQueue::kIo, 1).action, Action::kExecute);
  EXPECT_EQ(inj.OnCommand(FaultQueue::kIo, 2).action, Action::kFail);
  EXPECT_EQ(inj.OnCommand(FaultQueue::kIo, 2).action, Action::kExecute);
  EXPECT_NE(inj.Describe().find("rules=0 failed=2 dropped=1 delayed=1"), std::string::npos) << inj.Describe();
}

TEST(FaultInjectorTest, CfsDeadlineFiresOnceAndClearDisarms) {
  FaultInjector inj;
  inj.Add(*ParseFaultRule("cfs:after_ms=5"), 1'000'000);
  EXPECT_FALSE(inj.CfsDue(5'000'000));
  EXPECT_TRUE(inj.CfsDue(6'000'000));
  EXPECT_FALSE(inj.CfsDue(7'000'000));
  inj.Add(*ParseFaultRule("cfs"), 0);
  inj.Add(*ParseFaultRule("delay:us=1"), 0);
  inj.Clear();
  EXPECT_FALSE(inj.CfsDue(100'000'000));
  EXPECT_EQ(inj.OnCommand(FaultQueue::kIo, 0).delay_us, 0u);
}

}  // namespace
}  // namespace nvmux::emu
