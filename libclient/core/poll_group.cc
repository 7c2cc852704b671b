// PollGroup: membership (kept on both sides: the group's list and the
// queue pair's poll_group, so Add finds another group and destruction of
// either side unlinks the other) and the group poll.
#include "nvmux/poll_group.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <type_traits>

#include "libclient/core/qpair_state.h"
#include "shm/base/clock.h"

namespace nvmux {
namespace {

// statistics() adds up every field by name: a new QpairStatistics field
// must be added there too.
static_assert(sizeof(QpairStatistics) == 19 * sizeof(uint64_t) && std::is_trivially_copyable_v<QpairStatistics>,
              "QpairStatistics changed: add the new field to PollGroup::statistics()");

void AddUp(QpairStatistics& sum, const QpairStatistics& s) {
  sum.submitted += s.submitted;
  sum.completed += s.completed;
  sum.polls += s.polls;
  sum.idle_polls += s.idle_polls;
  sum.sq_doorbell_writes += s.sq_doorbell_writes;
  sum.cq_doorbell_writes += s.cq_doorbell_writes;
  sum.shadow_doorbell_updates += s.shadow_doorbell_updates;
  sum.queued += s.queued;
  sum.split += s.split;
  sum.blocks += s.blocks;
  sum.wakeups += s.wakeups;
  sum.tcp_pdus_sent += s.tcp_pdus_sent;
  sum.tcp_pdus_received += s.tcp_pdus_received;
  sum.tcp_in_capsule_writes += s.tcp_in_capsule_writes;
  sum.tcp_r2ts += s.tcp_r2ts;
  sum.tcp_h2c_data += s.tcp_h2c_data;
  sum.tcp_c2h_data += s.tcp_c2h_data;
  sum.tcp_send_calls += s.tcp_send_calls;
  sum.tcp_header_digest = sum.tcp_header_digest || s.tcp_header_digest;  // any member's connection
  sum.tcp_data_digest = sum.tcp_data_digest || s.tcp_data_digest;
}

}  // namespace

PollGroup::PollGroup(const PollGroupOptions& options) : options_(options), spin_(options.hybrid_spin_us) {
  if (options_.mode == CompletionMode::kPoll) return;
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) epoll_error_ = errno;
}

PollGroup::~PollGroup() {
  for (IoQpair* q : members_)
    if (q != nullptr) QpairState::Of(*q).poll_group = nullptr;
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

Status PollGroup::Add(IoQpair& qpair) {
  QpairState& s = QpairState::Of(qpair);
  if (s.poll_group == this)
    return Fail(EEXIST, "queue pair " + std::to_string(s.qid) + " is already in this poll group");
  if (s.poll_group != nullptr)
    return Fail(EBUSY, "queue pair " + std::to_string(s.qid) + " is in another poll group (remove it there first)");
  if (options_.mode != CompletionMode::kPoll) {
    if (epoll_fd_ < 0) return Fail(epoll_error_, "the poll group's epoll fd could not be created");
    if (qpair.event_fd() < 0)
      return Fail(EINVAL, "queue pair " + std::to_string(s.qid) + " is in mode '" + CompletionModeName(qpair.mode()) +
                              "', and this poll group is in mode '" + CompletionModeName(options_.mode) +
                              "': its members need mode 'event' or 'hybrid' (IoQpairOptions::mode)");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &qpair;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, qpair.event_fd(), &ev) != 0)
      return Fail(errno, "adding queue pair " + std::to_string(s.qid) + "'s eventfd to the poll group's epoll: " +
                             std::strerror(errno));
  }
  members_.push_back(&qpair);
  s.poll_group = this;
  return Ok();
}

