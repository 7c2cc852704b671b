// JsonChecker: a minimal JSON (RFC 8259) syntax check for tests of tools
// that print JSON: true when the text is one value followed only by
// whitespace.
//
// Thread safety: one checker per call.
#pragma once

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <string>

namespace nvmux::test {

class JsonChecker {
 public:
  explicit JsonChecker(const std::string& text) : s_(text) {}
  bool Valid() { return Value() && (Space(), i_ == s_.size()); }

 private:
  void Space() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool Eat(char c) {
    Space();
    if (i_ < s_.size() && s_[i_] == c) return ++i_, true;
    return false;
  }
  bool Literal(const std::string& w) {
    if (s_.compare(i_, w.size(), w) != 0) return false;
    i_ += w.size();
    return true;
  }
  bool String() {
    if (!Eat('"')) return false;
    while (i_ < s_.size() && s_[i_] != '"') {
      if (static_cast<unsigned char>(s_[i_]) < 0x20) return false;
      if (s_[i_] == '\\') ++i_;
      ++i_;
    }
    return i_ < s_.size() && s_[i_++] == '"';
  }
  bool Number() {
    const char* begin = s_.c_str() + i_;
    char* end = nullptr;
    std::strtod(begin, &end);
    if (end == begin) return false;
    i_ += static_cast<size_t>(end - begin);
    return true;
  }
  bool Value() {
    Space();
    if (i_ >= s_.size()) return false;
    const char c = s_[i_];
    if (c == '{') return Aggregate('}', true);
    if (c == '[') return Aggregate(']', false);
    if (c == '"') return String();
    if (c == 't') return Literal("true");
    if (c == 'f') return Literal("false");
    if (c == 'n') return Literal("null");
    return Number();
  }
  bool Aggregate(char close, bool object) {
    ++i_;
    if (Eat(close)) return true;
    do {
      if (object && !(String() && Eat(':'))) return false;
      if (!Value()) return false;
    } while (Eat(','));
    return Eat(close);
  }

  const std::string& s_;
  size_t i_ = 0;
};

}  // namespace nvmux::test
