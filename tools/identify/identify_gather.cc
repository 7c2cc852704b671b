#include "tools/identify/identify_gather.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "nvmux/spec/command.h"
#include "nvmux/spec/features.h"
#include "nvmux/spec/log_page.h"
#include "shm/base/log.h"

namespace nvmux::identify {
namespace {

constexpr uint32_t kBufferBytes = 4096;
constexpr uint32_t kAllNamespaces = 0xFFFFFFFF;
// LPA bit 2: extended data for Get Log Page (NUMDU, LPOL/LPOU). Without it
// the host must not use a log page offset (NVMe 1.4 section 5.14.1).
constexpr uint8_t kLpaExtendedData = 1u << 2;

// The admin commands of one report, sharing one 4 KiB DMA buffer (admin data
// is limited to two PRP entries, and every structure read here fits a page).
class Gatherer {
 public:
  Gatherer(Controller& ctrlr, DmaBuffer buffer) : ctrlr_(ctrlr), buffer_(std::move(buffer)) {}

  void Registers(IdentifyReport& r) {
    r.cap = ctrlr_.cap();
    r.vs = ctrlr_.vs();
    if (auto vs = Register(spec::kRegVs, "VS")) r.vs.raw = *vs;
    if (auto cc = Register(spec::kRegCc, "CC")) r.cc.raw = *cc;
    if (auto csts = Register(spec::kRegCsts, "CSTS")) r.csts.raw = *csts;
  }

  void IdentifyController(IdentifyReport& r) {
    if (Status st = ctrlr_.Identify(spec::cns::kController, 0, Data()); st) {
      std::memcpy(&r.ctrlr, Data(), sizeof r.ctrlr);
    } else {
      NVMUX_LOG(kNotice, "Identify Controller: %s (showing the data read at init)", st.error().message.c_str());
      r.ctrlr = ctrlr_.data();
    }
  }

  NamespaceReport IdentifyNamespace(uint32_t nsid) {
    NamespaceReport n;
    n.nsid = nsid;
    if (Status st = ctrlr_.Identify(spec::cns::kNamespace, nsid, Data()); st) {
      std::memcpy(&n.data, Data(), sizeof n.data);
    } else {
      NVMUX_LOG(kNotice, "Identify Namespace %u: %s (showing the data read at init)", nsid,
                st.error().message.c_str());
      if (const Namespace* ns = ctrlr_.GetNamespace(nsid)) n.data = ns->data();
    }
    Descriptors(n);
    return n;
  }

  void Features(IdentifyReport& r) {
    r.arbitration = Feature(spec::fid::kArbitration, "Arbitration");
    r.power_management = Feature(spec::fid::kPowerManagement, "Power Management");
    // CDW11 0: TMPSEL 0 (composite temperature), THSEL 0 (over-temperature).
    r.temperature_threshold = Feature(spec::fid::kTemperatureThreshold, "Temperature Threshold");
    r.error_recovery = Feature(spec::fid::kErrorRecovery, "Error Recovery");
    r.number_of_queues = Feature(spec::fid::kNumberOfQueues, "Number of Queues");
    if (r.number_of_queues) {
      // NSQA bits 15:0, NCQA bits 31:16, both 0's based.
      r.io_sq_granted = static_cast<uint16_t>((*r.number_of_queues & 0xFFFFu) + 1u);
      r.io_cq_granted = static_cast<uint16_t>((*r.number_of_queues >> 16) + 1u);
    } else {
      r.io_sq_granted = r.io_cq_granted = ctrlr_.io_queues_granted();
    }
  }

  void Logs(IdentifyReport& r) {
    r.smart_health = LogPage<spec::SmartHealthLog>(spec::lid::kSmartHealth, "SMART / Health Information");
    r.errors = ErrorLog(r.ctrlr);
    r.firmware_slots = LogPage<spec::FirmwareSlotLog>(spec::lid::kFirmwareSlot, "Firmware Slot Information");
    if (ctrlr_.supports_log_page(spec::lid::kCommandsSupportedAndEffects))
      r.effects = LogPage<spec::CommandsSupportedAndEffectsLog>(spec::lid::kCommandsSupportedAndEffects,
                                                               "Commands Supported and Effects");
  }

 private:
  void* Data() { return buffer_.data(); }

  std::optional<uint32_t> Register(uint32_t offset, const char* name) {
    auto v = ctrlr_.ReadRegister32(offset);
    if (!v) {
      NVMUX_LOG(kNotice, "reading %s: %s", name, v.error().message.c_str());
      return std::nullopt;
    }
    return *v;
  }

  std::optional<uint32_t> Feature(uint8_t fid, const char* name) {
    auto v = ctrlr_.GetFeature(fid);
    if (!v) {
      NVMUX_LOG(kNotice, "Get Features %s: %s", name, v.error().message.c_str());
      return std::nullopt;
    }
    return *v;
  }

