#!/usr/bin/env python3
"""Writes the seed corpora of the nvmux-emu fuzz targets.

    tools/emu/fuzz/make_corpus.py [OUT_DIR]   (default: tools/emu/fuzz/corpus)

OUT_DIR/vfiouser/* and OUT_DIR/sqe/* are small, valid-looking inputs in the
formats documented at the top of fuzz_vfiouser.cc and fuzz_sqe.cc, so the
fuzzers start from deep states (an enabled controller, mapped DMA, queues,
every command family) instead of discovering the framing byte by byte.
Deterministic: rerunning it rewrites the same files.
"""
import os
import struct
import sys

# ---- vfio-user messages -------------------------------------------------
VERSION, DMA_MAP, DMA_UNMAP, GET_INFO, GET_REGION_INFO = 1, 2, 3, 4, 5
GET_IRQ_INFO, SET_IRQS, REGION_READ, REGION_WRITE, RESET = 7, 8, 9, 10, 13
BAR0, CONFIG = 0, 7
IOVA = 0x1000_0000


def msg(cmd, payload=b"", nfds=0, eventfd=False, msg_id=1, flags=0):
    ctl = nfds | (4 if eventfd else 0)
    header = struct.pack("<HHIII", msg_id, cmd, 16 + len(payload), flags, 0)
    return bytes([ctl]) + header + struct.pack("<H", len(payload)) + payload


def region_write(region, offset, data):
    return msg(REGION_WRITE, struct.pack("<QII", offset, region, len(data)) + data)


def region_read(region, offset, count):
    return msg(REGION_READ, struct.pack("<QII", offset, region, count))


def dma_map(iova, size, flags=3, offset=0):
    return msg(DMA_MAP, struct.pack("<IIQQQ", 32, flags, offset, iova, size), nfds=1)


def enable():
    # AQA 32/32, ASQ at IOVA, ACQ at IOVA + 4 KiB, CC.EN with 64/16-byte entries.
    return (region_write(BAR0, 0x24, struct.pack("<I", 31 | 31 << 16)) +
            region_write(BAR0, 0x28, struct.pack("<Q", IOVA)) +
            region_write(BAR0, 0x30, struct.pack("<Q", IOVA + 0x1000)) +
            region_write(BAR0, 0x14, struct.pack("<I", 1 | 6 << 16 | 4 << 20)))


def vfiouser_seeds():
    s = {}
    s["info"] = b"\x00" + msg(GET_INFO, struct.pack("<IIII", 16, 0, 0, 0))
    s["region_info"] = b"\x00" + b"".join(
        msg(GET_REGION_INFO, struct.pack("<IIIIQQ", 32, 0, i, 0, 0, 0)) for i in (0, 4, 5, 7))
    s["region_info_caps"] = b"\x00" + msg(GET_REGION_INFO, struct.pack("<IIIIQQ", 4096, 0, 0, 0, 0, 0) + bytes(64))
    s["irq_info"] = b"\x00" + b"".join(msg(GET_IRQ_INFO, struct.pack("<IIII", 16, 0, i, 0)) for i in (0, 2))
    s["set_irqs"] = b"\x00" + msg(SET_IRQS, struct.pack("<IIIII", 20, 4 | 32, 2, 0, 2), nfds=2, eventfd=True)
    s["config"] = b"\x00" + region_read(CONFIG, 0, 256) + region_write(CONFIG, 4, struct.pack("<H", 6))
    s["dma"] = b"\x00" + dma_map(IOVA, 0x100000) + msg(DMA_UNMAP, struct.pack("<IIQQ", 24, 0, IOVA, 0x100000))
    s["enable"] = b"\x00" + dma_map(IOVA, 0x100000) + enable() + region_read(BAR0, 0x1C, 4)
    s["doorbell"] = (b"\x00" + dma_map(IOVA, 0x100000) + enable() +
                     region_write(BAR0, 0x1000, struct.pack("<I", 1)) + region_read(BAR0, 0x1C, 4))
    s["reset"] = b"\x00" + dma_map(IOVA, 0x100000) + enable() + msg(RESET) + msg(
        DMA_UNMAP, struct.pack("<IIQQ", 24, 2, 0, 0))
    s["no_version"] = b"\x01" + msg(GET_INFO, struct.pack("<IIII", 16, 0, 0, 0))
    s["bar0_read"] = b"\x00" + region_read(BAR0, 0, 8) + region_read(BAR0, 0x2000, 16)
    return s


# ---- submission-queue entries ------------------------------------------
FIX_PRP1, FIX_PRP2, FIX_MPTR, FIX_NSID1, FIX_SMALL, FIX_SPARE, FIX_FLAGS0, FIX_LOWLBA = (
    1, 2, 4, 8, 16, 32, 64, 128)
RING = 8


def sqe(opc, nsid=0, cdw10=0, cdw11=0, cdw12=0, cdw13=0, cdw14=0, cdw15=0, flags=0, cid=0, prp1=0, prp2=0, mptr=0):
    return struct.pack("<BBHIIIQQQIIIIII", opc, flags, cid, nsid, 0, 0, mptr, prp1, prp2,
                       cdw10, cdw11, cdw12, cdw13, cdw14, cdw15)


