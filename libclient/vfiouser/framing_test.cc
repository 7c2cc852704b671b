#include "libclient/vfiouser/framing.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

namespace nvmux::vfiouser {
namespace {

class FramingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    a_.Reset(sv[0]);
    b_.Reset(sv[1]);
  }
  void SendRaw(const void* data, size_t n) {
    ASSERT_EQ(::send(a_.get(), data, n, MSG_NOSIGNAL), static_cast<ssize_t>(n));
  }
  UniqueFd a_, b_;
};

TEST_F(FramingTest, RoundTripWithFds) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd r(pipe_fds[0]), w(pipe_fds[1]);
  Header h;
  h.msg_id = 7;
  h.cmd = static_cast<uint16_t>(Command::kDmaMap);
  std::vector<uint8_t> payload(100, 0xAB);
  int fds[2] = {r.get(), w.get()};
  ASSERT_TRUE(SendMessage(a_.get(), h, payload, fds));
  auto msg = RecvMessage(b_.get(), 1000, kMaxMessageSize, 8);
  ASSERT_TRUE(msg) << msg.error().ToString();
  EXPECT_EQ(msg->header.msg_id, 7);
  EXPECT_EQ(msg->header.msg_size, 116u);
  EXPECT_EQ(msg->payload, payload);
  ASSERT_EQ(msg->fds.size(), 2u);
  // The received write end reaches the original pipe.
  ASSERT_EQ(::write(msg->fds[1].get(), "x", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(r.get(), &c, 1), 1);
  EXPECT_EQ(c, 'x');
}

TEST_F(FramingTest, CleanCloseIsEnotconn) {
  a_.Reset();
  auto msg = RecvMessage(b_.get(), 1000, kMaxMessageSize, 8);
  ASSERT_FALSE(msg);
  EXPECT_EQ(msg.error().code, ENOTCONN);
}

TEST_F(FramingTest, CloseInsideHeaderIsEproto) {
  uint8_t partial[5] = {};
  SendRaw(partial, sizeof(partial));
  a_.Reset();
  auto msg = RecvMessage(b_.get(), 1000, kMaxMessageSize, 8);
  ASSERT_FALSE(msg);
  EXPECT_EQ(msg.error().code, EPROTO);
}

TEST_F(FramingTest, CloseInsideBodyIsEproto) {
  Header h;
  h.msg_size = 100;
  SendRaw(&h, sizeof(h));
  a_.Reset();
  auto msg = RecvMessage(b_.get(), 1000, kMaxMessageSize, 8);
  ASSERT_FALSE(msg);
  EXPECT_EQ(msg.error().code, EPROTO);
}

TEST_F(FramingTest, SizeBelowHeaderIsEproto) {
  Header h;
  h.msg_size = 8;
  SendRaw(&h, sizeof(h));
  auto msg = RecvMessage(b_.get(), 1000, kMaxMessageSize, 8);
  ASSERT_FALSE(msg);
  EXPECT_EQ(msg.error().code, EPROTO);
}

TEST_F(FramingTest, OversizedIsDiscardedAndStreamStaysUsable) {
  Header big;
  big.msg_size = 16 + 5000;
  std::vector<uint8_t> body(5000, 1);
  ASSERT_TRUE(SendMessage(a_.get(), big, body));
  Header next;
  next.msg_id = 42;
  ASSERT_TRUE(SendMessage(a_.get(), next, {}));
  auto msg = RecvMessage(b_.get(), 1000, 1024, 8);
  ASSERT_FALSE(msg);
  EXPECT_EQ(msg.error().code, E2BIG);
  auto ok = RecvMessage(b_.get(), 1000, 1024, 8);
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_EQ(ok->header.msg_id, 42);
}

TEST_F(FramingTest, TooManyFdsIsEprotoAndClosesThem) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd r(pipe_fds[0]), w(pipe_fds[1]);
  int fds[3] = {w.get(), w.get(), w.get()};
  ASSERT_TRUE(SendMessage(a_.get(), Header{}, {}, fds));
  w.Reset();
  auto msg = RecvMessage(b_.get(), 1000, kMaxMessageSize, 2);
  ASSERT_FALSE(msg);
  EXPECT_EQ(msg.error().code, EPROTO);
  // Every copy of the write end is closed: the read end sees EOF.
  char c;
  EXPECT_EQ(::read(r.get(), &c, 1), 0);
}

TEST_F(FramingTest, TimesOut) {
  auto msg = RecvMessage(b_.get(), 20, kMaxMessageSize, 8);
  ASSERT_FALSE(msg);
  EXPECT_EQ(msg.error().code, ETIMEDOUT);
}

TEST_F(FramingTest, CancelFdInterruptsAWait) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd r(pipe_fds[0]), w(pipe_fds[1]);
  Header h;
  h.msg_size = 64;  // a header promising a body that never comes
  SendRaw(&h, sizeof(h));
  ASSERT_EQ(::write(w.get(), "x", 1), 1);
  auto msg = RecvMessage(b_.get(), 10'000, kMaxMessageSize, 8, r.get());
  ASSERT_FALSE(msg);
  EXPECT_EQ(msg.error().code, ECANCELED);
}

TEST_F(FramingTest, SendToClosedPeerIsEpipeNotSignal) {
  b_.Reset();
  Status s = SendMessage(a_.get(), Header{}, {});
  ASSERT_FALSE(s);
  EXPECT_TRUE(s.error().code == EPIPE || s.error().code == ECONNRESET);
}

TEST(ReadStruct, BoundsChecked) {
  std::vector<uint8_t> bytes(10);
  EXPECT_TRUE(ReadStruct<uint64_t>(bytes, 2));
  EXPECT_FALSE(ReadStruct<uint64_t>(bytes, 3));
  EXPECT_FALSE(ReadStruct<uint64_t>(bytes, 11));
}

}  // namespace
}  // namespace nvmux::vfiouser
