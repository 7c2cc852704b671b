// Identify data structures (NVMe base specification 1.4 section 5.15):
// Identify Controller (CNS 01h), Identify Namespace (CNS 00h), the LBA
// Format descriptor and the Namespace Identification Descriptor (CNS 03h).
//
// Layouts are byte-exact; every offset is checked with static_assert.
// Thread safety: values only.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nvmux::spec {

struct PowerStateDescriptor {
  uint16_t mp = 0;  // maximum power, centiwatts (or 0.0001 W if MXPS)
  uint8_t rsvd2 = 0;
  uint8_t flags = 0;  // bit 0 MXPS, bit 1 NOPS
  uint32_t enlat = 0;
  uint32_t exlat = 0;
  uint8_t rrt = 0;
  uint8_t rrl = 0;
  uint8_t rwt = 0;
  uint8_t rwl = 0;
  uint16_t idlp = 0;
  uint8_t ips = 0;
  uint8_t rsvd19 = 0;
  uint16_t actp = 0;
  uint8_t apw_aps = 0;
  uint8_t rsvd23[9] = {};
};
static_assert(sizeof(PowerStateDescriptor) == 32);

struct IdentifyController {
  uint16_t vid;
  uint16_t ssvid;
  char sn[20];
  char mn[40];
  char fr[8];
  uint8_t rab;
  uint8_t ieee[3];
  uint8_t cmic;
  uint8_t mdts;
  uint16_t cntlid;
  uint32_t ver;
  uint32_t rtd3r;
  uint32_t rtd3e;
  uint32_t oaes;
  uint32_t ctratt;
  uint16_t rrls;
  uint8_t rsvd102[9];
  uint8_t cntrltype;
  uint8_t fguid[16];
  uint16_t crdt1;
  uint16_t crdt2;
  uint16_t crdt3;
  uint8_t rsvd134[119];
  uint8_t nvmsr;
  uint8_t vwci;
  uint8_t mec;
  uint16_t oacs;
  uint8_t acl;
  uint8_t aerl;
  uint8_t frmw;
  uint8_t lpa;
  uint8_t elpe;
  uint8_t npss;
  uint8_t avscc;
  uint8_t apsta;
  uint16_t wctemp;
  uint16_t cctemp;
  uint16_t mtfa;
  uint32_t hmpre;
  uint32_t hmmin;
  uint8_t tnvmcap[16];
  uint8_t unvmcap[16];
  uint32_t rpmbs;
  uint16_t edstt;
  uint8_t dsto;
  uint8_t fwug;
  uint16_t kas;
  uint16_t hctma;
  uint16_t mntmt;
  uint16_t mxtmt;
  uint32_t sanicap;
  uint32_t hmminds;
  uint16_t hmmaxd;
  uint16_t nsetidmax;
  uint16_t endgidmax;
  uint8_t anatt;
  uint8_t anacap;
  uint32_t anagrpmax;
  uint32_t nanagrpid;
  uint32_t pels;
  uint8_t rsvd356[156];
  uint8_t sqes;
  uint8_t cqes;
  uint16_t maxcmd;
  uint32_t nn;
  uint16_t oncs;
  uint16_t fuses;
  uint8_t fna;
  uint8_t vwc;
  uint16_t awun;
  uint16_t awupf;
  uint8_t nvscc;
  uint8_t nwpc;
  uint16_t acwu;
  uint8_t rsvd534[2];
  uint32_t sgls;
  uint32_t mnan;
  uint8_t rsvd544[224];
  char subnqn[256];
  uint8_t rsvd1024[768];
  uint8_t nvmof[256];
  PowerStateDescriptor psd[32];
  uint8_t vs[1024];
};
static_assert(sizeof(IdentifyController) == 4096);
static_assert(offsetof(IdentifyController, cntrltype) == 111);
static_assert(offsetof(IdentifyController, oacs) == 256);
static_assert(offsetof(IdentifyController, kas) == 320);
static_assert(offsetof(IdentifyController, pels) == 352);
static_assert(offsetof(IdentifyController, sqes) == 512);
static_assert(offsetof(IdentifyController, sgls) == 536);
static_assert(offsetof(IdentifyController, subnqn) == 768);
static_assert(offsetof(IdentifyController, psd) == 2048);

// OACS bits.
inline constexpr uint16_t kOacsSecurity = 1u << 0;
inline constexpr uint16_t kOacsFormat = 1u << 1;
inline constexpr uint16_t kOacsFirmware = 1u << 2;
inline constexpr uint16_t kOacsNsMgmt = 1u << 3;
inline constexpr uint16_t kOacsDbcs = 1u << 8;  // Doorbell Buffer Config
// ONCS bits.
inline constexpr uint16_t kOncsCompare = 1u << 0;
inline constexpr uint16_t kOncsWriteUncorrectable = 1u << 1;
inline constexpr uint16_t kOncsDsm = 1u << 2;
inline constexpr uint16_t kOncsWriteZeroes = 1u << 3;
inline constexpr uint16_t kOncsSaveSelect = 1u << 4;
inline constexpr uint16_t kOncsReservations = 1u << 5;
inline constexpr uint16_t kOncsTimestamp = 1u << 6;
inline constexpr uint16_t kOncsVerify = 1u << 7;
inline constexpr uint16_t kOncsCopy = 1u << 8;
// LPA bits.
inline constexpr uint8_t kLpaSmartPerNamespace = 1u << 0;
inline constexpr uint8_t kLpaCommandEffects = 1u << 1;
// FUSES bit 0: compare and write.
inline constexpr uint16_t kFusesCompareAndWrite = 1u << 0;
// CNTRLTYPE.
inline constexpr uint8_t kCntrltypeIo = 1;

