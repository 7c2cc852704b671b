#include "libclient/pcie/pci_sysfs.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <fstream>

#include "nvmux/transport_id.h"

namespace nvmux::pcie {
namespace {

// A sysfs attribute such as "0x010802\n" as a number; nullopt if absent/bad.
std::optional<uint32_t> ReadHex(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text)) return std::nullopt;
  if (text.starts_with("0x")) text.erase(0, 2);
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v, 16);
  if (ec != std::errc() || p != text.data() + text.size()) return std::nullopt;
  return v;
}

// The last path component a symlink points to ("../../../bus/pci/drivers/nvme" -> "nvme").
std::string LinkLeaf(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  std::string target(buf, static_cast<size_t>(n));
  size_t slash = target.rfind('/');
  return slash == std::string::npos ? target : target.substr(slash + 1);
}

}  // namespace

Result<PciFunction> ReadPciFunction(const std::string& root, const std::string& bdf) {
  std::string dir = root + "/" + bdf;
  auto cls = ReadHex(dir + "/class");
  if (!cls)
    return Fail(ENODEV, "PCI function " + bdf + " does not exist (no " + dir +
                            "); list NVMe controllers with `scripts/setup.sh status` or `lspci -d ::0108`");
  PciFunction f;
  f.bdf = bdf;
  f.class_code = *cls & 0xFFFFFF;
  f.vendor = static_cast<uint16_t>(ReadHex(dir + "/vendor").value_or(0));
  f.device = static_cast<uint16_t>(ReadHex(dir + "/device").value_or(0));
  f.driver = LinkLeaf(dir + "/driver");
  std::string group = LinkLeaf(dir + "/iommu_group");
  if (!group.empty()) {
    int g = -1;
    auto [p, ec] = std::from_chars(group.data(), group.data() + group.size(), g);
    if (ec == std::errc() && p == group.data() + group.size()) f.iommu_group = g;
  }
  return f;
}

std::vector<PciFunction> ListNvmeFunctions(const std::string& root) {
  std::vector<PciFunction> out;
  DIR* d = ::opendir(root.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    auto f = ReadPciFunction(root, e->d_name);
    if (f && f->class_code == kNvmeClassCode) out.push_back(*f);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(), [](const PciFunction& a, const PciFunction& b) { return a.bdf < b.bdf; });
  return out;
}

Result<Access> CheckDrivable(const PciFunction& f) {
  char cls[16];
  std::snprintf(cls, sizeof(cls), "0x%06x", f.class_code);
  if (f.class_code != kNvmeClassCode)
    return Fail(ENODEV, "PCI function " + f.bdf + " is not an NVMe controller (class " + cls +
                            ", an NVMe controller has class 0x010802)");
  if (f.driver == "vfio-pci") return Access::kVfio;
  if (f.driver == "uio_pci_generic") return Access::kUio;
  if (f.driver.empty())
    return Fail(ENXIO, "NVMe controller " + f.bdf + " is bound to no driver: bind it to vfio-pci with "
                           "`scripts/setup.sh config` (PCI_ALLOWED=" + f.bdf + " limits it to this one)");
  if (f.driver == "nvme")
    return Fail(EBUSY, "NVMe controller " + f.bdf + " is bound to the kernel's nvme driver: unmount its "
                           "namespaces and bind it to vfio-pci with `scripts/setup.sh config` (PCI_ALLOWED=" +
                           f.bdf + " limits it to this one); `scripts/setup.sh reset` gives it back to nvme");
  return Fail(EBUSY, "NVMe controller " + f.bdf + " is bound to driver '" + f.driver +
                         "'; nvmux drives controllers bound to vfio-pci (or uio_pci_generic): "
                         "`scripts/setup.sh config`");
}

std::optional<unsigned> IommuAddressWidth(const std::string& root, const std::string& bdf) {
  // A 64-bit register in hex without 0x ("d2008c22260286"): MGAW is bits 21:16.
  std::ifstream in(root + "/" + bdf + "/iommu/intel-iommu/cap");
  std::string text;
  if (!(in >> text)) return std::nullopt;
  uint64_t cap = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), cap, 16);
  if (ec != std::errc() || p != text.data() + text.size()) return std::nullopt;
  return static_cast<unsigned>((cap >> 16) & 0x3F) + 1;
}

Result<std::vector<std::string>> ParseAllowList(const std::string& text, const std::string& source) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t end = text.find_first_of(" ,\t\n", i);
    if (end == std::string::npos) end = text.size();
    if (end > i) {
      std::string entry = text.substr(i, end - i);
      // The transport id parser owns the address syntax.
      auto trid = TransportId::Parse("trtype:pcie traddr:" + entry);
      if (!trid)
        return Fail(EINVAL, source + " entry '" + entry + "' is not a PCI address (expected DDDD:BB:DD.F or "
                                "BB:DD.F, separated by spaces or commas)");
      out.push_back(trid->traddr);
    }
    i = end + 1;
  }
  return out;
}

std::vector<std::string> UserspaceNvmeAddresses(const std::string& root, const std::vector<std::string>& allowed) {
  std::vector<std::string> out;
  for (const PciFunction& f : ListNvmeFunctions(root)) {
    if (f.driver != "vfio-pci" && f.driver != "uio_pci_generic") continue;
    if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), f.bdf) == allowed.end()) continue;
    out.push_back(f.bdf);
  }
  return out;
}

}  // namespace nvmux::pcie
