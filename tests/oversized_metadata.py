"""Images whose metadata is too large for Pillow to read, while their pixels are intact."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

ICC_SIZE = 2 << 20  # inflated: twice Pillow's 1 MiB limit on a PNG's metadata chunks


def with_huge_icc_profile(png: Path, target: Path) -> Path:
    """``png`` written to ``target`` with an ICC profile that inflates to ``ICC_SIZE`` bytes
    (a few KiB deflated) before its pixel data, as in a field report."""
    data = png.read_bytes()
    payload = b"ICC Profile\0\0" + zlib.compress(b"\0" * ICC_SIZE, 9)
    chunk = struct.pack(">I", len(payload)) + b"iCCP" + payload
    chunk += struct.pack(">I", zlib.crc32(b"iCCP" + payload))
    first_data = data.index(b"IDAT") - 4
    target.write_bytes(data[:first_data] + chunk + data[first_data:])
    return target
