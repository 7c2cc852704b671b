// The Discovery Log as `nvme discover` prints it (text), or as JSON
// ({"genctr":N,"records":[{"trtype":"tcp",...}]}), for nvmux-manage
// discover and nvmux-identify given a discovery service.
#pragma once

#include <string>

#include "nvmux/discovery.h"

namespace nvmux::tools {

std::string FormatDiscoveryLog(const DiscoveryLog& log);
std::string DiscoveryLogJson(const DiscoveryLog& log);

}  // namespace nvmux::tools
