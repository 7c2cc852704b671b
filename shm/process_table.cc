#include "shm/process_table.h"

#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "shm/base/log.h"
#include "shm/base/test_point.h"

namespace nvmux::shm {
namespace {

uint32_t Load(const uint32_t& v) {
  return std::atomic_ref<uint32_t>(const_cast<uint32_t&>(v)).load(std::memory_order_acquire);
}
void Store(uint32_t& v, uint32_t x) { std::atomic_ref<uint32_t>(v).store(x, std::memory_order_release); }
void Bump(uint32_t& v) { std::atomic_ref<uint32_t>(v).fetch_add(1, std::memory_order_acq_rel); }

uint64_t RealtimeNanos() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

template <size_t N>
void CopyName(char (&dst)[N], std::string_view src) {
  size_t n = std::min(src.size(), N - 1);
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

}  // namespace

const char* ToString(SlotState state) {
  switch (state) {
    case SlotState::kFree: return "free";
    case SlotState::kActive: return "active";
    case SlotState::kReaping: return "reaping";
  }
  return "?";
}

const char* ToString(ProcessRole role) {
  switch (role) {
    case ProcessRole::kPrimary: return "primary";
    case ProcessRole::kSecondary: return "secondary";
    case ProcessRole::kStandalone: return "standalone";
  }
  return "?";
}

void ProcessTable::InitState(ProcessTableState& state, uint32_t capacity) {
  std::memset(&state, 0, sizeof(state));
  state.capacity = std::min(capacity, kMaxProcesses);
}

ProcessInfo ProcessTable::InfoOf(uint32_t slot) const {
  const ProcessSlot& s = state_.slots[slot];
  ProcessInfo info;
  info.slot = slot;
  info.generation = Load(s.generation);
  info.state = static_cast<SlotState>(Load(s.state));
  info.id = ProcessIdentity{s.pid, s.start_time};
  info.role = static_cast<ProcessRole>(s.role);
  info.name = std::string(s.name, strnlen(s.name, sizeof(s.name)));
  info.cores = CoreSet::FromWords(s.core_words);
  return info;
}

Result<uint32_t> ProcessTable::Register(ProcessRole role, std::string_view name, const CoreSet& cores) {
  auto guard = lock_.Lock();
  if (!guard) return guard.error();
  ProcessIdentity self = SelfIdentity();
  if (self_slot_)
    return Fail(EALREADY, "process " + std::to_string(self.pid) + " is already registered as slot " +
                              std::to_string(*self_slot_));
  std::optional<uint32_t> chosen;
  for (uint32_t i = 0; i < state_.capacity; ++i) {
    ProcessSlot& s = state_.slots[i];
    auto st = static_cast<SlotState>(Load(s.state));
    if (st == SlotState::kActive && s.pid == self.pid && s.start_time == self.start_time)
      return Fail(EALREADY, "process " + std::to_string(self.pid) + " is already registered as slot " +
                                std::to_string(i));
  }
  uint32_t awaiting_reaper = 0;  // dead device users left to nvmuxd's reaper
  for (int pass = 0; pass < 2 && !chosen; ++pass) {
    for (uint32_t i = 0; i < state_.capacity && !chosen; ++i) {
      ProcessSlot& s = state_.slots[i];
      auto st = static_cast<SlotState>(Load(s.state));
      if (pass == 1 && st != SlotState::kFree && !locks_.SlotHeldByOther(i) && !ReaperAlive(i)) {
        // A full table may still hold dead processes: reap one inline.
        // Inline, under the lock: only the locked hooks (a process registers
        // before it has attached any controller, so it has no device hooks).
        // So never one that may own device queues: freeing its memory
        // before its queues are deleted would let the device write into
        // memory handed to others; nvmuxd's reaper does those.
        if (Load(s.device_user) != 0) {
          ++awaiting_reaper;
          continue;
        }
        NVMUX_LOG(kNotice, "reaping dead process %d (slot %u) to make room", s.pid, i);
        ReapLocked(i);
        st = SlotState::kFree;
      }
      if (st != SlotState::kFree) continue;
      // The byte lock is taken before the slot leaves kFree (see header).
      if (!locks_.LockSlot(i)) continue;
      chosen = i;
    }
  }
  if (!chosen && awaiting_reaper > 0)
    return Fail(EAGAIN, "the group's process table is full (" + std::to_string(state_.capacity) +
                            " processes attached, " + std::to_string(awaiting_reaper) +
                            " of them dead with device queues that nvmuxd's reaper deletes first); retry in a moment");
  if (!chosen)
    return Fail(ENOSPC, "the group's process table is full (" + std::to_string(state_.capacity) +
                            " processes attached, the limit nvmuxd --max-processes set, at most " +
                            std::to_string(kMaxProcesses) + "); detach one, wait for it to exit, or restart nvmuxd with a "
                            "higher --max-processes");
  ProcessSlot& s = state_.slots[*chosen];
  s.pid = self.pid;
  s.start_time = self.start_time;
  s.role = static_cast<uint32_t>(role);
  s.attach_realtime_ns = RealtimeNanos();
  cores.ToWords(s.core_words);
  CopyName(s.name, name);
  Store(s.device_user, 0);
  Bump(s.generation);
  NVMUX_TEST_POINT("process.register.claimed");
  Store(s.state, static_cast<uint32_t>(SlotState::kActive));
  Bump(state_.changes);
  self_slot_ = chosen;
  self_generation_ = Load(s.generation);
  for (uint32_t i = 0; i < state_.capacity; ++i) {
    if (i == *chosen || Load(state_.slots[i].state) != static_cast<uint32_t>(SlotState::kActive)) continue;
    ProcessInfo other = InfoOf(i);
    if (other.cores.Overlaps(cores))
      NVMUX_LOG(kWarning, "process %s (pid %d, cores %s) shares cores with %s (pid %d, cores %s); "
                "both poll, so expect them to slow each other",
                std::string(name).c_str(), self.pid, cores.ToListString().c_str(), other.name.c_str(),
                other.id.pid, other.cores.ToListString().c_str());
  }
  return *chosen;
}

void ProcessTable::MarkDeviceUser() {
  if (self_slot_) Store(state_.slots[*self_slot_].device_user, 1);
}

Status ProcessTable::Unregister() {
  if (!self_slot_) return Ok();
  // Device work first, without the group lock (as when reaping).
  for (auto& hook : device_hooks_) hook(*self_slot_);
  auto guard = lock_.Lock();
  if (!guard) return guard.error();
  uint32_t slot = *self_slot_;
  ProcessSlot& s = state_.slots[slot];
  ProcessIdentity self = SelfIdentity();
  bool still_ours = Load(s.generation) == self_generation_ && s.pid == self.pid && s.start_time == self.start_time &&
                    Load(s.state) == static_cast<uint32_t>(SlotState::kActive);
  if (still_ours) {
    for (auto& hook : hooks_) hook(slot);
    Store(s.state, static_cast<uint32_t>(SlotState::kFree));
    Bump(state_.changes);
  } else {
    NVMUX_LOG(kWarning, "slot %u no longer belongs to this process (reaped while alive?); leaving it alone", slot);
  }
  locks_.UnlockSlot(slot);
  self_slot_.reset();
  return Ok();
}

bool ProcessTable::ReaperAlive(uint32_t slot) const {
  const ProcessSlot& s = state_.slots[slot];
  return Load(s.state) == static_cast<uint32_t>(SlotState::kReaping) && s.reaper_slot < state_.capacity &&
         IsAlive(s.reaper_slot) && Load(state_.slots[s.reaper_slot].generation) == s.reaper_generation;
}

bool ProcessTable::IsAlive(uint32_t slot) const {
  if (self_slot_ && *self_slot_ == slot) return true;
  return locks_.SlotHeldByOther(slot);
}

std::vector<ProcessInfo> ProcessTable::FindDead() const {
  std::vector<ProcessInfo> dead;
  for (uint32_t i = 0; i < state_.capacity; ++i) {
    if (Load(state_.slots[i].state) == static_cast<uint32_t>(SlotState::kFree)) continue;
    if (!IsAlive(i)) dead.push_back(InfoOf(i));
  }
  return dead;
}

ReapRecord ProcessTable::ReapLocked(uint32_t slot, uint64_t device_released) {
  ProcessSlot& s = state_.slots[slot];
  if (Load(s.state) != static_cast<uint32_t>(SlotState::kReaping)) {
    s.reaper_slot = self_slot_.value_or(kMaxProcesses);
    s.reaper_generation = self_generation_;
    Store(s.state, static_cast<uint32_t>(SlotState::kReaping));  // intent, for a reaper that dies
    NVMUX_TEST_POINT("process.reap.intent");
  }
  uint64_t released = device_released;
  for (auto& hook : hooks_) released += hook(slot);
  ReapRecord rec{};
  rec.pid = s.pid;
  rec.slot = slot;
  rec.reaped_realtime_ns = RealtimeNanos();
  rec.released_items = released;
  std::memcpy(rec.name, s.name, sizeof(rec.name));
  state_.reaped[state_.reaped_total % kReapHistory] = rec;
  Bump(state_.reaped_total);
  Store(s.state, static_cast<uint32_t>(SlotState::kFree));
  Bump(state_.changes);
  return rec;
}

Result<ReapRecord> ProcessTable::Reap(uint32_t slot, uint32_t generation) {
  if (slot >= state_.capacity) return Fail(EINVAL, "bad slot " + std::to_string(slot));
  ProcessSlot& s = state_.slots[slot];
  const uint32_t me = self_slot_.value_or(kMaxProcesses);
  {
    auto guard = lock_.Lock();
    if (!guard) return guard.error();
    if (Load(s.state) == static_cast<uint32_t>(SlotState::kFree) || Load(s.generation) != generation)
      return Fail(ENOENT, "slot " + std::to_string(slot) + " was already reaped");
    if (IsAlive(slot)) return Fail(EBUSY, "process " + std::to_string(s.pid) + " in slot " + std::to_string(slot) + " is alive");
    if (s.reaper_slot != me && ReaperAlive(slot))
      return Fail(EINPROGRESS, "process " + std::to_string(s.pid) + " in slot " + std::to_string(slot) +
                                   " is being reaped by slot " + std::to_string(s.reaper_slot));
    // Intent: this process reaps the slot (a reaper that dies hands it to the next).
    s.reaper_slot = me;
    s.reaper_generation = self_generation_;
    Store(s.state, static_cast<uint32_t>(SlotState::kReaping));
    Bump(state_.changes);
    NVMUX_TEST_POINT("process.reap.intent");
  }
  // The device hooks, outside the group lock.
  uint64_t device_released = 0;
  for (auto& hook : device_hooks_) device_released += hook(slot);
  auto guard = lock_.Lock();
  if (!guard) return guard.error();
  if (Load(s.state) != static_cast<uint32_t>(SlotState::kReaping) || Load(s.generation) != generation ||
      s.reaper_slot != me || s.reaper_generation != self_generation_)
    return Fail(ENOENT, "slot " + std::to_string(slot) + " was reaped meanwhile by another process");
  ReapRecord rec = ReapLocked(slot, device_released);
  NVMUX_LOG(kNotice, "reaped dead process %d (%s, slot %u): released %llu item(s)", rec.pid, rec.name, slot,
            static_cast<unsigned long long>(rec.released_items));
  return rec;
}

std::vector<ProcessInfo> ProcessTable::Snapshot() const {
  std::vector<ProcessInfo> out;
  for (uint32_t i = 0; i < state_.capacity; ++i)
    if (Load(state_.slots[i].state) != static_cast<uint32_t>(SlotState::kFree)) out.push_back(InfoOf(i));
  return out;
}

std::vector<ReapRecord> ProcessTable::ReapHistory() const {
  std::vector<ReapRecord> out;
  uint32_t total = Load(state_.reaped_total);
  uint32_t first = total > kReapHistory ? total - kReapHistory : 0;
  for (uint32_t i = first; i < total; ++i) out.push_back(state_.reaped[i % kReapHistory]);
  return out;
}

uint32_t ProcessTable::changes() const { return Load(state_.changes); }

}  // namespace nvmux::shm
