// vfio-user wire format (QEMU docs/interop/vfio-user.rst, protocol 0.1).
//
// Every message is a 16-byte Header followed by a command-specific payload;
// msg_size counts the header. Multi-byte fields are little endian (host
// order on every platform nvmux supports). File descriptors travel as
// SCM_RIGHTS ancillary data with the message's first byte.
//
// Thread safety: values only.
#pragma once

#include <cstdint>

namespace nvmux::vfiouser {

struct Header {
  uint16_t msg_id = 0;
  uint16_t cmd = 0;
  uint32_t msg_size = 0;  // header included
  uint32_t flags = 0;
  uint32_t error_no = 0;  // errno, valid in a reply with kFlagError
};
static_assert(sizeof(Header) == 16);

inline constexpr uint32_t kFlagTypeMask = 0xF;
inline constexpr uint32_t kFlagTypeCommand = 0;
inline constexpr uint32_t kFlagTypeReply = 1;
inline constexpr uint32_t kFlagNoReply = 1u << 4;
inline constexpr uint32_t kFlagError = 1u << 5;

enum class Command : uint16_t {
  kVersion = 1,
  kDmaMap = 2,
  kDmaUnmap = 3,
  kDeviceGetInfo = 4,
  kDeviceGetRegionInfo = 5,
  kDeviceGetRegionIoFds = 6,
  kDeviceGetIrqInfo = 7,
  kDeviceSetIrqs = 8,
  kRegionRead = 9,
  kRegionWrite = 10,
  kDmaRead = 11,
  kDmaWrite = 12,
  kDeviceReset = 13,
  kDirtyPages = 14,
};

const char* ToString(Command cmd);

inline constexpr uint16_t kVersionMajor = 0;
inline constexpr uint16_t kVersionMinor = 1;

// VERSION payload; a NUL-terminated JSON capabilities string follows.
struct VersionPayload {
  uint16_t major = 0;
  uint16_t minor = 0;
};
static_assert(sizeof(VersionPayload) == 4);

inline constexpr uint32_t kDmaFlagRead = 1u << 0;
inline constexpr uint32_t kDmaFlagWrite = 1u << 1;

struct DmaMapPayload {
  uint32_t argsz = sizeof(DmaMapPayload);
  uint32_t flags = 0;     // kDmaFlagRead | kDmaFlagWrite
  uint64_t offset = 0;    // offset of the IOVA range within the passed fd
  uint64_t address = 0;   // IOVA
  uint64_t size = 0;
};
static_assert(sizeof(DmaMapPayload) == 32);

struct DmaUnmapPayload {
  uint32_t argsz = sizeof(DmaUnmapPayload);
  uint32_t flags = 0;
  uint64_t address = 0;
  uint64_t size = 0;
};
static_assert(sizeof(DmaUnmapPayload) == 24);

inline constexpr uint32_t kDeviceFlagReset = 1u << 0;
inline constexpr uint32_t kDeviceFlagPci = 1u << 1;

struct DeviceInfo {
  uint32_t argsz = sizeof(DeviceInfo);
  uint32_t flags = 0;
  uint32_t num_regions = 0;
  uint32_t num_irqs = 0;
};
static_assert(sizeof(DeviceInfo) == 16);

// PCI region indices (as VFIO_PCI_*_REGION_INDEX).
inline constexpr uint32_t kPciBar0Region = 0;
inline constexpr uint32_t kPciBar4Region = 4;
inline constexpr uint32_t kPciBar5Region = 5;
inline constexpr uint32_t kPciRomRegion = 6;
inline constexpr uint32_t kPciConfigRegion = 7;
inline constexpr uint32_t kPciVgaRegion = 8;
inline constexpr uint32_t kPciNumRegions = 9;

// PCI IRQ indices (as VFIO_PCI_*_IRQ_INDEX).
inline constexpr uint32_t kPciIntxIrq = 0;
inline constexpr uint32_t kPciMsiIrq = 1;
inline constexpr uint32_t kPciMsixIrq = 2;
inline constexpr uint32_t kPciErrIrq = 3;
inline constexpr uint32_t kPciReqIrq = 4;
inline constexpr uint32_t kPciNumIrqs = 5;

inline constexpr uint32_t kRegionFlagRead = 1u << 0;
inline constexpr uint32_t kRegionFlagWrite = 1u << 1;
inline constexpr uint32_t kRegionFlagMmap = 1u << 2;
inline constexpr uint32_t kRegionFlagCaps = 1u << 3;

// DEVICE_GET_REGION_INFO request and reply. In the reply, argsz is the size
// needed for the info plus its capability chain; the chain is present only if
// the request's argsz was large enough. A mmap-able region's fd rides along.
struct RegionInfo {
  uint32_t argsz = sizeof(RegionInfo);
  uint32_t flags = 0;
  uint32_t index = 0;
  uint32_t cap_offset = 0;  // from the start of this struct
  uint64_t size = 0;
  uint64_t offset = 0;  // file offset of region offset 0 in the passed fd
};
static_assert(sizeof(RegionInfo) == 32);

struct CapHeader {
  uint16_t id = 0;
  uint16_t version = 0;
  uint32_t next = 0;
};
static_assert(sizeof(CapHeader) == 8);
inline constexpr uint16_t kCapSparseMmap = 1;

struct SparseMmapArea {
  uint64_t offset = 0;  // within the region
  uint64_t size = 0;
};
static_assert(sizeof(SparseMmapArea) == 16);

struct SparseMmapCap {
  CapHeader header{kCapSparseMmap, 1, 0};
  uint32_t nr_areas = 0;
  uint32_t reserved = 0;
  // SparseMmapArea areas[nr_areas] follow.
};
static_assert(sizeof(SparseMmapCap) == 16);

// DEVICE_GET_REGION_IO_FDS request and reply header; in the reply `count`
// sub-region entries follow (each (argsz - 16) / count bytes, 40 today) and
// the fds they name by fd_index ride along. argsz of the reply is the size
// needed: when the request's argsz was smaller, only this header comes back
// (no entries, no fds) and the client asks again.
struct RegionIoFdsRequest {
  uint32_t argsz = sizeof(RegionIoFdsRequest);
  uint32_t flags = 0;
  uint32_t index = 0;
  uint32_t count = 0;
};
static_assert(sizeof(RegionIoFdsRequest) == 16);

inline constexpr uint32_t kIoFdTypeIoeventfd = 0;
inline constexpr uint32_t kIoFdTypeIoregionfd = 1;
inline constexpr uint32_t kIoeventfdFlagDatamatch = 1u << 0;  // KVM_IOEVENTFD_FLAG_DATAMATCH

struct SubRegionIoFd {
  uint64_t offset = 0;  // within the region
  uint64_t size = 0;    // bytes of the sub-region (0: access size does not matter)
  uint32_t fd_index = 0;
  uint32_t type = kIoFdTypeIoeventfd;
  uint32_t flags = 0;
  uint32_t padding = 0;
  uint64_t datamatch = 0;  // ioeventfd; user_data for ioregionfd
};
static_assert(sizeof(SubRegionIoFd) == 40);

inline constexpr uint32_t kIrqInfoEventfd = 1u << 0;
inline constexpr uint32_t kIrqInfoMaskable = 1u << 1;
inline constexpr uint32_t kIrqInfoAutomasked = 1u << 2;
inline constexpr uint32_t kIrqInfoNoresize = 1u << 3;

struct IrqInfo {
  uint32_t argsz = sizeof(IrqInfo);
  uint32_t flags = 0;
  uint32_t index = 0;
  uint32_t count = 0;
};
static_assert(sizeof(IrqInfo) == 16);

inline constexpr uint32_t kIrqSetDataNone = 1u << 0;
inline constexpr uint32_t kIrqSetDataBool = 1u << 1;
inline constexpr uint32_t kIrqSetDataEventfd = 1u << 2;
inline constexpr uint32_t kIrqSetActionMask = 1u << 3;
inline constexpr uint32_t kIrqSetActionUnmask = 1u << 4;
inline constexpr uint32_t kIrqSetActionTrigger = 1u << 5;

// DEVICE_SET_IRQS; with DATA_EVENTFD, `count` fds ride along.
struct IrqSet {
  uint32_t argsz = sizeof(IrqSet);
  uint32_t flags = 0;
  uint32_t index = 0;
  uint32_t start = 0;
  uint32_t count = 0;
};
static_assert(sizeof(IrqSet) == 20);

// REGION_READ / REGION_WRITE; `count` data bytes follow (in the write
// request and in the read reply).
struct RegionAccess {
  uint64_t offset = 0;
  uint32_t region = 0;
  uint32_t count = 0;
};
static_assert(sizeof(RegionAccess) == 16);

// DMA_READ / DMA_WRITE (server to client): the DMA_WRITE request and the
// DMA_READ reply carry `count` data bytes after it; a DMA_WRITE reply
// carries this struct or nothing.
struct DmaRw {
  uint64_t address = 0;
  uint64_t count = 0;
};
static_assert(sizeof(DmaRw) == 16);

// Defaults and hard limits of this implementation.
inline constexpr uint32_t kDefaultMaxMsgFds = 8;
inline constexpr uint32_t kDefaultMaxDataXferSize = 1u << 20;
inline constexpr uint32_t kMaxMsgFdsLimit = 64;  // never accept more fds than this
// Largest message either side accepts: a maximal data transfer plus header
// and REGION_* argument struct, rounded up.
inline constexpr uint32_t kMaxMessageSize = kDefaultMaxDataXferSize + 4096;

}  // namespace nvmux::vfiouser
