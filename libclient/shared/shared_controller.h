// SharedController: a controller's driver state in the group's shared
// segment (DESIGN.md section 4): what the primary learnt bringing it up
// (identify data, namespaces, limits), the admin queue's ring positions and
// trackers, the I/O queue-id allocator, and one mailbox per process slot for
// routed admin completions and asynchronous events. Its admin-queue fields'
// invariants are described in shared_admin_queue.h.
//
// Every field is standard layout and trivially copyable; there are no
// pointers (the admin rings are named by IOVA, which equals the virtual
// address in every process of a group). Everything below `lock` is changed
// only under it; `failed`/`removed`/`csts` are read without it (atomic_ref).
//
// Thread safety: see above. Ownership: lives in the segment until the group
// ends; processes hold SharedController* for their lifetime.
#pragma once

#include <cstdint>
#include <type_traits>

#include "libclient/core/queue_ring.h"
#include "nvmux/spec/command.h"
#include "nvmux/spec/identify.h"
#include "shm/process_table.h"
#include "shm/robust_mutex.h"

namespace nvmux {

inline constexpr uint32_t kMaxSharedControllers = 8;
inline constexpr uint32_t kMaxSharedNamespaces = 16;
inline constexpr uint32_t kMaxSharedAdminEntries = 64;
inline constexpr uint32_t kMaxSharedQids = 256;
// Group events (AENs) a process's mailbox holds until it polls; more are
// dropped (counted). Its routed completions have a slot per cookie instead.
inline constexpr uint32_t kMailboxEvents = 16;
inline constexpr uint32_t kAerOwner = 0xFFFFFFFFu;  // tracker owner of the group's AERs
inline constexpr char kSharedControllersName[] = "nvmux.controllers";

// The group address of DMA memory (see SharedQid::sq_iova).
inline uint64_t GroupAddress(const void* dma) { return reinterpret_cast<uintptr_t>(dma); }

enum class TrackerState : uint32_t { kFree = 0, kInFlight = 1 };

struct SharedAdminTracker {
  uint32_t state;             // TrackerState
  uint32_t owner_slot;        // process slot, or kAerOwner
  uint32_t owner_generation;  // the slot's generation at submission
  uint32_t cookie;            // the owner's callback index
  int64_t submitted_ns;
};

// A group event waiting in a mailbox. `seq` numbers the group's events
// (SharedController::event_seq): fanning one out again after a poller died
// midway does not deliver it twice.
struct MailEvent {
  uint32_t seq;
  uint32_t reserved;
  spec::Cqe cpl;
};

// A routed admin completion waiting for its submitter: one slot per cookie
// (the submitter's callback index, below kMaxSharedAdminEntries). A process
// has at most one command per cookie in flight, so a slot is never needed
// twice before the owner empties it: completions are never dropped, and
// routing one again (after the router died midway) rewrites the same slot.
struct MailCompletion {
  uint32_t ready;  // 1: cpl is waiting for the owner
  uint32_t order;  // SharedController::routed_order when routed (callbacks run in completion order)
  uint32_t wake_seq;  // Mailbox::wakeups_owed when another process routed it (0: the owner did)
  spec::Cqe cpl;
};

struct Mailbox {
  uint32_t generation;      // owner generation the entries are for (0: unused)
  uint32_t head;            // events: next to read (owner)
  uint32_t tail;            // events: next to write (router)
  uint32_t dropped;         // events dropped because `events` was full
  uint32_t last_event_seq;  // the last group event this mailbox got (or dropped)
  // The owner's own admin wakeup eventfd, its number in the owner's process
  // plus one (0: none); a router that fills this mailbox writes to it
  // (admin_wakeup.h). atomic_ref.
  uint32_t wakeup_fd;
  // Each completion another process routes here is owed a wakeup, numbered
  // (MailCompletion::wake_seq) from `wakeups_owed` (under the lock). Once
  // its router wrote the owner's eventfd, or found none to write, it raises
  // `wakeups_settled` (atomic_ref) to that number. So the owner can tell a
  // wakeup that never came (settled before its sleep ran out) from one that
  // is on its way (AdminStatistics::missed_wakeups).
  uint32_t wakeups_owed;
  uint32_t wakeups_settled;
  MailEvent events[kMailboxEvents];
  MailCompletion completions[kMaxSharedAdminEntries];  // by cookie
};

// kDeleting: the reaper recorded that it deletes the (dead) owner's queue;
// kQuarantined: the device did not confirm the deletion, so neither the id
// nor the rings (DMA records moved to shm::kQuarantineOwner) nor the
// owner's data buffers (shm::QuarantineOwnerOf(slot)) are reused
// until a later Delete succeeds or a controller reset deleted every queue.
enum class QidState : uint32_t { kFree = 0, kInUse = 1, kDeleting = 2, kQuarantined = 3 };

struct SharedQid {
  uint32_t state;  // QidState
  uint32_t owner_slot;
  uint32_t owner_generation;
  uint32_t on_device;  // Create I/O CQ/SQ sent (intent) or succeeded, not yet deleted
  // The rings the device was given, by group address (0 until Create I/O
  // CQ/SQ is sent). Group address: a DMA buffer's virtual address, the same
  // in every process (--base-virtaddr), which is what the group's DMA table
  // records (shm/dma_pool.h). It is the device address only with IOVA = VA;
  // with IOVA = PA (uio_pci_generic) the device was given the physical one.
  // (The *_iova fields below are group addresses as well.)
  uint64_t sq_iova;
  uint64_t cq_iova;
};

// SharedController::in_use. A retired entry is one the primary detached
// (device removed or failed, or nvmuxd stopping): invisible to new lookups,
// `removed` or `failed` set so the processes still holding it fail their
// I/O with ENXIO, and reused only once no live process has its mailbox
// registered there (see shared_registry.h).
inline constexpr uint32_t kEntryFree = 0;
inline constexpr uint32_t kEntryPublished = 1;
inline constexpr uint32_t kEntryReserved = 2;
inline constexpr uint32_t kEntryRetired = 3;

// A process holding the controller's fds (see fd_holders.h); one per slot.
inline constexpr uint32_t kMaxHeldFds = 6;
// What fstat(2) said of a held fd when its holder recorded it: a taker
// checks that the fd it took at that number is still that file.
struct FdIdentity {
  uint64_t dev;
  uint64_t ino;
  uint32_t type;   // st_mode & S_IFMT (0 for anonymous inodes: eventfds)
  uint32_t valid;  // 1: fstat succeeded when recording
};
struct FdHolder {
  uint32_t generation;  // the holder slot's generation (0: none)
  uint32_t count;
  int32_t fds[kMaxHeldFds];  // fd numbers in the holder: doorbells, connection, then kick fds
  uint64_t doorbell_file_offset;
  FdIdentity identity[kMaxHeldFds];  // of fds[i], as the holder saw it when recording
};

// A fabrics controller (NVMe/TCP) in a group: the primary owns the admin
// connection, whose engine serves the shared admin ring; secondaries connect
// their own I/O queues with what is published here (see ARCHITECTURE.md,
// "NVMe/TCP in a group"). Written by the primary at each init or reset
// (`association` last, release); zero for memory transports.
struct SharedFabrics {
  uint32_t sq_doorbell;   // the shared admin ring's SQ tail doorbell: rung by any process (atomic_ref)
  uint32_t cq_doorbell;   // its CQ head doorbell
  uint32_t association;   // bumped at each new association (init, reset, takeover); 0: none yet (atomic_ref)
  uint16_t cntlid;        // the controller the admin connection's Fabrics Connect created
  uint8_t header_digest;  // the admin connection's choices, asked of I/O connections too
  uint8_t data_digest;
  uint8_t hostid[16];
  char hostnqn[256];      // NUL-terminated
};

// A process's duplicate of an MSI-X vector's eventfd: its slot, that
// slot's generation (0: no record; atomic_ref, written last) and the fd
// number in that process.
struct VectorHolder {
  uint32_t slot;
  uint32_t generation;
  int32_t fd;
  uint32_t reserved;
};

struct SharedController {
  uint32_t in_use;  // kEntry*: 0 free, 2 reserved by the primary, 1 published, 3 retired (atomic_ref)
  uint32_t index;   // in the table
  char trid[256];
  char transport_name[16];
  uint64_t cap;
  uint32_t vs;
  uint32_t max_transfer;
  uint16_t io_sq_granted;
  uint16_t io_cq_granted;
  uint32_t admin_entries;
  uint32_t failed;   // atomic_ref
  uint32_t removed;  // atomic_ref
  uint32_t csts;     // last CSTS the primary read (atomic_ref)
  uint32_t doorbell_offset;  // BAR0 offset of the shared doorbell mapping
  uint32_t doorbell_bytes;
  uint32_t num_namespaces;
  uint32_t namespace_generation;  // bumped when the namespace list changes
  uint32_t attach_generation;     // bumped each time the entry is reserved: tells a re-attach from the entry it reused
  uint32_t nsids[kMaxSharedNamespaces];
  spec::IdentifyNamespace namespaces[kMaxSharedNamespaces];
  spec::IdentifyController ctrlr;

