#include "test/util/census.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace nvmux::test {
namespace {

// The text after `key` up to the bracket that closes the list it opens.
std::string Section(const std::string& text, const std::string& key) {
  size_t at = text.find(key);
  if (at == std::string::npos) return "";
  size_t start = at + key.size();
  int depth = 1;
  for (size_t i = start; i < text.size(); ++i) {
    if (text[i] == '[') ++depth;
    if (text[i] == ']' && --depth == 0) return text.substr(start, i - start);
  }
  return "";
}

// The bracketed tuples of numbers in a section: "[1,2,3],[4,5,6]".
std::vector<std::vector<uint64_t>> Tuples(const std::string& section) {
  std::vector<std::vector<uint64_t>> out;
  for (size_t i = 0; i < section.size(); ++i) {
    if (section[i] != '[') continue;
    size_t end = section.find(']', i);
    if (end == std::string::npos) break;
    std::vector<uint64_t> t;
    std::string inner = section.substr(i + 1, end - i - 1);
    for (size_t p = 0; p < inner.size();) {
      size_t comma = inner.find(',', p);
      t.push_back(std::strtoull(inner.substr(p, comma == std::string::npos ? std::string::npos : comma - p).c_str(),
                                nullptr, 10));
      if (comma == std::string::npos) break;
      p = comma + 1;
    }
    out.push_back(t);
    i = end;
  }
  return out;
}

// The number right after `key` (0 if absent).
uint64_t Number(const std::string& text, const std::string& key) {
  size_t at = text.find(key);
  if (at == std::string::npos) return 0;
  return std::strtoull(text.c_str() + at + key.size(), nullptr, 10);
}

}  // namespace

bool Census::Reaped(int pid) const {
  return std::any_of(reaped.begin(), reaped.end(), [&](const auto& r) { return r.first == pid; });
}

Census ParseCensus(std::string raw) {
  Census c;
  c.raw = std::move(raw);
  for (const auto& t : Tuples(Section(c.raw, "\"qids\": [")))
    if (t.size() == 3)
      c.qids.push_back({static_cast<uint32_t>(t[0]), static_cast<uint32_t>(t[1]), static_cast<uint32_t>(t[2])});
  for (const auto& t : Tuples("[" + Section(c.raw, "\"admin_in_flight\": [") + "]"))
    for (uint64_t n : t) c.admin_in_flight += static_cast<uint32_t>(n);
  c.dma_records = static_cast<uint32_t>(Number(c.raw, "\"dma_records\": "));
  c.dma_bytes = Number(c.raw, "\"dma_bytes\": ");
  c.heap_allocations = Number(c.raw, "\"heap_allocations\": ");
  c.heap_bytes = Number(c.raw, "\"heap_bytes\": ");
  for (const auto& t : Tuples(Section(c.raw, "\"reaped\": [")))
    if (t.size() == 2) c.reaped.emplace_back(static_cast<int>(t[0]), static_cast<int64_t>(t[1]));
  return c;
}

Census TakeCensus(const std::string& mp_child, int group) {
  // 90 s: under ASan on a loaded machine, mapping and unmapping the group's
  // hugepage file has waited tens of seconds for the file's i_mmap lock
  // (see Subprocess::Wait); a census that hangs is still cut off.
  std::string cmd = "timeout -s KILL 90 " + mp_child + " census -i " + std::to_string(group) + " 2>&1";
  std::string raw;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return ParseCensus("popen failed: " + cmd);
  char buf[8192];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) raw.append(buf, n);
  ::pclose(p);
  return ParseCensus(std::move(raw));
}

int64_t RealtimeNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace nvmux::test
