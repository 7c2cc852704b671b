#include "io_split.h"

#include <algorithm>

namespace nvmux {

size_t SplitIo(uint64_t lba, uint32_t nlb, uint32_t block_bytes, uint32_t max_transfer_bytes, uint32_t noiob_blocks,
               std::span<IoChunk> out) {
  const uint64_t max_blocks = max_transfer_bytes == 0 ? UINT32_MAX : max_transfer_bytes / block_bytes;
  size_t n = 0;
  uint64_t done = 0;
  while (done < nlb) {
    uint64_t here = lba + done;
    uint64_t len = std::min<uint64_t>(nlb - done, max_blocks);
    if (noiob_blocks != 0) len = std::min<uint64_t>(len, noiob_blocks - here % noiob_blocks);
    if (n < out.size()) out[n] = IoChunk{here, static_cast<uint32_t>(len), done * block_bytes};
    ++n;
    done += len;
  }
  return n;
}

}  // namespace nvmux
