#include "tools/emu/options.h"

#include <charconv>
#include <limits>

namespace nvmux::emu {
namespace {

Result<uint64_t> ParseUnsigned(std::string_view key, std::string_view text) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    return Fail(EINVAL, std::string(key) + "='" + std::string(text) + "' is not an unsigned integer");
  }
  return v;
}

}  // namespace

Result<uint64_t> ParseSize(std::string_view text) {
  uint64_t multiplier = 1;
  std::string_view digits = text;
  if (!text.empty()) {
    switch (text.back()) {
      case 'k': case 'K': multiplier = 1ull << 10; break;
      case 'm': case 'M': multiplier = 1ull << 20; break;
      case 'g': case 'G': multiplier = 1ull << 30; break;
      case 't': case 'T': multiplier = 1ull << 40; break;
    }
    if (multiplier != 1) digits.remove_suffix(1);
  }
  auto v = ParseUnsigned("size", digits);
  if (!v) return Fail(EINVAL, "size='" + std::string(text) + "' is not a byte count (e.g. 4096, 64M, 1G)");
  if (*v > std::numeric_limits<uint64_t>::max() / multiplier) {
    return Fail(EINVAL, "size='" + std::string(text) + "' overflows 64 bits");
  }
  return *v * multiplier;
}

Result<BackingSpec> ParseBacking(std::string_view text) {
  if (text == "ram") return BackingSpec(BackingKind::kRam);
  if (text == "ram-lazy") return BackingSpec(BackingKind::kRamLazy);
  if (text == "null") return BackingSpec(BackingKind::kNull);
  if (text.starts_with("file:")) {
    std::string_view path = text.substr(5);
    if (path.empty()) return Fail(EINVAL, "--backing file: needs a path (file:PATH)");
    return BackingSpec(BackingKind::kFile, std::string(path));
  }
  return Fail(EINVAL, "--backing '" + std::string(text) + "' is not one of: ram, ram-lazy, null, file:PATH");
}

std::string BackingPath(const BackingSpec& backing, uint32_t nsid) {
  return nsid <= 1 ? backing.path : backing.path + "." + std::to_string(nsid);
}

Result<NamespaceOptions> ParseNamespaceOptions(std::string_view text) {
  NamespaceOptions ns;
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return Fail(EINVAL, "--ns item '" + std::string(item) + "' is not key=value (keys: size, lbads, ms, ext)");
    }
    std::string_view key = item.substr(0, eq);
    std::string_view value = item.substr(eq + 1);
    if (key == "size") {
      auto v = ParseSize(value);
      if (!v) return v.error();
      ns.size_bytes = *v;
    } else if (key == "lbads") {
      auto v = ParseUnsigned(key, value);
      if (!v) return v.error();
      if (*v != 512 && *v != 4096) {
        return Fail(EINVAL, "--ns lbads=" + std::string(value) + ": the block size must be 512 or 4096");
      }
      ns.block_size = static_cast<uint32_t>(*v);
    } else if (key == "ms") {
      auto v = ParseUnsigned(key, value);
      if (!v) return v.error();
      if (*v != 0 && *v != 8 && *v != 16 && *v != 64) {
        return Fail(EINVAL, "--ns ms=" + std::string(value) + ": metadata size must be 0, 8, 16 or 64");
      }
      ns.metadata_size = static_cast<uint16_t>(*v);
    } else if (key == "ext") {
      if (value != "0" && value != "1") return Fail(EINVAL, "--ns ext=" + std::string(value) + ": must be 0 or 1");
      ns.extended_lba = value == "1";
    } else {
      return Fail(EINVAL, "--ns key '" + std::string(key) + "' is unknown (keys: size, lbads, ms, ext)");
    }
  }
  if (ns.size_bytes == 0 || ns.size_bytes % ns.block_size != 0) {
    return Fail(EINVAL, "--ns size=" + std::to_string(ns.size_bytes) +
                            " must be a non-zero multiple of the block size " + std::to_string(ns.block_size));
  }
  return ns;
}

Status Validate(const EmulatorOptions& o) {
  if (o.socket_dir.empty()) return Fail(EINVAL, "--socket: a directory is required");
  if (o.mdts > 15) return Fail(EINVAL, "--mdts " + std::to_string(o.mdts) + ": must be 0..15");
  if (o.mqes < 1) return Fail(EINVAL, "--mqes " + std::to_string(o.mqes) + ": must be 1..65535 (CAP.MQES, 0's based)");
  if (o.io_queues < 1 || o.io_queues > 511) {
    return Fail(EINVAL, "--io-queues " + std::to_string(o.io_queues) + ": must be 1..511 (one doorbell page)");
  }
  if (o.msix_vectors > o.io_queues + 1) {
    return Fail(EINVAL, "--msix-vectors " + std::to_string(o.msix_vectors) + ": must be 1.." +
                            std::to_string(o.io_queues + 1) + " (--io-queues + 1), or 0 for that many");
  }
  if (o.backing.kind == BackingKind::kFile && o.backing.path.empty()) {
    return Fail(EINVAL, "--backing file: needs a path (file:PATH)");
  }
  if (o.namespaces.size() > 32) {
    return Fail(EINVAL, std::to_string(o.namespaces.size()) + " --ns given, at most 32 namespaces");
  }
  for (const NamespaceOptions& ns : o.namespaces) {
    if (ns.size_bytes == 0 || ns.size_bytes % ns.block_size != 0) {
      return Fail(EINVAL, "namespace size " + std::to_string(ns.size_bytes) +
                              " must be a non-zero multiple of the block size " + std::to_string(ns.block_size));
    }
    if (ns.extended_lba && ns.metadata_size == 0) {
      return Fail(EINVAL, "--ns ext=1 needs metadata (ms=8, 16 or 64)");
    }
  }
  return Ok();
}

}  // namespace nvmux::emu
