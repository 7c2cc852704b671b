// GatherReport: fills an IdentifyReport (identify_report.h) from a live,
// attached controller with admin commands — the gathering half of
// nvmux-identify; identify_format.h and identify_json.h print the result.
//
// What is read, in order:
//  - registers: CAP and VS as the driver read them at init, VS, CC and CSTS
//    read again now (Controller::ReadRegister32);
//  - Identify Controller (CNS 01h) and, for each active namespace (or only
//    the one asked for), Identify Namespace (CNS 00h) and its Namespace
//    Identification Descriptor list (CNS 03h: EUI64, NGUID, UUID);
//  - Get Features, current value: Arbitration, Power Management,
//    Temperature Threshold (composite sensor, over-temperature), Error
//    Recovery, Number of Queues;
//  - Get Log Page, NSID FFFFFFFFh: SMART / Health, Error Information (ELPE +
//    1 entries, at most 4 KiB per command; only the first 4 KiB when the
//    controller does not support log page offsets, LPA bit 2), Firmware
//    Slot, and Commands Supported and Effects when supports_log_page says
//    the controller has it.
// Optional items (features, log pages, descriptors) are left std::nullopt
// when their command fails; a failed Identify falls back to the data the
// driver read at init. Each fallback is logged at notice level. Gathering
// never stops half-way for a device error.
//
// Blocking: issues synchronous admin commands (Controller::SyncAdmin), each
// bounded by the controller's admin_timeout_ms.
// Thread safety: call from one thread; the controller's admin queue is
// shared with any other admin user of the controller.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "nvmux/controller.h"
#include "shm/base/result.h"
#include "tools/identify/identify_report.h"

namespace nvmux::identify {

struct GatherOptions {
  // Report only this namespace; nullopt: every active namespace.
  std::optional<uint32_t> nsid;
};

// Reads everything listed above from `ctrlr` (borrowed for the call).
// Errors: ENOENT when options.nsid is not an active namespace (the message
// lists the active ones), ENOMEM when no 4 KiB DMA buffer can be allocated.
[[nodiscard]] Result<IdentifyReport> GatherReport(Controller& ctrlr, const GatherOptions& options = {});

// "1, 2, 5" (or "none") — the active namespace ids, for messages.
std::string ListNamespaces(std::span<const uint32_t> nsids);

}  // namespace nvmux::identify
