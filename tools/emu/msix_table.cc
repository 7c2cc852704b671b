#include "tools/emu/msix_table.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace nvmux::emu {

Result<std::unique_ptr<MsixTable>> MsixTable::Create(uint32_t vectors) {
  UniqueFd fd(::memfd_create("nvmux-emu-msix", MFD_CLOEXEC));
  if (!fd.valid()) return ErrnoError("nvmux-emu: memfd for the MSI-X table");
  if (::ftruncate(fd.get(), kTableBytes) != 0) return ErrnoError("nvmux-emu: sizing the MSI-X table");
  void* p = ::mmap(nullptr, kTableBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return ErrnoError("nvmux-emu: mapping the MSI-X table");
  std::unique_ptr<MsixTable> t(
      new MsixTable(std::move(fd), static_cast<uint8_t*>(p), std::min(vectors, kTableBytes / 16)));
  t->Reset();
  return t;
}

MsixTable::~MsixTable() { ::munmap(table_, kTableBytes); }

volatile uint32_t* MsixTable::Control(uint16_t vector) const {
  return reinterpret_cast<volatile uint32_t*>(table_ + size_t{vector} * 16 + 12);
}

bool MsixTable::Masked(uint16_t vector) const { return vector >= vectors_ || (*Control(vector) & 1u) != 0; }

void MsixTable::SetMasked(uint16_t vector, bool masked) {
  if (vector >= vectors_) return;
  volatile uint32_t* c = Control(vector);
  *c = masked ? (*c | 1u) : (*c & ~1u);
}

void MsixTable::Reset() {
  for (uint32_t v = 0; v < vectors_; ++v) SetMasked(static_cast<uint16_t>(v), true);
  std::memset(pba_, 0, sizeof(pba_));
}

bool MsixTable::Pending(uint16_t vector) const { return (pba_[vector / 8] >> (vector % 8)) & 1u; }

void MsixTable::SetPending(uint16_t vector, bool pending) {
  if (vector >= vectors_) return;
  const auto bit = static_cast<uint8_t>(1u << (vector % 8));
  pba_[vector / 8] = static_cast<uint8_t>(pending ? pba_[vector / 8] | bit : pba_[vector / 8] & ~bit);
}

void MsixTable::ReadTable(uint32_t offset, std::span<uint8_t> out) const {
  std::memcpy(out.data(), table_ + offset, out.size());
}

void MsixTable::WriteTable(uint32_t offset, std::span<const uint8_t> in) {
  std::memcpy(table_ + offset, in.data(), in.size());
}

void MsixTable::ReadPba(uint32_t offset, std::span<uint8_t> out) const {
  std::memcpy(out.data(), pba_ + offset, out.size());
}

}  // namespace nvmux::emu
