// JSON output of an IdentifyReport (nvmux-identify --json), for scripts.
//
// Schema (key names are stable; new keys may be added, none renamed):
//   {
//     "transport_id": "trtype:vfiouser traddr:...",
//     "registers": {"cap": {"raw", "mqes", "cqr", "ams", "to", "dstrd", "nssrs",
//                           "css", "bps", "mpsmin", "mpsmax", "pmrs", "cmbs"},
//                   "vs": {"raw", "mjr", "mnr", "ter", "version": "1.4"},
//                   "cc": {"raw", "en", "css", "mps", "ams", "shn", "iosqes", "iocqes"},
//                   "csts": {"raw", "rdy", "cfs", "shst", "nssro", "pp"}},
//     "controller": {Identify Controller fields by their spec names ("vid",
//                    "sn", "mdts", "oacs", "sqes", ...), plus "mdts_bytes"
//                    (null when MDTS is 0: no limit) and "psd": [NPSS + 1
//                    power state objects]},
//     "queues": {"io_sq_granted", "io_cq_granted"},
//     "features": {"arbitration", "power_management", "temperature_threshold",
//                  "error_recovery", "number_of_queues"},
//     "logs": {"smart_health", "error_information", "firmware_slot",
//              "commands_supported_and_effects"},
//     "namespaces": [{"nsid", Identify Namespace fields by spec name, "lbaf":
//                     [NLBAF + 1 formats], "lba_format" (index in use),
//                     "lba_data_size", "size_bytes", "descriptors":
//                     {"nguid", "eui64", "uuid"}}]
//   }
// Conventions: numbers are JSON numbers (values that are 0's based in the
// spec are kept as the spec has them, e.g. "acl", "nlbaf"); device strings
// are trimmed of trailing spaces; identifiers are hex strings (NGUID and EUI64
// uppercase, UUID in its dashed lowercase form); 128-bit counters are numbers
// when they fit in 64 bits and decimal strings otherwise. A feature or log
// page the controller did not return, and an absent identifier, is null; the
// key is always present. "error_information" lists only entries with a
// nonzero error count, each with its "index" in the log; the effects log lists
// only supported opcodes.
//
// Thread safety: pure function.
#pragma once

#include <string>

#include "tools/identify/identify_report.h"

namespace nvmux::identify {

// The report as one JSON object; indent 0 writes a single line.
std::string ToJson(const IdentifyReport& report, int indent = 2);

}  // namespace nvmux::identify
