"""Detect a truncated zstd file by walking frame and block headers (RFC 8878), without decompressing.

python-zstandard's stream reader returns a cut-off stream's data without complaint, so a .dbn.zst
truncated on a record boundary would otherwise read as a shorter, complete file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

_ZSTD_MAGIC = 0xFD2FB528
_SKIPPABLE_MASK, _SKIPPABLE_MAGIC = 0xFFFFFFF0, 0x184D2A50
_FCS_SIZES = (0, 2, 4, 8)
_DICT_ID_SIZES = (0, 1, 2, 4)


def zstd_damage(path: Path) -> str | None:
    """What is wrong with the file's frame structure, or None when every frame is complete."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        pos = 0
        while pos < size:
            f.seek(pos)
            head = f.read(4)
            if len(head) < 4:
                return f"truncated zstd frame header at byte {pos}"
            magic = int.from_bytes(head, "little")
            if magic == _ZSTD_MAGIC:
                end = _frame_end(f, pos + 4, size)
                if isinstance(end, str):
                    return end
                pos = end
            elif magic & _SKIPPABLE_MASK == _SKIPPABLE_MAGIC:
                length = f.read(4)
                if len(length) < 4:
                    return f"truncated skippable frame at byte {pos}"
                pos += 8 + int.from_bytes(length, "little")
            else:
                return f"no zstd frame at byte {pos}"
        if pos > size:
            return f"zstd stream truncated: {size} bytes, frame ends at byte {pos}"
    return None


def _frame_end(f: BinaryIO, pos: int, size: int) -> int | str:
    """Byte offset just past the frame whose header starts at pos, or a description of the damage."""
    f.seek(pos)
    descriptor = f.read(1)
    if not descriptor:
        return f"truncated zstd frame header at byte {pos}"
    fhd = descriptor[0]
    single_segment = (fhd >> 5) & 1
    fcs = _FCS_SIZES[fhd >> 6] or (1 if single_segment else 0)
    pos += 1 + (0 if single_segment else 1) + _DICT_ID_SIZES[fhd & 3] + fcs
    while True:
        f.seek(pos)
        header = f.read(3)
        if len(header) < 3:
            return f"zstd stream truncated inside a block header at byte {pos} of {size}"
        value = int.from_bytes(header, "little")
        block_type = (value >> 1) & 3
        if block_type == 3:
            return f"corrupt zstd block header at byte {pos}"
        pos += 3 + (1 if block_type == 1 else value >> 3)
        if pos > size:
            return f"zstd stream truncated: {size} bytes, block ends at byte {pos}"
        if value & 1:
            break
    return pos + (4 if (fhd >> 2) & 1 else 0)
