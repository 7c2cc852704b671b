#include "shm/segment.h"

#include <unistd.h>

#include <atomic>
#include <boost/version.hpp>
#include <cstring>
#include <thread>

namespace nvmux::shm {
namespace bip = boost::interprocess;
namespace {

constexpr size_t kManagedAlign = 64;
constexpr size_t kMinManaged = 64 * 1024;

size_t ManagedOffset() { return (sizeof(SegmentHeader) + kManagedAlign - 1) / kManagedAlign * kManagedAlign; }

}  // namespace

Result<std::unique_ptr<Segment>> Segment::Create(void* base, size_t size, int group_id, uint32_t abi_version) {
  size_t offset = ManagedOffset();
  if (size < offset + kMinManaged)
    return Fail(EINVAL, "segment of " + std::to_string(size) + " bytes is too small (minimum " +
                            std::to_string(offset + kMinManaged) + ")");
  auto* header = static_cast<SegmentHeader*>(base);
  std::memset(header, 0, sizeof(*header));
  header->magic = kSegmentMagic;
  header->abi_version = abi_version;
  header->boost_version = BOOST_VERSION;
  header->total_size = size;
  header->managed_offset = offset;
  header->group_id = group_id;
  header->primary_pid = getpid();
  NVMUX_TRY(InitRobustMutex(header->group_lock));
  try {
    bip::managed_external_buffer managed(bip::create_only, static_cast<char*>(base) + offset, size - offset);
    return std::unique_ptr<Segment>(new Segment(header, std::move(managed)));
  } catch (const std::exception& e) {  // Boost reports through exceptions; shm does not
    return Fail(ENOMEM, std::string("cannot lay out the segment manager: ") + e.what());
  }
}

Result<std::unique_ptr<Segment>> Segment::Attach(void* base, size_t size, uint32_t abi_version, Nanos timeout,
                                                 const Clock& clock) {
  auto* header = static_cast<SegmentHeader*>(base);
  Nanos deadline = clock.Now() + timeout;
  while (std::atomic_ref<uint32_t>(header->ready).load(std::memory_order_acquire) == 0) {
    if (clock.Now() >= deadline)
      return Fail(ETIMEDOUT, "the primary did not publish the group segment within " +
                                 std::to_string(timeout.count() / 1'000'000) + " ms");
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  if (header->magic != kSegmentMagic) return Fail(EPROTO, "shared memory is not an nvmux group segment");
  if (header->abi_version != abi_version)
    return Fail(EPROTONOSUPPORT, "group " + std::to_string(header->group_id) + " was created by nvmux ABI version " +
                                     std::to_string(header->abi_version) + "; this process is built with ABI version " +
                                     std::to_string(abi_version) + ": run the same nvmux build in every process");
  if (header->boost_version != BOOST_VERSION)
    return Fail(EPROTONOSUPPORT, "group " + std::to_string(header->group_id) + " was created with Boost " +
                                     std::to_string(header->boost_version) + "; this process uses Boost " +
                                     std::to_string(BOOST_VERSION));
  if (header->total_size != size || header->managed_offset != ManagedOffset())
    return Fail(EPROTO, "group segment size " + std::to_string(header->total_size) + " does not match its memzone (" +
                            std::to_string(size) + ")");
  try {
    bip::managed_external_buffer managed(bip::open_only, static_cast<char*>(base) + header->managed_offset,
                                         size - header->managed_offset);
    return std::unique_ptr<Segment>(new Segment(header, std::move(managed)));
  } catch (const std::exception& e) {
    return Fail(EPROTO, std::string("cannot open the group's segment manager: ") + e.what());
  }
}

bool Segment::published() const {
  return std::atomic_ref<uint32_t>(header_->ready).load(std::memory_order_acquire) != 0;
}

void Segment::Publish() { std::atomic_ref<uint32_t>(header_->ready).store(1, std::memory_order_release); }

}  // namespace nvmux::shm
