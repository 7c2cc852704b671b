#include "libclient/vfiouser/capabilities.h"

#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <optional>

namespace nvmux::vfiouser {
namespace {

// A small strict JSON reader: enough to walk one object and pull unsigned
// integers out of the "capabilities" member. Nesting is bounded so hostile
// input cannot exhaust the stack.
class Reader {
 public:
  explicit Reader(std::string_view text) : text_(text) {}

  void SkipSpace() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool Consume(char c) {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool AtEnd() {
    SkipSpace();
    return pos_ == text_.size();
  }
  char Peek() {
    SkipSpace();
    return pos_ < text_.size() ? text_[pos_] : '\0';
  }

  std::optional<std::string> String() {
    if (!Consume('"')) return std::nullopt;
    std::string out;
    while (pos_ < text_.size()) {
      char c = text_[pos_++];
      if (c == '"') return out;
      if (c == '\\') {
        if (pos_ >= text_.size()) return std::nullopt;
        char e = text_[pos_++];
        if (e == 'u') {
          if (text_.size() - pos_ < 4) return std::nullopt;
          pos_ += 4;
          out.push_back('?');
          continue;
        }
        out.push_back(e);
        continue;
      }
      if (static_cast<unsigned char>(c) < 0x20) return std::nullopt;
      out.push_back(c);
    }
    return std::nullopt;
  }

  // Unsigned integer; nullopt if the next value is not one.
  std::optional<uint64_t> Unsigned() {
    SkipSpace();
    size_t start = pos_;
    uint64_t v = 0;
    while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
      uint64_t d = static_cast<uint64_t>(text_[pos_] - '0');
      if (v > (UINT64_MAX - d) / 10) return std::nullopt;
      v = v * 10 + d;
      ++pos_;
    }
    if (pos_ == start) return std::nullopt;
    if (pos_ < text_.size() && (text_[pos_] == '.' || text_[pos_] == 'e' || text_[pos_] == 'E')) {
      return std::nullopt;
    }
    return v;
  }

  // Skips any JSON value.
  bool SkipValue(int depth) {
    if (depth > 16) return false;
    char c = Peek();
    if (c == '{') {
      return Object(depth, [](const std::string&, Reader& r, int d) { return r.SkipValue(d) ? 0 : -1; }) == 0;
    }
    if (c == '[') {
      Consume('[');
      if (Consume(']')) return true;
      do {
        if (!SkipValue(depth + 1)) return false;
      } while (Consume(','));
      return Consume(']');
    }
    if (c == '"') return String().has_value();
    for (std::string_view lit : {"true", "false", "null"}) {
      if (text_.substr(pos_, lit.size()) == lit) {
        pos_ += lit.size();
        return true;
      }
    }
    // Any other number: sign, digits, fraction, exponent.
    size_t start = pos_;
    while (pos_ < text_.size() && (std::isdigit(static_cast<unsigned char>(text_[pos_])) ||
                                   std::strchr("+-.eE", text_[pos_]) != nullptr)) {
      ++pos_;
    }
    return pos_ > start;
  }

  // Walks an object; member(key, reader, depth) must consume the value and
  // returns 0, or a non-zero code to stop. Returns 0 on success, -1 on a
  // syntax error, or member's code.
  template <typename F>
  int Object(int depth, F member) {
    if (depth > 16 || !Consume('{')) return -1;
    if (Consume('}')) return 0;
    do {
      auto key = String();
      if (!key || !Consume(':')) return -1;
      int rc = member(*key, *this, depth + 1);
      if (rc != 0) return rc;
    } while (Consume(','));
    return Consume('}') ? 0 : -1;
  }

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

Result<Capabilities> ParseCapabilities(std::string_view json) {
  Capabilities caps;
  if (json.empty()) return caps;
  Reader reader(json);
  std::string bad_key;
  auto set_u64 = [&](const std::string& key, Reader& r, uint64_t& dst) {
    auto v = r.Unsigned();
    if (!v) {
      bad_key = key;
      return 1;
    }
    dst = *v;
    return 0;
  };
  int rc = reader.Object(0, [&](const std::string& key, Reader& r, int depth) {
    if (key != "capabilities") return r.SkipValue(depth) ? 0 : -1;
    return r.Object(depth, [&](const std::string& k, Reader& r2, int d2) {
      uint64_t v = 0;
      if (k == "max_msg_fds" || k == "max_dma_maps") {
        int code = set_u64(k, r2, v);
        if (code != 0) return code;
        if (v > UINT32_MAX) {
          bad_key = k;
          return 1;
        }
        (k == "max_msg_fds" ? caps.max_msg_fds : caps.max_dma_maps) = static_cast<uint32_t>(v);
        return 0;
      }
      if (k == "max_data_xfer_size") return set_u64(k, r2, caps.max_data_xfer_size);
      if (k == "pgsizes") return set_u64(k, r2, caps.pgsizes);
      return r2.SkipValue(d2) ? 0 : -1;
    });
  });
  if (rc > 0) {
    return Fail(EINVAL, "vfio-user capabilities: \"" + bad_key + "\" must be an unsigned 32/64-bit integer");
  }
  if (rc < 0 || !reader.AtEnd()) {
    return Fail(EINVAL, "vfio-user capabilities: not a JSON object: '" + std::string(json.substr(0, 80)) + "'");
  }
  return caps;
}

std::string FormatCapabilities(const Capabilities& caps) {
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "{\"capabilities\":{\"max_msg_fds\":%" PRIu32 ",\"max_data_xfer_size\":%" PRIu64
                ",\"max_dma_maps\":%" PRIu32 ",\"pgsizes\":%" PRIu64 "}}",
                caps.max_msg_fds, caps.max_data_xfer_size, caps.max_dma_maps, caps.pgsizes);
  return buf;
}

}  // namespace nvmux::vfiouser
