// Transport: what the driver core needs from the way it reaches a
// controller, for memory-based transports (vfio-user, later pcie):
// controller registers, the mapped doorbells of each queue, and whether the
// link to the device is still there. Queue memory is DMA memory the device
// reaches by IOVA (the transport makes it reachable: vfio-user maps every
// hugepage segment with DMA_MAP; pcie relies on DPDK's IOMMU mappings).
// Fabrics transports (NVMe/TCP) connect I/O queues themselves
// (ConnectsIoQueues) and say what a group's secondaries need (Fabrics).
//
// Thread safety: registers() and Lost() from any thread (serialised inside);
// doorbells are written by the thread owning their queue.
// Ownership: owned by its controller's state; doorbell pointers stay valid
// for the transport's lifetime.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "libclient/core/queue_ring.h"
#include "libclient/core/register_io.h"
#include "shm/base/result.h"

namespace nvmux {

// Where an mmap-able MSI-X table is in its fd: an area of `bytes` at
// `file_offset`, entry 0 at `table_offset` in the area, `vectors` entries.
// Trivially copyable (it crosses processes in an IPC message).
struct MsixTableArea {
  uint64_t file_offset = 0;
  uint64_t bytes = 0;
  uint64_t table_offset = 0;
  uint32_t vectors = 0;
};

// Sets or clears the mask bit (bit 0) of an MSI-X Vector Control word
// (Transport::VectorControl).
inline void SetVectorMask(volatile uint32_t* control, bool masked) {
  const uint32_t value = *control;
  *control = masked ? value | 1u : value & ~1u;
}

class Transport {
 public:
  virtual ~Transport() = default;
  // "VFIOUSER", "PCIE": how perf and identify name the controller.
  virtual const char* name() const = 0;
  virtual RegisterIo& registers() = 0;
  // Before the controller is enabled (vfio-user/pcie: bus mastering on).
  [[nodiscard]] virtual Status PrepareDevice() = 0;
  // The SQ tail and CQ head doorbells of queue `qid` (CAP.DSTRD stride).
  virtual Doorbells QueueDoorbells(uint16_t qid, uint32_t dstrd) = 0;
  // True once the device or the connection to it is gone.
  virtual bool Lost() const = 0;
  // An eventfd to write after a real doorbell write, so a device that
  // sleeps when idle wakes at once (vfio-user: the ioeventfd the server
  // gave for the doorbell page); -1 when the device polls (pcie) or offered
  // none. Which writes are kicked: ControllerState::doorbells().
  virtual int DoorbellKickFd() const { return -1; }
  // True when data must be described with SGLs (NVMe/TCP: the queue engine
  // needs each command's data length, which only SGL descriptors carry).
  virtual bool SglOnly() const { return false; }

  // Interrupts (MSI-X), for queue pairs in event or hybrid mode (qpair.h):
  // the device signals an eventfd per vector when a CQ created with IEN
  // and that vector gets entries. vfio-user registers them with
  // VFIO_USER_DEVICE_SET_IRQS at Open; pcie will do the same with
  // VFIO_DEVICE_SET_IRQS. InterruptVectors(): how many vectors (0..N-1)
  // have one; 0 when the transport or device offers none.
  virtual uint32_t InterruptVectors() const { return 0; }
  // Vector v's eventfd as this process holds it (not a duplicate; valid for
  // the transport's lifetime), or -1 when it has none.
  virtual int VectorFd(uint16_t /*vector*/) const { return -1; }
  // Vector v's MSI-X Vector Control word (bit 0: masked) as this process
  // maps it, for a queue pair in hybrid mode to mask its vector while it
  // spins (the device then sends nothing and sets the pending bit) and
  // unmask it before it blocks; null when the table is not mapped here
  // (pcie: the kernel owns it; servers that trap it): the vector then
  // stays unmasked. Written with SetVectorMask.
  virtual volatile uint32_t* VectorControl(uint16_t /*vector*/) const { return nullptr; }

