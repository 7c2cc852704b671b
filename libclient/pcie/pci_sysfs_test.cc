// pci_sysfs against a fake /sys/bus/pci/devices tree in a temporary directory.
#include "libclient/pcie/pci_sysfs.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace nvmux::pcie {
namespace {

namespace fs = std::filesystem;

class FakeSysfs : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nvmux-pci-sysfs.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    fs::create_directories(root_ + "/drivers/nvme");
    fs::create_directories(root_ + "/drivers/vfio-pci");
    fs::create_directories(root_ + "/drivers/uio_pci_generic");
    fs::create_directories(root_ + "/iommu_groups/7");
    fs::create_directories(root_ + "/devices");
  }
  void TearDown() override { fs::remove_all(root_); }

  // A function as the kernel shows it: class, ids, driver and IOMMU group links.
  void Add(const std::string& bdf, const std::string& cls, const std::string& driver, int group = -1) {
    std::string dir = root_ + "/devices/" + bdf;
    fs::create_directories(dir);
    std::ofstream(dir + "/class") << cls << "\n";
    std::ofstream(dir + "/vendor") << "0x1b36\n";
    std::ofstream(dir + "/device") << "0x0010\n";
    if (!driver.empty()) fs::create_directory_symlink("../../drivers/" + driver, dir + "/driver");
    if (group >= 0) fs::create_directory_symlink("../../iommu_groups/" + std::to_string(group), dir + "/iommu_group");
  }
  std::string devices() const { return root_ + "/devices"; }

  std::string root_;
};

TEST_F(FakeSysfs, ReadsClassIdsDriverAndGroup) {
  Add("0000:00:04.0", "0x010802", "vfio-pci", 7);
  auto f = ReadPciFunction(devices(), "0000:00:04.0");
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_EQ(f->class_code, kNvmeClassCode);
  EXPECT_EQ(f->vendor, 0x1b36);
  EXPECT_EQ(f->device, 0x0010);
  EXPECT_EQ(f->driver, "vfio-pci");
  EXPECT_EQ(f->iommu_group, 7);
  EXPECT_EQ(*CheckDrivable(*f), Access::kVfio);
}

TEST_F(FakeSysfs, MissingFunctionNamesTheAddress) {
  auto f = ReadPciFunction(devices(), "0000:09:00.0");
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code, ENODEV);
  EXPECT_NE(f.error().message.find("0000:09:00.0 does not exist"), std::string::npos) << f.error().message;
}

TEST_F(FakeSysfs, ListsOnlyNvmeControllersSorted) {
  Add("0000:00:05.0", "0x010802", "nvme");
  Add("0000:00:03.0", "0x020000", "e1000e");  // a NIC
  Add("0000:00:04.0", "0x010802", "");
  Add("0000:00:01.0", "0x010601", "ahci");    // SATA, not NVMe
  auto list = ListNvmeFunctions(devices());
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].bdf, "0000:00:04.0");
  EXPECT_EQ(list[0].driver, "");
  EXPECT_EQ(list[1].bdf, "0000:00:05.0");
  EXPECT_EQ(list[1].driver, "nvme");
}

TEST_F(FakeSysfs, RefusalsNameTheDriverAndTheScript) {
  Add("0000:00:05.0", "0x010802", "nvme");
  Add("0000:00:06.0", "0x010802", "");
  Add("0000:00:07.0", "0x010802", "some-other");
  Add("0000:00:03.0", "0x020000", "vfio-pci", 7);
  Add("0000:00:08.0", "0x010802", "uio_pci_generic");

  Result<Access> kernel = CheckDrivable(*ReadPciFunction(devices(), "0000:00:05.0"));
  ASSERT_FALSE(kernel);
  EXPECT_EQ(kernel.error().code, EBUSY);
  EXPECT_NE(kernel.error().message.find("kernel's nvme driver"), std::string::npos) << kernel.error().message;
  EXPECT_NE(kernel.error().message.find("scripts/setup.sh config"), std::string::npos) << kernel.error().message;

  Result<Access> unbound = CheckDrivable(*ReadPciFunction(devices(), "0000:00:06.0"));
  ASSERT_FALSE(unbound);
  EXPECT_EQ(unbound.error().code, ENXIO);
  EXPECT_NE(unbound.error().message.find("no driver"), std::string::npos) << unbound.error().message;

  Result<Access> other = CheckDrivable(*ReadPciFunction(devices(), "0000:00:07.0"));
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().message.find("'some-other'"), std::string::npos) << other.error().message;

  Result<Access> nic = CheckDrivable(*ReadPciFunction(devices(), "0000:00:03.0"));
  ASSERT_FALSE(nic);
  EXPECT_EQ(nic.error().code, ENODEV);
  EXPECT_NE(nic.error().message.find("class 0x020000"), std::string::npos) << nic.error().message;

  EXPECT_EQ(*CheckDrivable(*ReadPciFunction(devices(), "0000:00:08.0")), Access::kUio);
}

