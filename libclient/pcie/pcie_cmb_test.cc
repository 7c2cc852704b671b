// EnableCmb against a fake controller's registers (CMBLOC/CMBSZ hidden until
// CMBMSC.CRE, as QEMU's 1.4 scheme does) and a fake sysfs `resource` file.
#include "libclient/pcie/pcie_cmb.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "nvmux/spec/registers.h"

namespace nvmux::pcie {
namespace {

namespace fs = std::filesystem;

class FakeCmbRegisters final : public RegisterIo {
 public:
  uint64_t cap = 0;
  uint32_t cmbloc = 0, cmbsz = 0, cmbsts = 0;
  uint64_t cmbmsc = 0;
  bool msc_scheme = true;  // CAP.CMBS: CMBLOC/CMBSZ read 0 until CRE
  std::vector<std::pair<uint32_t, uint32_t>> writes;
  uint64_t latched_cba = 0;  // CBA as the controller took it when CMSE was set
  Result<uint32_t> Read32(uint32_t offset) override {
    bool shown = !msc_scheme || (cmbmsc & 1) != 0;
    switch (offset) {
      case spec::kRegCmbloc: return shown ? cmbloc : 0u;
      case spec::kRegCmbsz: return shown ? cmbsz : 0u;
      case spec::kRegCmbsts: return cmbsts;
      default: return 0u;
    }
  }
  Result<uint64_t> Read64(uint32_t offset) override {
    if (offset == spec::kRegCap) return cap;
    return uint64_t{0};
  }
  Status Write32(uint32_t offset, uint32_t value) override {
    writes.emplace_back(offset, value);
    if (offset == spec::kRegCmbmsc) {
      cmbmsc = (cmbmsc & ~uint64_t{0xFFFFFFFF}) | value;
      if ((value & 2) != 0) latched_cba = cmbmsc & ~uint64_t{0xFFF};  // the whole register, as QEMU does
    } else if (offset == spec::kRegCmbmsc + 4) {
      cmbmsc = (cmbmsc & 0xFFFFFFFF) | uint64_t{value} << 32;
    }
    return Ok();
  }
  Status Write64(uint32_t offset, uint64_t value) override {
    NVMUX_TRY(Write32(offset, static_cast<uint32_t>(value)));
    return Write32(offset + 4, static_cast<uint32_t>(value >> 32));
  }
};

class PcieCmb : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nvmux-pcie-cmb.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    fs::create_directories(root_ + "/" + kBdf);
    // BAR0 (64-bit: its upper half is the second line), then BAR2 above 4 GiB.
    std::ofstream(root_ + "/" + kBdf + "/resource")
        << "0x00000000fe000000 0x00000000fe003fff 0x0000000000140204\n"
        << "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
        << "0x0000000380000000 0x00000003807fffff 0x000000000014220c\n";
    regs_.cap = uint64_t{1} << 57;  // CMBS
    regs_.cmbloc = 2 | (1u << 12);                 // BIR 2, OFST 1 unit
    regs_.cmbsz = 0x1F | (2u << 8) | (8u << 12);   // SQS CQS LISTS RDS WDS, SZU 1 MiB, SZ 8
  }
  void TearDown() override { fs::remove_all(root_); }
  static constexpr const char* kBdf = "0000:00:04.0";
  std::string root_;
  FakeCmbRegisters regs_;
};

TEST_F(PcieCmb, OneFourSchemeEnablesWithTheBarAddressAsBase) {
  auto l = EnableCmb(regs_, kBdf, root_);
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_EQ(l->bar, 2u);
  EXPECT_EQ(l->bar_offset, 1u << 20);
  EXPECT_EQ(l->bytes, 8u << 20);
  EXPECT_EQ(l->controller_address, 0x380000000ull + (1u << 20));
  // CRE first (to read CMBLOC/CMBSZ), CBA's upper half before the lower
  // half that carries CMSE: the controller latched the whole address.
  ASSERT_EQ(regs_.writes.size(), 3u);
  EXPECT_EQ(regs_.writes[0], std::make_pair(spec::kRegCmbmsc, 1u));
  EXPECT_EQ(regs_.writes[1], std::make_pair(spec::kRegCmbmsc + 4, 3u));
  EXPECT_EQ(regs_.writes[2].first, spec::kRegCmbmsc);
  EXPECT_EQ(regs_.latched_cba, l->controller_address);
}

TEST_F(PcieCmb, LegacyControllerIsNotWrittenTo) {
  regs_.cap = 0;
  regs_.msc_scheme = false;
  auto l = EnableCmb(regs_, kBdf, root_);
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_EQ(l->controller_address, 0x380000000ull + (1u << 20));
  EXPECT_TRUE(regs_.writes.empty());
}

TEST_F(PcieCmb, NoCmbIsNotSupported) {
  regs_.cmbsz = 0;
  auto l = EnableCmb(regs_, kBdf, root_);
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code, ENOTSUP);
  EXPECT_NE(l.error().message.find("has no Controller Memory Buffer"), std::string::npos) << l.error().message;
}

TEST_F(PcieCmb, CmbWithoutSqSupportIsNotSupported) {
  regs_.cmbsz &= ~1u;
  auto l = EnableCmb(regs_, kBdf, root_);
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code, ENOTSUP);
  EXPECT_NE(l.error().message.find("CMBSZ.SQS = 0"), std::string::npos) << l.error().message;
}

TEST_F(PcieCmb, RefusedBaseAddressIsAnError) {
  regs_.cmbsts = 1;  // CBAI
  auto l = EnableCmb(regs_, kBdf, root_);
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code, EIO);
  EXPECT_NE(l.error().message.find("CMBSTS.CBAI"), std::string::npos) << l.error().message;
}

TEST_F(PcieCmb, UnassignedBarIsAnError) {
  regs_.cmbloc = 4;  // BIR 4: no address in the resource file
  auto l = EnableCmb(regs_, kBdf, root_);
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code, EIO);
  EXPECT_NE(l.error().message.find("BAR4 has no address"), std::string::npos) << l.error().message;
}

}  // namespace
}  // namespace nvmux::pcie