  // The Controller Memory Buffer (NVMe base spec 1.4+: CMBLOC, CMBSZ,
  // CMBMSC) as this process maps it, for submission queues in device
  // memory (ControllerOptions::use_cmb_sqs). SQ entries are written
  // through `cpu`; Create I/O SQ names the queue by `controller_address`.
  struct CmbWindow {
    uint8_t* cpu = nullptr;
    uint64_t controller_address = 0;
    uint64_t bytes = 0;
    uint32_t bar = 0;         // the BAR holding it (CMBLOC.BIR)
    uint64_t bar_offset = 0;  // its offset in that BAR (CMBLOC.OFST)
  };
  // Turns the CMB on (pcie: CMBMSC) and maps it, for SQs. Called by the
  // process that owns the device, before the controller is enabled.
  // Errors: ENOTSUP naming why there is none usable (no CMB, not
  // SQ-capable, the transport has none), EIO (mapping, CMBSTS.CBAI).
  [[nodiscard]] virtual Status EnableCmb() { return Fail(ENOTSUP, std::string(name()) + " has no CMB"); }
  // The window EnableCmb (or, in a group, the import) mapped; nullopt: none.
  virtual std::optional<CmbWindow> Cmb() const { return std::nullopt; }

  // What other processes of a group need to reach the same device: the
  // doorbell mapping's fd and the connection's fd (vfio-user). None when the
  // transport cannot be shared.
  struct Exported {
    int doorbell_fd = -1;
    uint64_t doorbell_file_offset = 0;
    uint64_t doorbell_bar_offset = 0;
    uint64_t doorbell_bytes = 0;
    int connection_fd = -1;
    int kick_fd = -1;  // DoorbellKickFd(), or -1
    // The mmap-able MSI-X table (VectorControl), or msix_fd -1.
    int msix_fd = -1;
    MsixTableArea msix{};
  };
  virtual std::optional<Exported> Export() const { return std::nullopt; }

  // An fd that becomes readable when the admin queue wants polling (an
  // admin completion or event), for a process that sleeps between polls
  // (nvmuxd): MSI-X vector 0 by default; NVMe/TCP: an epoll fd over the
  // admin connection and the group's admin mailbox. -1: none (poll).
  virtual int AdminEventFd() const { return InterruptVectors() > 0 ? VectorFd(0) : -1; }
  // Clears what AdminEventFd() reported; called before the admin queue is
  // polled, so what arrives after it wakes the next wait.
  virtual void ArmAdminEvent();

  // Fabrics: each I/O queue is a connection of its own, which the
  // transport opens onto the core's rings (Fabrics Connect with the queue
  // id) and closes, instead of the core sending Create/Delete I/O SQ/CQ.
  // Nothing of such a queue outlives its process's connection.
  virtual bool ConnectsIoQueues() const { return false; }
  // Errors: the connection's (ECONNREFUSED, ETIMEDOUT, the Connect status).
  [[nodiscard]] virtual Status ConnectIoQueue(uint16_t qid, uint32_t entries, spec::Sqe* sq, spec::Cqe* cq);
  // `graceful`: Fabrics Disconnect first (bounded); else just close.
  virtual void DisconnectIoQueue(uint16_t /*qid*/, bool /*graceful*/) {}

  // What a group's secondaries need to connect their own I/O queues to the
  // controller the primary's admin connection created (NVMe/TCP).
  struct FabricsInfo {
    uint16_t cntlid = 0;
    std::string hostnqn;
    uint8_t hostid[16] = {};
    bool header_digest = false;
    bool data_digest = false;
  };
  virtual std::optional<FabricsInfo> Fabrics() const { return std::nullopt; }
  // The admin queue's doorbells are these words in group memory, which
  // every process of the group rings (a transport whose device side runs
  // in this process: NVMe/TCP's engine reads them). REQUIRES: before
  // QueueDoorbells(0).
  virtual void ShareAdminDoorbells(uint32_t* /*sq_tail*/, uint32_t* /*cq_head*/) {}
};

}  // namespace nvmux
