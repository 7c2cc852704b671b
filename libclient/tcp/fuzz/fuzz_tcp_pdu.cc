// libFuzzer target: fuzzer-chosen bytes as the controller-to-host stream of
// an NVMe/TCP connection, through the same PduReader the transport uses.
//
// Input: [config][stream...]. config bit 0/1: header/data digests on; bit 2:
// the connection is past ICResp; bits 4-7: how many bytes each read returns
// (1..16, so PDUs arrive cut at every boundary). C2HData for command ids 0-3
// lands in a 4 KiB buffer per command (as the queue engine would place it);
// other ids are refused as the engine refuses them. The reader must never
// read or write outside what it was given, whatever the stream holds.
#include <cerrno>
#include <cstring>
#include <vector>

#include "libclient/tcp/fuzz/pdu_fuzz_driver.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nvmux::tcp::RunPduStream(data, size);
  return 0;
}