  template <typename Page>
  std::optional<Page> LogPage(uint8_t lid, const char* name) {
    static_assert(sizeof(Page) <= kBufferBytes && std::is_trivially_copyable_v<Page>);
    std::memset(Data(), 0, sizeof(Page));
    if (Status st = ctrlr_.GetLogPage(lid, kAllNamespaces, Data(), sizeof(Page)); !st) {
      NVMUX_LOG(kNotice, "Get Log Page %s: %s", name, st.error().message.c_str());
      return std::nullopt;
    }
    Page page;
    std::memcpy(&page, Data(), sizeof page);
    return page;
  }

  // ELPE + 1 entries, read a page (64 entries) per command.
  std::optional<std::vector<spec::ErrorInformationEntry>> ErrorLog(const spec::IdentifyController& c) {
    constexpr uint32_t kPerPage = kBufferBytes / sizeof(spec::ErrorInformationEntry);
    uint32_t count = c.elpe + 1u;
    if ((c.lpa & kLpaExtendedData) == 0) count = std::min(count, kPerPage);
    std::vector<spec::ErrorInformationEntry> entries(count);
    for (uint32_t done = 0; done < count;) {
      const uint32_t n = std::min(count - done, kPerPage);
      const uint32_t bytes = n * static_cast<uint32_t>(sizeof(spec::ErrorInformationEntry));
      std::memset(Data(), 0, bytes);
      const uint64_t offset = uint64_t{done} * sizeof(spec::ErrorInformationEntry);
      if (Status st = ctrlr_.GetLogPage(spec::lid::kErrorInformation, kAllNamespaces, Data(), bytes, offset); !st) {
        NVMUX_LOG(kNotice, "Get Log Page Error Information (entries %u..%u): %s", done, done + n - 1,
                  st.error().message.c_str());
        return std::nullopt;
      }
      std::memcpy(entries.data() + done, Data(), bytes);
      done += n;
    }
    return entries;
  }

  // The Namespace Identification Descriptor list: {NIDT, NIDL, 2 reserved,
  // NIDL bytes} entries until NIDT 0 or the end of the page. A descriptor of
  // an unexpected length is skipped; a failed command leaves all three absent.
  void Descriptors(NamespaceReport& n) {
    std::memset(Data(), 0, kBufferBytes);
    if (Status st = ctrlr_.Identify(spec::cns::kNamespaceIdDescriptors, n.nsid, Data()); !st) {
      NVMUX_LOG(kNotice, "Identify Namespace %u descriptors: %s", n.nsid, st.error().message.c_str());
      return;
    }
    const auto* page = static_cast<const uint8_t*>(Data());
    size_t at = 0;
    while (at + sizeof(spec::NsIdDescriptorHeader) <= kBufferBytes) {
      spec::NsIdDescriptorHeader h;
      std::memcpy(&h, page + at, sizeof h);
      const uint8_t* value = page + at + sizeof h;
      at += sizeof h + h.nidl;
      if (h.nidt == 0 || at > kBufferBytes) break;
      if (h.nidt == spec::kNidtEui64 && h.nidl == 8) {
        n.eui64.emplace();
        std::memcpy(n.eui64->data(), value, 8);
      } else if (h.nidt == spec::kNidtNguid && h.nidl == 16) {
        n.nguid.emplace();
        std::memcpy(n.nguid->data(), value, 16);
      } else if (h.nidt == spec::kNidtUuid && h.nidl == 16) {
        n.uuid.emplace();
        std::memcpy(n.uuid->data(), value, 16);
      }
    }
  }

  Controller& ctrlr_;
  DmaBuffer buffer_;
};

}  // namespace

std::string ListNamespaces(std::span<const uint32_t> nsids) {
  if (nsids.empty()) return "none";
  std::string out;
  for (const uint32_t id : nsids) {
    if (!out.empty()) out += ", ";
    out += std::to_string(id);
  }
  return out;
}

Result<IdentifyReport> GatherReport(Controller& ctrlr, const GatherOptions& options) {
  std::vector<uint32_t> nsids(ctrlr.active_namespaces().begin(), ctrlr.active_namespaces().end());
  std::sort(nsids.begin(), nsids.end());
  if (options.nsid) {
    if (std::find(nsids.begin(), nsids.end(), *options.nsid) == nsids.end())
      return Fail(ENOENT, "namespace " + std::to_string(*options.nsid) + " is not active on " +
                              ctrlr.trid().ToString() + " (active namespaces: " + ListNamespaces(nsids) + ")");
    nsids = {*options.nsid};
  }
  auto buffer = ctrlr.env().AllocDma(kBufferBytes, kBufferBytes, "identify");
  if (!buffer) return buffer.error();
  Gatherer g(ctrlr, std::move(*buffer));
  IdentifyReport report;
  report.transport_id = ctrlr.trid().ToString();
  g.Registers(report);
  g.IdentifyController(report);
  g.Features(report);
  g.Logs(report);
  for (const uint32_t nsid : nsids) report.namespaces.push_back(g.IdentifyNamespace(nsid));
  return report;
}

}  // namespace nvmux::identify
