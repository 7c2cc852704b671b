// PollGroup: membership (kept on both sides: the group's list and the
// queue pair's poll_group, so Add finds another group and destruction of
// either side unlinks the other) and the group poll.
#include "nvmux/poll_group.h"

#include <algorithm>
#include <string>
#include <type_traits>

#include "libclient/core/qpair_state.h"

namespace nvmux {
namespace {

// statistics() adds up every field by name: a new QpairStatistics field
// must be added there too.
static_assert(sizeof(QpairStatistics) == 9 * sizeof(uint64_t) && std::is_trivially_copyable_v<QpairStatistics>,
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
}

}  // namespace

PollGroup::~PollGroup() {
  for (IoQpair* q : members_)
    if (q != nullptr) QpairState::Of(*q).poll_group = nullptr;
}

Status PollGroup::Add(IoQpair& qpair) {
  QpairState& s = QpairState::Of(qpair);
  if (s.poll_group == this)
    return Fail(EEXIST, "queue pair " + std::to_string(s.qid) + " is already in this poll group");
  if (s.poll_group != nullptr)
    return Fail(EBUSY, "queue pair " + std::to_string(s.qid) + " is in another poll group (remove it there first)");
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

PollGroupStatistics PollGroup::statistics() const {
  PollGroupStatistics s = stats_;
  s.qpairs = QpairStatistics{};
  for (const IoQpair* q : members_)
    if (q != nullptr) AddUp(s.qpairs, q->statistics());
  return s;
}

}  // namespace nvmux
