// CONFORMANCE.md: Reservations (Register 0D, Report 0E, Acquire 11,
// Release 15) and Reservation Conflict (0/83), single-host model.
#include <cstring>

#include "test/conformance/harness.h"

namespace nvmux::conformance {
namespace {

using namespace nvmux::spec;

constexpr uint8_t kGen = sct::kGeneric;

class ReservationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    emu::EmulatorOptions options;
    options.namespaces.push_back({4ull << 20, 512, 0, false});
    options.namespaces.push_back({4ull << 20, 512, 0, false});
    dev_ = std::make_unique<TestDevice>(options);
    dev_->Start();
    ASSERT_TRUE(dev_->Enable());
    dev_->CreateIoQueuePair(1, 16);
  }
  std::optional<Cqe> WithData(uint8_t opc, uint32_t cdw10, uint64_t a, uint64_t b, uint32_t nsid = 1) {
    DmaMemory::Buffer buf = dev_->mem().Alloc(4096);
    std::memcpy(buf.ptr, &a, 8);
    std::memcpy(buf.ptr + 8, &b, 8);
    Sqe sqe = IoCmd(opc, nsid, 0, 1);
    sqe.cdw10 = cdw10;
    sqe.cdw11 = 0;
    sqe.cdw12 = 0;
    sqe.prp1 = buf.iova;
    return dev_->Io(1, sqe);
  }
  std::optional<Cqe> Register(uint8_t action, uint64_t crkey, uint64_t nrkey, bool iekey = false,
                              uint32_t cptpl = 0) {
    return WithData(nvm::kReservationRegister, action | (iekey ? 8u : 0u) | (cptpl << 30), crkey, nrkey);
  }
  std::optional<Cqe> Acquire(uint8_t action, uint8_t rtype, uint64_t crkey, uint64_t prkey = 0) {
    return WithData(nvm::kReservationAcquire, action | (uint32_t{rtype} << 8), crkey, prkey);
  }
  std::optional<Cqe> Release(uint8_t action, uint8_t rtype, uint64_t crkey) {
    return WithData(nvm::kReservationRelease, action | (uint32_t{rtype} << 8), crkey, 0);
  }
  struct Report {
    ReservationStatusHeader header;
    RegisteredController entry;
  };
  Report GetReport(uint32_t nsid = 1) {
    DmaMemory::Buffer buf = dev_->mem().Alloc(4096);
    Sqe sqe = IoCmd(nvm::kReservationReport, nsid, 0, 1);
    sqe.cdw10 = 4096 / 4 - 1;
    sqe.cdw11 = 0;
    sqe.cdw12 = 0;
    sqe.prp1 = buf.iova;
    EXPECT_TRUE(IsSuccess(dev_->Io(1, sqe)));
    Report r;
    std::memcpy(static_cast<void*>(&r.header), buf.ptr, sizeof(r.header));
    std::memcpy(static_cast<void*>(&r.entry), buf.ptr + sizeof(r.header), sizeof(r.entry));
    return r;
  }
  std::unique_ptr<TestDevice> dev_;
};

TEST_F(ReservationsTest, RegisterAcquireReportRelease) {
  Report empty = GetReport();
  EXPECT_EQ(empty.header.regctl[0], 0);
  EXPECT_EQ(empty.header.rtype, 0);
  ASSERT_TRUE(IsSuccess(Register(resv::kRegister, 0, 0xAAAA)));
  EXPECT_TRUE(IsSuccess(Register(resv::kRegister, 0, 0xAAAA))) << "same key again is fine";
  ASSERT_TRUE(IsSuccess(Acquire(resv::kAcquire, resv::kWriteExclusive, 0xAAAA)));
  Report held = GetReport();
  EXPECT_EQ(held.header.regctl[0], 1);
  EXPECT_EQ(held.header.rtype, resv::kWriteExclusive);
  EXPECT_EQ(held.entry.cntlid, 1);
  EXPECT_EQ(held.entry.rcsts & 1, 1);
  EXPECT_EQ(held.entry.rkey, 0xAAAAu);
  EXPECT_GT(held.header.gen, empty.header.gen);
  // The holder's I/O proceeds.
  DmaMemory::Buffer data = dev_->mem().Alloc(4096);
  Sqe w = IoCmd(nvm::kWrite, 1, 0, 8);
  w.prp1 = data.iova;
  EXPECT_TRUE(IsSuccess(dev_->Io(1, w)));
  // Release needs the matching type.
  EXPECT_TRUE(HasStatus(Release(resv::kRelease, resv::kExclusiveAccess, 0xAAAA), kGen, sc::kInvalidField, true));
  ASSERT_TRUE(IsSuccess(Release(resv::kRelease, resv::kWriteExclusive, 0xAAAA)));
  EXPECT_EQ(GetReport().header.rtype, 0);
  // The other namespace is independent.
  EXPECT_EQ(GetReport(2).header.regctl[0], 0);
}

