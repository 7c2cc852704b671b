// JsonWriter: a small streaming JSON writer (RFC 8259) for tool output.
//
// Values are appended in document order; the writer places commas, colons
// and (with indent > 0) newlines and indentation. Strings are escaped so the
// output is always valid UTF-8 JSON: '"', '\\' and control characters are
// escaped, and bytes >= 0x80 (device strings are meant to be ASCII) are
// written as \u00XX, i.e. read as Latin-1, never passed through as possibly
// invalid UTF-8.
//
//   JsonWriter w;
//   w.BeginObject().Key("vid").Uint(0x1b36).Key("sn").String("S1").EndObject();
//   std::string text = std::move(w).Take();
//
// Misuse (a value where a key is due, unbalanced End*) is a programming
// error: it is caught by assert() in debug builds and otherwise produces
// invalid JSON; the writer has no error state.
//
// Thread safety: one JsonWriter per thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace nvmux::tools {

class JsonWriter {
 public:
  // indent: spaces per nesting level; 0 writes everything on one line, with
  // "," and ":" between items, or ", " and ": " when `spaced`.
  explicit JsonWriter(int indent = 2, bool spaced = false) : indent_(indent), spaced_(spaced) {}

  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  // REQUIRES: directly inside an object, and no key pending.
  JsonWriter& Key(std::string_view key);

  JsonWriter& String(std::string_view value);
  JsonWriter& Uint(uint64_t value);
  JsonWriter& Int(int64_t value);
  JsonWriter& Bool(bool value);
  JsonWriter& Null();
  // An already formatted JSON number (e.g. a 128-bit decimal); REQUIRES:
  // `digits` is a valid JSON number.
  JsonWriter& RawNumber(std::string_view digits);
  JsonWriter& Raw(std::string_view digits) { return RawNumber(digits); }
  // A fixed-point number with `decimals` digits; NaN and infinities as null.
  JsonWriter& Double(double value, int decimals = 3);

  // Typed conveniences: Value(v) by type, Field(key, v) = Key(key) + value.
  JsonWriter& Value(std::string_view v) { return String(v); }
  JsonWriter& Value(const char* v) { return String(v); }
  JsonWriter& Value(const std::string& v) { return String(v); }
  JsonWriter& Value(uint64_t v) { return Uint(v); }
  JsonWriter& Value(uint32_t v) { return Uint(v); }
  JsonWriter& Value(uint16_t v) { return Uint(v); }
  JsonWriter& Value(uint8_t v) { return Uint(v); }
  JsonWriter& Value(int v) { return Int(v); }
  JsonWriter& Value(bool v) { return Bool(v); }
  JsonWriter& Value(double v) { return Double(v); }
  template <typename T>
  JsonWriter& Field(std::string_view key, const T& value) {
    return Key(key).Value(value);
  }

  // The document so far, plus a newline.
  std::string Line() const { return out_ + "\n"; }

  // The text so far; complete once every Begin* has its End*.
  const std::string& str() const { return out_; }
  std::string Take() && { return std::move(out_); }

  // `value` as a quoted, escaped JSON string.
  static std::string Quote(std::string_view value);

 private:
  // Writes the separator and indentation due before a value or key.
  void BeforeValue();
  void Open(char bracket, bool is_object);
  void Close(char bracket, bool is_object);
  void Newline();

  struct Level {
    bool is_object = false;
    bool empty = true;
  };
  int indent_;
  bool spaced_;
  std::string out_;
  std::vector<Level> stack_;
  bool key_pending_ = false;  // a key was written, its value is due
};

}  // namespace nvmux::tools