  shm::RobustMutexState lock;
  uint64_t admin_sq_iova;  // group addresses of the admin rings (see SharedQid)
  uint64_t admin_cq_iova;
  RingIndices admin_ring;
  uint32_t aers_outstanding;  // group AERs in flight: recounted from the trackers after each change (for status)
  uint32_t aer_target;        // group AERs to keep in flight (ArmGroupAers; 0 while the queue is reset)
  SharedAdminTracker trackers[kMaxSharedAdminEntries];
  SharedQid qids[kMaxSharedQids];  // [0] is the admin queue
  Mailbox mailboxes[shm::kMaxProcesses];
  uint64_t admin_submitted;
  uint64_t admin_completed;
  uint64_t admin_routed;   // completions delivered to another process's mailbox
  uint64_t aens;
  uint64_t orphaned;       // completions for dead processes, dropped
  uint64_t events_dropped;  // events dropped from full mailboxes (sum of Mailbox::dropped ever)
  // Intent of the admin-queue step under way (shared_admin_queue.h): the
  // next locker finishes or rolls back the step of a holder that died.
  uint32_t submit_cid;     // cid + 1 of the command being submitted; 0: none
  uint32_t submit_tail;    // the SQ tail before its entry
  uint32_t poll_pending;   // 1: the completion at `poll_position` is being routed
  uint32_t poll_position;  // admin_ring.cq (head and phase) when its routing began
  uint32_t event_seq;      // the last group event number handed out
  uint32_t routed_order;   // the last MailCompletion::order handed out
  FdHolder fd_holders[shm::kMaxProcesses];  // under `lock`
  // Shadow doorbells (Doorbell Buffer Config), set by the primary at each
  // controller (re)initialisation: the group addresses (see SharedQid)
  // of the shadow doorbell page and the EventIdx page, in the group's DMA
  // memory, and whether the controller accepted them (atomic_ref; 0 while a
  // reset is re-initialising). Secondaries' I/O queue pairs use them too.
  uint64_t shadow_doorbell_iova;
  uint64_t eventidx_iova;
  uint32_t shadow_doorbells;
  uint32_t reserved2;
  // Who reserved the entry (in_use == kEntryReserved): the primary's slot
  // and generation. An entry still reserved by a dead process is reclaimed
  // by the next Reserve for its trid (shared_registry.h).
  uint32_t reserver_slot;
  uint32_t reserver_generation;
  // Interrupts (qpair.h event/hybrid modes): the process that registered
  // an eventfd per MSI-X vector with the device (the primary, at publish)
  // records their numbers in it; any process takes a duplicate of the one
  // vector it needs with pidfd_getfd (fd_holders.h TakeVectorFd). A queue's
  // vector is its queue id, so vectors are owned per process exactly as
  // queue ids are (SharedQid) and freed with them by the reaper.
  // irq_holder_generation: the holder slot's generation, 0 while none
  // (atomic_ref, written last); irq_vectors: how many of irq_fds are valid.
  uint32_t irq_holder_slot;
  uint32_t irq_holder_generation;
  uint32_t irq_vectors;
  uint32_t reserved3;
  int32_t irq_fds[kMaxSharedQids];
  SharedFabrics fabrics;
  // The duplicates the other processes took (fd_holders.h
  // RecordVectorHolder), so that a primary that takes the group over finds
  // the eventfds live processes block on and keeps them registered instead
  // of replacing them: [v] is queue id v's owner (v >= 1); a process that
  // waits for admin completions on vector 0 records itself by its slot.
  VectorHolder irq_queue_holders[kMaxSharedQids];
  VectorHolder irq_admin_holders[shm::kMaxProcesses];
  // The Controller Memory Buffer the primary enabled for I/O SQs
  // (use_cmb_sqs; cmb_bytes 0: none), by BAR and offset so that every
  // process maps the same range from its own BAR fd. Which part a queue
  // uses follows from its queue id (qpair.cc CmbShare): the shares are
  // owned, reaped and reused with the ids, nothing else is recorded.
  uint64_t cmb_bytes;
  uint64_t cmb_bar_offset;
  uint64_t cmb_controller_address;
  uint32_t cmb_bar;
  uint32_t reserved4;
};

struct SharedControllerTable {
  uint32_t count;
  uint32_t reserved;
  SharedController controllers[kMaxSharedControllers];
};
static_assert(std::is_standard_layout_v<SharedControllerTable>);
static_assert(std::is_trivially_copyable_v<SharedControllerTable>);

}  // namespace nvmux
