// nvmux-manage's controller subcommands that change or query controller
// state through admin commands: namespace management and attachment,
// Format NVM, Get/Set Features and controller reset. Each prints what
// nvme-cli prints (or one JSON line with `json`) and returns the exit code:
// 0 done, 1 failed (the message names the driver error or the NVMe status).
//
// The values are checked by the caller (nvmux_manage.cc) and the user has
// confirmed destructive ones already.
//
// Thread safety: main thread only.
#pragma once

#include <cstdint>
#include <vector>

#include "tools/manage/manage_session.h"

namespace nvmux::manage {

struct CreateNsArgs {
  uint64_t nsze = 0;
  uint64_t ncap = 0;
  uint8_t flbas = 0;
  uint8_t dps = 0;
  uint8_t nmic = 0;
};
// Prints "create-ns: Success, created nsid:N".
int CreateNs(Session& s, const CreateNsArgs& args, bool json);
// Prints "delete-ns: Success, deleted nsid:N".
int DeleteNs(Session& s, uint32_t nsid, bool json);
// Attach (or detach) `nsid` to the controllers listed; an empty list means
// the controller the command goes to. Prints "attach-ns: Success, nsid:N".
int AttachNs(Session& s, uint32_t nsid, const std::vector<uint16_t>& cntlids, bool attach, bool json);

struct FormatArgs {
  uint32_t nsid = 0;
  uint8_t lbaf = 0;
  uint8_t ses = 0;
  uint8_t pi = 0;
  bool ms = false;  // metadata at the end of each block (extended LBA)
};
// Prints "Success formatting namespace:N".
int FormatNs(Session& s, const FormatArgs& args, bool json);

struct GetFeatureArgs {
  uint8_t fid = 0;
  uint8_t sel = 0;
  uint32_t cdw11 = 0;
  uint32_t nsid = 0;
  // Bytes of feature data to read (0: the feature's own size, if it has data).
  uint32_t data_len = 0;
};
// Prints "get-feature:0x01 (Arbitration), Current value:0x00000000", and the
// data as a hex dump for features that return data.
int GetFeature(Session& s, const GetFeatureArgs& args, bool json);

struct SetFeatureArgs {
  uint8_t fid = 0;
  uint32_t value = 0;  // CDW11
  uint32_t cdw12 = 0;
  uint32_t nsid = 0;
  bool save = false;
};
// Prints "set-feature:0x06 (Volatile Write Cache), value:0x00000001, ...".
int SetFeature(Session& s, const SetFeatureArgs& args, bool json);

// Controller-level reset. Standalone only: in a group the controller is the
// primary's (a secondary resetting it would pull it from under nvmuxd and
// every other process); refused with a message saying so.
int ResetController(Session& s, bool json);

// The bytes of data Get Features returns for `fid` (0: none).
uint32_t FeatureDataLength(uint8_t fid, uint32_t cdw11);

}  // namespace nvmux::manage
