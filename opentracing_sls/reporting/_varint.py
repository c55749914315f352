"""Varint tables and helpers of the compact protocol encoder.

The compact protocol writes integers as LEB128 varints (7 bits per byte, low group first,
high bit = "more bytes follow"), signed ones zigzag-mapped first (0, -1, 1, -2 ... ->
0, 1, 2, 3 ...). A loop over 7-bit groups costs ~10 interpreted steps for a 64-bit id, so
the encoder looks up **14-bit** groups (two output bytes) in precomputed tables instead:
a random 64-bit id costs four group lookups plus one for its top bits.

Memory: ~1.3 MB, mostly the 16 384 two-byte objects of ``CONT``; the other tables are
small or share their entries. Random ids touch random entries, so when the CPU caches are
under pressure an encode costs more (roughly +10-30% measured on a 1 MB-L2 machine).
"""

from __future__ import annotations

from typing import Tuple

M64 = 0xFFFFFFFFFFFFFFFF
_M65 = 0x1FFFFFFFFFFFFFFFF

#: ``CONT[g]``: the 14-bit group ``g`` as two varint bytes, both with the continuation bit.
CONT: Tuple[bytes, ...] = tuple(
    bytes(((g & 0x7F) | 0x80, (g >> 7) | 0x80)) for g in range(0x4000)
)
#: ``CONT7[g]``: the 7-bit group ``g`` as one varint byte with the continuation bit.
CONT7: Tuple[bytes, ...] = tuple(bytes((g | 0x80,)) for g in range(0x80))
#: ``LAST[v]``: ``v < 2^11`` as the final one or two bytes of a varint (lengths, small
#: values and top groups; larger final groups are rare enough to be computed).
LAST: Tuple[bytes, ...] = tuple(
    bytes((v,)) if v < 0x80 else bytes(((v & 0x7F) | 0x80, v >> 7)) for v in range(0x800)
)

# Tables that fold the zigzag mapping of an i64 ``u`` (taken as unsigned 64 bits) into the
# lookups, so no zigzag value is ever computed:
# - u < 2^63: zigzag(u) = 2u, whose group 0 is ``(u & 0x1FFF) << 1`` (ZZ0) and whose group
#   k >= 1 is bits 14k-1 .. 14k+12 of u (CONT), top group ``u >> 55`` (LAST);
# - u >= 2^63 (a negative i64): zigzag(u) = 2^65 - 1 - 2u, the 65-bit complement of 2u,
#   so every group is complemented (the ``N`` tables).
#: group 1..3 of a negative i64
CONT_N: Tuple[bytes, ...] = tuple(CONT[g ^ 0x3FFF] for g in range(0x4000))
#: group 0 of a non-negative / negative i64, indexed by ``u & 0x1FFF``
ZZ0: Tuple[bytes, ...] = tuple(CONT[h << 1] for h in range(0x2000))
ZZ0_N: Tuple[bytes, ...] = tuple(CONT[(h << 1) ^ 0x3FFF] for h in range(0x2000))
#: top group ``u >> 55`` (9 bits) of a negative i64
TOP_N: Tuple[bytes, ...] = tuple(LAST[t ^ 0x1FF] for t in range(0x200))
#: top group of an id followed by the header of the next i64 field (0x16: delta 1, I64)
TOP_I64: Tuple[bytes, ...] = tuple(LAST[t] + b"\x16" for t in range(0x200))
TOP_I64_N: Tuple[bytes, ...] = tuple(LAST[t ^ 0x1FF] + b"\x16" for t in range(0x200))
#: top group of a 64-bit trace id's traceIdLow, then traceIdHigh = 0 and spanId's header
TOP_I64_HIGH0: Tuple[bytes, ...] = tuple(LAST[t] + b"\x16\x00\x16" for t in range(0x200))
TOP_I64_N_HIGH0: Tuple[bytes, ...] = tuple(
    LAST[t ^ 0x1FF] + b"\x16\x00\x16" for t in range(0x200)
)
#: top group ``t >> 41`` of a timestamp below 2^52 us (year 2112), then the I64 header
TOP_TIME_I64: Tuple[bytes, ...] = tuple(LAST[t] + b"\x16" for t in range(0x800))
#: a small LONG tag value ``0 <= v < 1024`` (zigzag ``2v``) followed by the Tag's STOP
SMALL_LONG_STOP: Tuple[bytes, ...] = tuple(LAST[v << 1] + b"\x00" for v in range(0x400))


def varint(z: int) -> bytes:
    """Unsigned varint of ``z >= 0``."""
    if z < 0x800:
        return LAST[z]
    out = []
    while z >= 0x4000:
        out.append(CONT[z & 0x3FFF])
        z >>= 14
    out.append(LAST[z] if z < 0x800 else bytes(((z & 0x7F) | 0x80, z >> 7)))
    return b"".join(out)


def i64(value: int) -> bytes:
    """Zigzag varint of an i64. Any int is taken modulo 2^64 first, so unsigned ids
    >= 2^63 come out as the negative i64 the IDL wants."""
    u = value & M64
    return varint((u << 1) ^ _M65 if u >> 63 else u << 1)


def i32(value: int) -> bytes:
    """Zigzag varint of an i32 (taken modulo 2^32)."""
    u = value & 0xFFFFFFFF
    return varint((u << 1) ^ 0x1FFFFFFFF if u >> 31 else u << 1)
