#include "libclient/core/transport.h"

#include <unistd.h>

namespace nvmux {

void Transport::ArmAdminEvent() {
  const int fd = AdminEventFd();
  if (fd < 0) return;
  uint64_t count = 0;
  (void)!::read(fd, &count, sizeof(count));  // an eventfd registered non-blocking
}

Status Transport::ConnectIoQueue(uint16_t qid, uint32_t, spec::Sqe*, spec::Cqe*) {
  return Fail(ENOTSUP, std::string("transport ") + name() + " creates I/O queue " + std::to_string(qid) +
                           " with admin commands, not by connecting it");
}

}  // namespace nvmux