// VT-d's CAP register as sysfs prints it (hex, no 0x); MGAW (bits 21:16) is
// the address width minus one: QEMU's intel-iommu with aw-bits=39 and 48.
TEST_F(FakeSysfs, IommuAddressWidthFromTheVtdCapability) {
  Add("0000:00:04.0", "0x010802", "vfio-pci", 7);
  Add("0000:00:05.0", "0x010802", "vfio-pci", 7);
  Add("0000:00:06.0", "0x010802", "nvme");
  fs::create_directories(root_ + "/iommu/dmar0/intel-iommu");
  fs::create_directories(root_ + "/iommu/dmar1/intel-iommu");
  std::ofstream(root_ + "/iommu/dmar0/intel-iommu/cap") << "12008c22260206\n";  // MGAW 0x26
  std::ofstream(root_ + "/iommu/dmar1/intel-iommu/cap") << "d2008c222f0686\n";  // MGAW 0x2f
  fs::create_directory_symlink("../../iommu/dmar0", devices() + "/0000:00:04.0/iommu");
  fs::create_directory_symlink("../../iommu/dmar1", devices() + "/0000:00:05.0/iommu");
  EXPECT_EQ(IommuAddressWidth(devices(), "0000:00:04.0"), 39u);
  EXPECT_EQ(IommuAddressWidth(devices(), "0000:00:05.0"), 48u);
  EXPECT_EQ(IommuAddressWidth(devices(), "0000:00:06.0"), std::nullopt);  // no IOMMU
  std::ofstream(root_ + "/iommu/dmar1/intel-iommu/cap") << "not-hex\n";
  EXPECT_EQ(IommuAddressWidth(devices(), "0000:00:05.0"), std::nullopt);
}

TEST(PciAllowList, ParsesSpdksSpellings) {
  auto list = ParseAllowList("04:00.0, 0000:05:00.1\t0000:AF:00.0");
  ASSERT_TRUE(list) << list.error().message;
  EXPECT_EQ(*list, (std::vector<std::string>{"0000:04:00.0", "0000:05:00.1", "0000:af:00.0"}));
  EXPECT_TRUE(ParseAllowList("")->empty());
  auto bad = ParseAllowList("04:00.0 nvme0");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, EINVAL);
  EXPECT_NE(bad.error().message.find("'nvme0'"), std::string::npos) << bad.error().message;
}

TEST_F(FakeSysfs, EnumerationKeepsUserspaceBoundControllersOfTheAllowList) {
  Add("0000:00:05.0", "0x010802", "vfio-pci", 7);
  Add("0000:00:04.0", "0x010802", "uio_pci_generic");
  Add("0000:00:06.0", "0x010802", "nvme");          // the kernel's: never enumerated
  Add("0000:00:07.0", "0x010802", "");              // no driver
  Add("0000:00:03.0", "0x020000", "vfio-pci", 7);  // not NVMe
  EXPECT_EQ(UserspaceNvmeAddresses(devices(), {}), (std::vector<std::string>{"0000:00:04.0", "0000:00:05.0"}));
  EXPECT_EQ(UserspaceNvmeAddresses(devices(), {"0000:00:05.0"}), (std::vector<std::string>{"0000:00:05.0"}));
  // Allowed but bound to nvme, or absent: nothing.
  EXPECT_TRUE(UserspaceNvmeAddresses(devices(), {"0000:00:06.0", "0000:00:09.0"}).empty());
}

TEST(PciAllowList, ABadEntryNamesItAndWhereTheListCameFrom) {
  auto bad = ParseAllowList("04:00.0,0000:zz:00.0", "--pci-allowed");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, EINVAL);
  EXPECT_EQ(bad.error().message.rfind("--pci-allowed entry '0000:zz:00.0' is not a PCI address", 0), 0u)
      << bad.error().message;
}

}  // namespace
}  // namespace nvmux::pcie