Status PollGroup::Remove(IoQpair& qpair) {
  QpairState& s = QpairState::Of(qpair);
  auto it = s.poll_group == this ? std::find(members_.begin(), members_.end(), &qpair) : members_.end();
  if (it == members_.end())
    return Fail(ENOENT, "queue pair " + std::to_string(s.qid) + " is not in this poll group");
  s.poll_group = nullptr;
  if (epoll_fd_ >= 0 && qpair.event_fd() >= 0) (void)::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, qpair.event_fd(), nullptr);
  if (polling_ > 0) {
    // ProcessCompletions walks members_ by index: leave a hole, compacted
    // when the poll ends, so no member is skipped or polled twice.
    *it = nullptr;
    holes_++;
  } else {
    members_.erase(it);
  }
  return Ok();
}

uint64_t PollGroup::ProcessCompletions(uint32_t completions_per_qpair, DisconnectedFn fn, void* cb_arg) {
  if (polling_ > 0) return 0;  // from one of its own callbacks: not allowed (see the header)
  polling_++;
  uint64_t total = 0;
  // By index: callbacks may Add (appended, polled this round too) or
  // Remove/destroy (a hole) members.
  for (size_t i = 0; i < members_.size(); ++i) {
    IoQpair* q = members_[i];
    if (q == nullptr) continue;
    if (q->connected()) {
      Result<uint32_t> n = q->ProcessCompletions(completions_per_qpair);
      if (n) {
        total += *n;
        continue;
      }
      // ENXIO: failed; its outstanding requests completed aborted.
    }
    stats_.disconnected++;
    if (fn != nullptr) fn(*q, cb_arg);
  }
  polling_--;
  if (holes_ > 0) {
    std::erase(members_, nullptr);
    holes_ = 0;
  }
  stats_.polls++;
  if (total == 0) stats_.idle_polls++;
  stats_.completions += total;
  return total;
}

bool PollGroup::ArmEvent() {
  if (epoll_fd_ < 0) return false;
  for (IoQpair* q : members_)
    if (q != nullptr && q->connected() && !q->ArmEvent()) return false;
  return true;
}

uint64_t PollGroup::WaitCompletions(int timeout_ms, uint32_t completions_per_qpair, DisconnectedFn fn, void* cb_arg) {
  const int64_t start = MonotonicNanos();
  const int64_t deadline = timeout_ms < 0 ? INT64_MAX : start + int64_t{timeout_ms} * 1'000'000;
  const bool hybrid = options_.mode == CompletionMode::kHybrid;
  SpinBudget::Wait wait(spin_);
  for (;;) {
    const uint64_t n = ProcessCompletions(completions_per_qpair, fn, cb_arg);
    const int64_t now = MonotonicNanos();
    if (n > 0) {
      if (hybrid) wait.Found();
      last_completion_ns_ = now;
      return n;
    }
    bool outstanding = false;
    for (IoQpair* q : members_) outstanding = outstanding || (q != nullptr && q->outstanding() > 0);
    if (!outstanding || now >= deadline) return 0;
    if (options_.mode == CompletionMode::kPoll) continue;
    // Hybrid: spin while the last completion (or this wait) is recent, as
    // long as spinning pays (SpinBudget).
    if (hybrid && wait.Spin(now - std::max(last_completion_ns_, start))) continue;
    if (!ArmEvent()) continue;
    if (hybrid) wait.Blocking();
    // Bounded, as IoQpair::WaitCompletions, so failures are still noticed.
    const int64_t block_ns = std::min<int64_t>(deadline - now, hybrid ? SpinBudget::kBlockNanos : 1'000'000'000);
    epoll_event ev[8];
    stats_.blocks++;
    if (::epoll_wait(epoll_fd_, ev, 8, static_cast<int>((block_ns + 999'999) / 1'000'000)) > 0) stats_.wakeups++;
  }
}

PollGroupStatistics PollGroup::statistics() const {
  PollGroupStatistics s = stats_;
  s.qpairs = QpairStatistics{};
  for (const IoQpair* q : members_)
    if (q != nullptr) AddUp(s.qpairs, q->statistics());
  return s;
}

}  // namespace nvmux
