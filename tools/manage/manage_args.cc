#include "tools/manage/manage_args.h"

#include <unistd.h>

#include <charconv>
#include <iostream>

#include "shm/base/format.h"

namespace nvmux::manage {

namespace {

std::string Quote(std::string_view option, std::string_view text) {
  return std::string(option) + " '" + std::string(text) + "'";
}

std::string RangeText(uint64_t min, uint64_t max) {
  // Field-wide bounds read better in hex (0xffffffff), others in decimal.
  auto show = [](uint64_t v) {
    return v > 0xFFFF && ((v & (v + 1)) == 0 || v == 0xFFFFFFFE) ? Hex(v) : std::to_string(v);
  };
  return "(allowed " + show(min) + ".." + show(max) + ")";
}

}  // namespace

Result<uint64_t> ParseNumber(std::string_view option, std::string_view text, uint64_t min, uint64_t max) {
  std::string_view digits = text;
  int base = 10;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    digits.remove_prefix(2);
    base = 16;
  }
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, base);
  if (digits.empty() || end != digits.data() + digits.size() || ec == std::errc::invalid_argument)
    return Fail(EINVAL, Quote(option, text) + ": not a number (decimal or 0x hex)");
  if (ec == std::errc::result_out_of_range || value < min || value > max)
    return Fail(EINVAL, Quote(option, text) + ": out of range " + RangeText(min, max));
  return value;
}

Result<std::vector<uint64_t>> ParseNumberList(std::string_view option, std::string_view text, uint64_t min,
                                              uint64_t max) {
  std::vector<uint64_t> out;
  std::string_view rest = text;
  while (true) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    auto v = ParseNumber(option, item, min, max);
    if (!v) {
      std::string why = v.error().message.substr(v.error().message.find(": ") + 2);
      return Fail(EINVAL, Quote(option, text) + ": item '" + std::string(item) + "' is " +
                              (why.rfind("not a number", 0) == 0 ? why : "out of range " + RangeText(min, max)));
    }
    out.push_back(*v);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return out;
}

Result<uint32_t> ParseNsid(std::string_view option, std::string_view text, bool allow_all) {
  auto v = ParseNumber(option, text, 0, UINT64_MAX);
  if (!v) return v.error();
  if (*v == 0 || *v > kAllNamespaces || (*v == kAllNamespaces && !allow_all))
    return Fail(EINVAL, Quote(option, text) + ": not a namespace id (allowed 1..0xfffffffe" +
                            (allow_all ? std::string(", or 0xffffffff for every namespace)") : std::string(")")));
  return static_cast<uint32_t>(*v);
}

int Confirm(std::string_view subcommand, std::string_view what, bool yes) {
  if (yes) return 0;
  if (::isatty(STDIN_FILENO) == 0) {
    std::cerr << "nvmux-manage: " << subcommand << ": stdin is not a terminal to ask on: pass --yes to " << what
              << "\n";
    return 2;
  }
  std::cerr << what << ". Are you sure? [y/N] " << std::flush;
  std::string answer;
  if (!std::getline(std::cin, answer)) answer.clear();
  if (answer == "y" || answer == "Y" || answer == "yes" || answer == "YES") return 0;
  std::cerr << "nvmux-manage: " << subcommand << ": not confirmed; nothing done\n";
  return 1;
}

}  // namespace nvmux::manage
