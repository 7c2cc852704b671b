// Umbrella header: everything in nvmux::spec.
#pragma once

#include "nvmux/spec/bits.h"
#include "nvmux/spec/command.h"
#include "nvmux/spec/features.h"
#include "nvmux/spec/identify.h"
#include "nvmux/spec/log_page.h"
#include "nvmux/spec/registers.h"
#include "nvmux/spec/status.h"