struct LbaFormat {
  uint16_t ms = 0;    // metadata bytes per LBA
  uint8_t lbads = 0;  // log2 of the LBA data size
  uint8_t rp = 0;     // relative performance, bits 1:0
};
static_assert(sizeof(LbaFormat) == 4);

struct IdentifyNamespace {
  uint64_t nsze;
  uint64_t ncap;
  uint64_t nuse;
  uint8_t nsfeat;
  uint8_t nlbaf;  // 0's based
  uint8_t flbas;  // bits 3:0 format index, bit 4 extended LBA (metadata at end of data)
  uint8_t mc;
  uint8_t dpc;
  uint8_t dps;
  uint8_t nmic;
  uint8_t rescap;
  uint8_t fpi;
  uint8_t dlfeat;
  uint16_t nawun;
  uint16_t nawupf;
  uint16_t nacwu;
  uint16_t nabsn;
  uint16_t nabo;
  uint16_t nabspf;
  uint16_t noiob;
  uint8_t nvmcap[16];
  uint16_t npwg;
  uint16_t npwa;
  uint16_t npdg;
  uint16_t npda;
  uint16_t nows;
  uint16_t mssrl;
  uint32_t mcl;
  uint8_t msrc;
  uint8_t rsvd81[11];
  uint32_t anagrpid;
  uint8_t rsvd96[3];
  uint8_t nsattr;
  uint16_t nvmsetid;
  uint16_t endgid;
  uint8_t nguid[16];
  uint8_t eui64[8];
  LbaFormat lbaf[16];
  uint8_t rsvd192[192];
  uint8_t vs[3712];
};
static_assert(sizeof(IdentifyNamespace) == 4096);
static_assert(offsetof(IdentifyNamespace, noiob) == 46);
static_assert(offsetof(IdentifyNamespace, mssrl) == 74);
static_assert(offsetof(IdentifyNamespace, msrc) == 80);
static_assert(offsetof(IdentifyNamespace, nguid) == 104);
static_assert(offsetof(IdentifyNamespace, lbaf) == 128);

// NSFEAT bits.
inline constexpr uint8_t kNsfeatThinProvisioning = 1u << 0;
inline constexpr uint8_t kNsfeatNsAtomics = 1u << 1;
inline constexpr uint8_t kNsfeatDeallocatedError = 1u << 2;
inline constexpr uint8_t kNsfeatOptPerf = 1u << 4;  // NPWG..NOWS valid
// FLBAS / MC bits.
inline constexpr uint8_t kFlbasExtended = 1u << 4;
inline constexpr uint8_t kMcExtended = 1u << 0;
inline constexpr uint8_t kMcSeparate = 1u << 1;
// DLFEAT: bits 2:0 = 001b means deallocated blocks read as zeroes; bit 3
// Write Zeroes may deallocate.
inline constexpr uint8_t kDlfeatReadZeroes = 0x1;
inline constexpr uint8_t kDlfeatWriteZeroesDeallocates = 1u << 3;

// OAES bit 8: Namespace Attribute Notices. Async Event Configuration uses
// the same bit to enable them.
inline constexpr uint32_t kOaesNsAttributeNotices = 1u << 8;

// Namespace Management (CDW10 SEL) and Namespace Attachment selections.
inline constexpr uint8_t kNsMgmtCreate = 0;
inline constexpr uint8_t kNsMgmtDelete = 1;
inline constexpr uint8_t kNsAttach = 0;
inline constexpr uint8_t kNsDetach = 1;

// Controller List (Namespace Attachment data, Identify CNS 12h/13h).
struct ControllerList {
  uint16_t count = 0;
  uint16_t ids[2047] = {};
};
static_assert(sizeof(ControllerList) == 4096);

// RESCAP bits: bit 0 persist through power loss, bits 1-6 the reservation
// types 1-6 (e.g. bit 1 Write Exclusive).
constexpr uint8_t RescapType(uint8_t rtype) { return static_cast<uint8_t>(1u << rtype); }

// Namespace Identification Descriptor header (CNS 03h list entries).
struct NsIdDescriptorHeader {
  uint8_t nidt = 0;
  uint8_t nidl = 0;
  uint8_t rsvd[2] = {};
};
static_assert(sizeof(NsIdDescriptorHeader) == 4);
inline constexpr uint8_t kNidtEui64 = 1;   // 8 bytes
inline constexpr uint8_t kNidtNguid = 2;   // 16 bytes
inline constexpr uint8_t kNidtUuid = 3;    // 16 bytes
inline constexpr uint8_t kNidtCsi = 4;     // 1 byte

}  // namespace nvmux::spec
