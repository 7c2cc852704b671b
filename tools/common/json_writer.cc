#include "tools/common/json_writer.h"

#include <cassert>
#include <cmath>
#include <cstdio>

namespace nvmux::tools {

std::string JsonWriter::Quote(std::string_view value) {
  std::string out;
  out.reserve(value.size() + 2);
  out += '"';
  for (const char c : value) {
    const auto byte = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (byte < 0x20 || byte >= 0x7F) {
          // Control characters must be escaped; bytes >= 0x80 are taken as
          // Latin-1 so the output stays valid UTF-8 whatever the device sent.
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(byte));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

void JsonWriter::Newline() {
  if (indent_ <= 0) {
    return;
  }
  out_ += '\n';
  out_.append(stack_.size() * static_cast<size_t>(indent_), ' ');
}

void JsonWriter::BeforeValue() {
  if (key_pending_) {
    key_pending_ = false;
    return;
  }
  if (stack_.empty()) {
    return;
  }
  assert(!stack_.back().is_object && "a key is due inside an object");
  if (!stack_.back().empty) {
    out_ += ',';
    if (indent_ <= 0 && spaced_) out_ += ' ';
  }
  stack_.back().empty = false;
  Newline();
}

JsonWriter& JsonWriter::Key(std::string_view key) {
  assert(!stack_.empty() && stack_.back().is_object && !key_pending_);
  if (!stack_.back().empty) {
    out_ += ',';
    if (indent_ <= 0 && spaced_) out_ += ' ';
  }
  stack_.back().empty = false;
  Newline();
  out_ += Quote(key);
  out_ += indent_ > 0 || spaced_ ? ": " : ":";
  key_pending_ = true;
  return *this;
}

void JsonWriter::Open(char bracket, bool is_object) {
  BeforeValue();
  out_ += bracket;
  stack_.push_back(Level{is_object, true});
}

void JsonWriter::Close(char bracket, bool is_object) {
  assert(!stack_.empty() && stack_.back().is_object == is_object && !key_pending_);
  (void)is_object;
  const bool was_empty = stack_.back().empty;
  stack_.pop_back();
  if (!was_empty) {
    Newline();
  }
  out_ += bracket;
}

JsonWriter& JsonWriter::BeginObject() {
  Open('{', true);
  return *this;
}

JsonWriter& JsonWriter::EndObject() {
  Close('}', true);
  return *this;
}

JsonWriter& JsonWriter::BeginArray() {
  Open('[', false);
  return *this;
}

JsonWriter& JsonWriter::EndArray() {
  Close(']', false);
  return *this;
}

JsonWriter& JsonWriter::String(std::string_view value) {
  BeforeValue();
  out_ += Quote(value);
  return *this;
}

JsonWriter& JsonWriter::Uint(uint64_t value) {
  BeforeValue();
  out_ += std::to_string(value);
  return *this;
}

JsonWriter& JsonWriter::Int(int64_t value) {
  BeforeValue();
  out_ += std::to_string(value);
  return *this;
}

JsonWriter& JsonWriter::Bool(bool value) {
  BeforeValue();
  out_ += value ? "true" : "false";
  return *this;
}

JsonWriter& JsonWriter::Null() {
  BeforeValue();
  out_ += "null";
  return *this;
}

JsonWriter& JsonWriter::RawNumber(std::string_view digits) {
  BeforeValue();
  out_ += digits;
  return *this;
}

JsonWriter& JsonWriter::Double(double value, int decimals) {
  if (!std::isfinite(value)) return Null();
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, value);
  return RawNumber(buf);
}

}  // namespace nvmux::tools