def io(entry, fixup=FIX_PRP1 | FIX_PRP2 | FIX_MPTR | FIX_SMALL | FIX_LOWLBA, ring=True):
    return bytes([0 | (RING if ring else 0), fixup]) + entry


def adm(entry, fixup=FIX_PRP1 | FIX_PRP2, ring=True):
    return bytes([3 | (RING if ring else 0), fixup]) + entry


def data(offset16, payload):
    return bytes([4, offset16 & 0xFF, offset16 >> 8, len(payload)]) + payload


def sqe_seeds():
    s = {}
    s["identify"] = b"".join(adm(sqe(0x06, nsid=n, cdw10=c)) for n, c in ((0, 1), (1, 0), (0, 2), (1, 3), (0, 0x10)))
    s["log_pages"] = b"".join(adm(sqe(0x02, nsid=0xFFFFFFFF, cdw10=lid | 127 << 16)) for lid in (1, 2, 3, 4, 5))
    s["features"] = (adm(sqe(0x0A, cdw10=7)) + adm(sqe(0x09, cdw10=7, cdw11=3 | 3 << 16)) +
                     adm(sqe(0x09, cdw10=0x0E), fixup=FIX_PRP1) + adm(sqe(0x0A, cdw10=4 | 3 << 8)))
    s["queues"] = (adm(sqe(0x05, cdw10=2 | 15 << 16, cdw11=1), fixup=FIX_SPARE) +
                   adm(sqe(0x01, cdw10=2 | 15 << 16, cdw11=1 | 2 << 16, prp1=0x1000), fixup=FIX_SPARE) +
                   adm(sqe(0x00, cdw10=2)) + adm(sqe(0x04, cdw10=2)))
    s["aer_abort"] = adm(sqe(0x0C, cid=7)) + adm(sqe(0x08, cdw10=0 | 7 << 16)) + adm(sqe(0x18))
    s["read_write"] = (data(0, bytes(range(200))) + io(sqe(0x01, nsid=1, cdw12=7)) +
                       io(sqe(0x02, nsid=1, cdw12=7)) + io(sqe(0x05, nsid=1, cdw12=7)) + io(sqe(0x0C, nsid=1, cdw12=7)))
    s["metadata"] = io(sqe(0x01, nsid=2, cdw12=1, mptr=0x8000)) + io(sqe(0x02, nsid=2, cdw12=1, mptr=0x8000))
    s["prp_list"] = (data(0x100, struct.pack("<QQQ", 0x1_0001_1000, 0x1_0001_2000, 0x1_0001_3000)) +
                     io(sqe(0x02, nsid=1, cdw12=31, prp1=0x10, prp2=0x1000)))
    s["dsm_zeroes"] = (data(0, struct.pack("<IIQ", 0, 8, 0) * 2) +
                       io(sqe(0x09, nsid=1, cdw10=1, cdw11=4)) + io(sqe(0x08, nsid=1, cdw12=15)) +
                       io(sqe(0x04, nsid=1, cdw12=3)) + io(sqe(0x0E, nsid=1, cdw12=3)))
    s["copy"] = data(0, struct.pack("<QQQHHI", 0, 0, 64, 7, 0, 0)) + io(sqe(0x19, nsid=1, cdw10=128, cdw12=0))
    s["fused"] = (io(sqe(0x05, nsid=1, cdw12=0, flags=1), ring=False) + io(sqe(0x01, nsid=1, cdw12=0, flags=2)))
    s["sgl"] = (data(0, struct.pack("<QIxxxB", 0x1_0001_0100, 4096, 0)) +
                io(sqe(0x02, nsid=1, cdw12=7, flags=0x40, prp1=0x1_0001_0000, prp2=4096), fixup=FIX_SMALL))
    s["reservations"] = (data(0, struct.pack("<QQ", 0, 0x1234)) + io(sqe(0x0D, nsid=1, cdw10=0)) +
                         io(sqe(0x11, nsid=1, cdw10=1 << 8)) + io(sqe(0x0E, nsid=1, cdw11=64)))
    s["ns_mgmt_format"] = (data(0, struct.pack("<QQ", 2048, 2048)) + adm(sqe(0x0D, cdw10=0)) +
                           adm(sqe(0x80, nsid=1, cdw10=0)) + adm(sqe(0x15, nsid=3, cdw10=0)))
    s["dbbuf"] = adm(sqe(0x7C, prp1=0, prp2=0x1000)) + io(sqe(0x00, nsid=1))
    s["registers_doorbells"] = (bytes([5, 3, 7, 0]) + bytes([5 | 16, 2, 200, 0]) +
                                bytes([6 | 8, 0x14 // 4]) + struct.pack("<Q", 0))
    return s


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus")
    for sub, seeds in (("vfiouser", vfiouser_seeds()), ("sqe", sqe_seeds())):
        d = os.path.join(out, sub)
        os.makedirs(d, exist_ok=True)
        for name, blob in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(blob)
    return 0


if __name__ == "__main__":
    sys.exit(main())