TEST_F(ReservationsTest, Conflicts) {
  // Not registered.
  EXPECT_TRUE(HasStatus(Acquire(resv::kAcquire, resv::kWriteExclusive, 0), kGen, sc::kReservationConflict, true));
  EXPECT_TRUE(HasStatus(Release(resv::kRelease, resv::kWriteExclusive, 0), kGen, sc::kReservationConflict, true));
  EXPECT_TRUE(HasStatus(Register(resv::kUnregister, 0, 0), kGen, sc::kReservationConflict, true));
  ASSERT_TRUE(IsSuccess(Register(resv::kRegister, 0, 7)));
  // Wrong keys.
  EXPECT_TRUE(HasStatus(Register(resv::kRegister, 0, 8), kGen, sc::kReservationConflict, true));
  EXPECT_TRUE(HasStatus(Acquire(resv::kAcquire, resv::kWriteExclusive, 8), kGen, sc::kReservationConflict, true));
  EXPECT_TRUE(HasStatus(Register(resv::kReplace, 8, 9), kGen, sc::kReservationConflict, true));
  EXPECT_TRUE(HasStatus(Release(resv::kClear, 0, 8), kGen, sc::kReservationConflict, true));
  // A different type while holding one.
  ASSERT_TRUE(IsSuccess(Acquire(resv::kAcquire, resv::kWriteExclusive, 7)));
  EXPECT_TRUE(HasStatus(Acquire(resv::kAcquire, resv::kExclusiveAccess, 7), kGen, sc::kReservationConflict, true));
  // Preempting itself changes the type.
  ASSERT_TRUE(IsSuccess(Acquire(resv::kPreempt, resv::kExclusiveAccess, 7, 7)));
  EXPECT_EQ(GetReport().header.rtype, resv::kExclusiveAccess);
  EXPECT_TRUE(HasStatus(Acquire(resv::kPreempt, resv::kWriteExclusive, 7, 99), kGen, sc::kReservationConflict, true));
}

TEST_F(ReservationsTest, ReplaceUnregisterClear) {
  ASSERT_TRUE(IsSuccess(Register(resv::kRegister, 0, 1)));
  ASSERT_TRUE(IsSuccess(Register(resv::kReplace, 1, 2)));
  EXPECT_EQ(GetReport().entry.rkey, 2u);
  ASSERT_TRUE(IsSuccess(Register(resv::kReplace, 12345, 3, /*iekey=*/true)));
  EXPECT_EQ(GetReport().entry.rkey, 3u);
  ASSERT_TRUE(IsSuccess(Acquire(resv::kAcquire, resv::kWriteExclusiveAllRegistrants, 3)));
  // Unregistering the holder releases the reservation.
  ASSERT_TRUE(IsSuccess(Register(resv::kUnregister, 3, 0)));
  Report r = GetReport();
  EXPECT_EQ(r.header.regctl[0], 0);
  EXPECT_EQ(r.header.rtype, 0);
  ASSERT_TRUE(IsSuccess(Register(resv::kRegister, 0, 5)));
  ASSERT_TRUE(IsSuccess(Acquire(resv::kAcquire, resv::kExclusiveAccess, 5)));
  ASSERT_TRUE(IsSuccess(Release(resv::kClear, 0, 5)));
  EXPECT_EQ(GetReport().header.regctl[0], 0);
}

TEST_F(ReservationsTest, InvalidFields) {
  EXPECT_TRUE(HasStatus(Register(3, 0, 1), kGen, sc::kInvalidField, true));
  EXPECT_TRUE(HasStatus(Register(resv::kRegister, 0, 1, false, 2), kGen, sc::kInvalidField, true))
      << "persist through power loss is not offered";
  ASSERT_TRUE(IsSuccess(Register(resv::kRegister, 0, 1)));
  EXPECT_TRUE(HasStatus(Acquire(resv::kAcquire, 0, 1), kGen, sc::kInvalidField, true));
  EXPECT_TRUE(HasStatus(Acquire(resv::kAcquire, 7, 1), kGen, sc::kInvalidField, true));
  EXPECT_TRUE(HasStatus(Acquire(3, resv::kWriteExclusive, 1), kGen, sc::kInvalidField, true));
  EXPECT_TRUE(HasStatus(Release(2, resv::kWriteExclusive, 1), kGen, sc::kInvalidField, true));
  DmaMemory::Buffer buf = dev_->mem().Alloc(4096);
  Sqe eds = IoCmd(nvm::kReservationReport, 1, 0, 1);
  eds.cdw10 = 1023;
  eds.cdw11 = 1;  // extended data structure
  eds.cdw12 = 0;
  eds.prp1 = buf.iova;
  EXPECT_TRUE(HasStatus(dev_->Io(1, eds), kGen, sc::kInvalidField, true));
}

TEST_F(ReservationsTest, IdentifyReportsCapabilities) {
  DmaMemory::Buffer buf = dev_->mem().Alloc(4096);
  Sqe id = AdminCmd(admin::kIdentify, 1);
  id.prp1 = buf.iova;
  ASSERT_TRUE(IsSuccess(dev_->Admin(id)));
  const auto* ns = reinterpret_cast<const IdentifyNamespace*>(buf.ptr);
  EXPECT_EQ(ns->rescap & 0x7E, 0x7E);
  EXPECT_EQ(ns->rescap & 1, 0);
  id = AdminCmd(admin::kIdentify);
  id.cdw10 = cns::kController;
  id.prp1 = buf.iova;
  ASSERT_TRUE(IsSuccess(dev_->Admin(id)));
  EXPECT_NE(reinterpret_cast<const IdentifyController*>(buf.ptr)->oncs & kOncsReservations, 0);
}

}  // namespace
}  // namespace nvmux::conformance
