"""The journal's on-pmem format, as the guest tests read and rewrite it
(rust/logic/format.rs is the definition): crc32c and the superblock slots."""
import struct

SB_SLOT = 4096
SB_MAGIC = b"JSNAPSB1"
SB_CRC_OFF = 152
DESC_BYTES = 64
DESC_MAGIC = 0x4353444A
DESC_CRC_OFF = 60

_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data):
    """crc32c (Castagnoli) of `data`, as the module computes it."""
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def slot_valid(s):
    """Whether superblock slot `s` (4096 bytes) has the magic and its crc."""
    if s[:8] != SB_MAGIC:
        return False
    chk = bytearray(s[:SB_SLOT])
    struct.pack_into("<I", chk, SB_CRC_OFF, 0)
    return crc32c(bytes(chk)) == struct.unpack_from("<I", s, SB_CRC_OFF)[0]


def live_slot(sb):
    """Index (0 or 1) of the superblock in force in the first 8 KiB `sb`:
    the valid slot of the highest generation; None if neither is valid."""
    best = None
    for k in (0, 1):
        s = sb[k * SB_SLOT:(k + 1) * SB_SLOT]
        if not slot_valid(s):
            continue
        g = struct.unpack_from("<Q", s, 16)[0]
        if best is None or g > best[0]:
            best = (g, k)
    return best[1] if best else None


def seal_slot(b):
    """Recomputes the crc of the superblock slot in bytearray `b` in place."""
    struct.pack_into("<I", b, SB_CRC_OFF, 0)
    struct.pack_into("<I", b, SB_CRC_OFF, crc32c(bytes(b[:SB_SLOT])))
