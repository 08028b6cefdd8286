"""PNG files of grey maps (masks, 16-bit probability maps), written with one fixed filter and ISA-L's deflate.

OpenCV's PNG writer (libpng and zlib) took about 0.3 s of CPU for one 4288x2848 16-bit probability
map, the largest part of a request's rendering. Here the rows are SUB-filtered in numpy and deflated
by ISA-L (python-isal), about three times faster for files of the same size (bench/response.py).
"""

from __future__ import annotations

import struct

import cv2
import numpy as np
from isal import isal_zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
FILTER_SUB = 1
"""Each byte minus the same byte of the pixel to its left."""
GREY, DEFLATE, ADAPTIVE_FILTERING, NO_INTERLACE = 0, 0, 0, 0


def grey_png(array: np.ndarray, level: int = 1) -> bytes:
    """Lossless PNG of a 2-D uint8 or uint16 array (grey, 8 or 16 bits); ``level`` 0-3 (ISA-L's levels)."""
    if array.ndim != 2 or array.dtype not in (np.uint8, np.uint16) or 0 in array.shape:
        raise ValueError(f"expected a non-empty 2-D uint8 or uint16 array, got {array.dtype} {array.shape}")
    height, width = array.shape
    depth = array.dtype.itemsize
    rows = array.astype(">u2").view(np.uint8) if depth == 2 else array  # PNG's samples are big-endian
    filtered = np.empty((height, width * depth + 1), np.uint8)
    filtered[:, 0] = FILTER_SUB
    filtered[:, 1 : depth + 1] = rows[:, :depth]
    np.subtract(rows[:, depth:], rows[:, :-depth], out=filtered[:, depth + 1 :])  # wraps modulo 256, as PNG's filter
    header = struct.pack(">IIBBBBB", width, height, 8 * depth, GREY, DEFLATE, ADAPTIVE_FILTERING, NO_INTERLACE)
    data = isal_zlib.compress(filtered, level)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", isal_zlib.crc32(kind + data))


def encode_png(array: np.ndarray, compression: int = 1) -> bytes:
    """Lossless PNG bytes of a grey (H, W) uint8/uint16 map or an RGB (H, W, 3) uint8 photo."""
    if array.ndim == 2:
        return grey_png(array, compression)
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(array, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buffer.tobytes()
