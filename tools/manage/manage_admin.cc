#include "tools/manage/manage_admin.h"

#include <cstdio>
#include <cstring>
#include <iostream>

#include "nvmux/spec/features.h"
#include "tools/manage/manage_output.h"

namespace nvmux::manage {
namespace {

// Get/Set Features CDW10: SEL in bits 10:8, SV in bit 31.
constexpr uint32_t kSelShift = 8;
constexpr uint32_t kSaveBit = 1u << 31;
// Host Identifier CDW11 bit 0: the extended (128-bit) identifier.
constexpr uint32_t kExhid = 1u << 0;

void Print(const std::string& text) { std::fputs(text.c_str(), stdout); }

}  // namespace

uint32_t FeatureDataLength(uint8_t fid, uint32_t cdw11) {
  switch (fid) {
    case spec::fid::kLbaRangeType: return 4096;
    case spec::fid::kAutonomousPowerStateTransition: return 256;
    case spec::fid::kHostMemoryBuffer: return 4096;
    case spec::fid::kTimestamp: return 8;
    case spec::fid::kHostIdentifier: return (cdw11 & kExhid) != 0 ? 16 : 8;
    case 0x16: return 512;  // Host Behavior Support
  }
  return 0;
}

int CreateNs(Session& s, const CreateNsArgs& a, bool json) {
  spec::IdentifyNamespace data{};
  data.nsze = a.nsze;
  data.ncap = a.ncap;
  data.flbas = a.flbas;
  data.dps = a.dps;
  data.nmic = a.nmic;
  auto nsid = s.ctrlr().CreateNamespace(data);
  if (!nsid) return ReportFailure("create-ns", nsid.error(), s.ctrlr());
  if (json)
    Print(JsonWriter().BeginObject().Field("nsid", *nsid).EndObject().Line());
  else
    std::printf("create-ns: Success, created nsid:%u\n", *nsid);
  return 0;
}

int DeleteNs(Session& s, uint32_t nsid, bool json) {
  if (Status st = s.ctrlr().DeleteNamespace(nsid); !st) return ReportFailure("delete-ns", st.error(), s.ctrlr());
  if (json)
    Print(JsonWriter().BeginObject().Field("nsid", nsid).Field("deleted", true).EndObject().Line());
  else
    std::printf("delete-ns: Success, deleted nsid:%u\n", nsid);
  return 0;
}

int AttachNs(Session& s, uint32_t nsid, const std::vector<uint16_t>& cntlids, bool attach, bool json) {
  const char* name = attach ? "attach-ns" : "detach-ns";
  std::vector<uint16_t> list = cntlids;
  if (list.empty()) list.push_back(s.ctrlr().data().cntlid);
  Status st = attach ? s.ctrlr().AttachNamespace(nsid, list) : s.ctrlr().DetachNamespace(nsid, list);
  if (!st) return ReportFailure(name, st.error(), s.ctrlr());
  if (json) {
    JsonWriter j;
    j.BeginObject().Field("nsid", nsid).Field(attach ? "attached" : "detached", true).Key("controllers").BeginArray();
    for (uint16_t c : list) j.Uint(c);
    Print(j.EndArray().EndObject().Line());
  } else {
    std::printf("%s: Success, nsid:%u\n", name, nsid);
  }
  return 0;
}

int FormatNs(Session& s, const FormatArgs& a, bool json) {
  Status st = s.ctrlr().Format(a.nsid, a.lbaf, a.ms, a.pi, a.ses);
  if (!st) return ReportFailure("format", st.error(), s.ctrlr());
  if (json)
    Print(JsonWriter()
              .BeginObject()
              .Field("nsid", a.nsid)
              .Field("lbaf", a.lbaf)
              .Field("formatted", true)
              .EndObject()
              .Line());
  else
    std::printf("Success formatting namespace:%x\n", a.nsid);
  return 0;
}

int GetFeature(Session& s, const GetFeatureArgs& a, bool json) {
  uint32_t length = a.data_len != 0 ? a.data_len : FeatureDataLength(a.fid, a.cdw11);
  // Supported capabilities (SEL 3) come in DW0 only.
  if (a.sel == spec::sel::kSupportedCapabilities) length = 0;
  DmaBuffer data;
  if (length > 0) {
    auto buf = s.env().AllocDma(length, 4096, "get-feature");
    if (!buf) return ReportFailure("get-feature", buf.error(), s.ctrlr());
    data = std::move(*buf);
  }
  spec::Sqe cmd;
  cmd.opc = spec::admin::kGetFeatures;
  cmd.nsid = a.nsid;
  cmd.cdw10 = a.fid | (uint32_t{a.sel} << kSelShift);
  cmd.cdw11 = a.cdw11;
  auto cpl = s.ctrlr().SyncAdmin(cmd, length > 0 ? data.data() : nullptr, length);
  if (!cpl)
    return ReportFailure(Sprintf("get-feature -f 0x%02x (%s)", a.fid, FeatureName(a.fid)), cpl.error(), s.ctrlr());
  if (json) {
    JsonWriter j;
    j.BeginObject()
        .Field("fid", a.fid)
        .Field("feature", FeatureName(a.fid))
        .Field("sel", SelectName(a.sel))
        .Field("value", cpl->cdw0);
    if (length > 0) j.Field("data", HexString(data.data(), length));
    Print(j.EndObject().Line());
    return 0;
  }
  std::printf("get-feature:0x%02x (%s), %s value:0x%08x\n", a.fid, FeatureName(a.fid), SelectName(a.sel), cpl->cdw0);
  if (a.sel == spec::sel::kSupportedCapabilities)
    std::printf("  saveable: %s, namespace specific: %s, changeable: %s\n",
                (cpl->cdw0 & spec::kFeatureCapSaveable) ? "yes" : "no",
                (cpl->cdw0 & spec::kFeatureCapNsSpecific) ? "yes" : "no",
                (cpl->cdw0 & spec::kFeatureCapChangeable) ? "yes" : "no");
  if (length > 0) Print(HexDump(data.data(), length));
  return 0;
}

int SetFeature(Session& s, const SetFeatureArgs& a, bool json) {
  spec::Sqe cmd;
  cmd.opc = spec::admin::kSetFeatures;
  cmd.nsid = a.nsid;
  cmd.cdw10 = a.fid | (a.save ? kSaveBit : 0u);
  cmd.cdw11 = a.value;
  cmd.cdw12 = a.cdw12;
  auto cpl = s.ctrlr().SyncAdmin(cmd);
  if (!cpl)
    return ReportFailure(Sprintf("set-feature -f 0x%02x (%s)", a.fid, FeatureName(a.fid)), cpl.error(), s.ctrlr());
  if (json) {
    Print(JsonWriter()
              .BeginObject()
              .Field("fid", a.fid)
              .Field("feature", FeatureName(a.fid))
              .Field("value", a.value)
              .Field("cdw12", a.cdw12)
              .Field("save", a.save)
              .Field("result", cpl->cdw0)
              .EndObject()
              .Line());
    return 0;
  }
  std::printf("set-feature:0x%02x (%s), value:0x%08x, cdw12:0x%08x, save:%d\n", a.fid, FeatureName(a.fid), a.value,
              a.cdw12, a.save ? 1 : 0);
  if (cpl->cdw0 != 0) std::printf("  result:0x%08x\n", cpl->cdw0);
  return 0;
}

int ResetController(Session& s, bool json) {
  if (s.secondary()) {
    std::cerr << "nvmux-manage: reset: controller " << s.ctrlr().trid().ToString()
              << " belongs to the group's primary; restart nvmuxd to reset it, or stop nvmuxd and use -r alone\n";
    return 1;
  }
  if (Status st = s.ctrlr().Reset(); !st) return ReportFailure("reset", st.error(), s.ctrlr());
  const std::string trid = s.ctrlr().trid().ToString();
  if (json)
    Print(JsonWriter().BeginObject().Field("trid", trid).Field("reset", true).EndObject().Line());
  else
    std::printf("reset: Success, controller %s\n", trid.c_str());
  return 0;
}

}  // namespace nvmux::manage
