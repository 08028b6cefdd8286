"""The RedSeg REST service.

OpenCV reads its decompression-bomb limits from the environment once, when the
library loads, so they are set here, before anything in this package imports
model (and with it cv2).
"""

import os

DEFAULT_MAX_PIXELS = 50_000_000
"""Default pixel limit of an upload (IDRiD photographs have 12.2 million)."""


def _int_env(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default  # the settings class reports a bad REDSEG_ value


def _set_opencv_limits() -> None:
    """The tighter of any limit already in the environment and ours (REDSEG_MAX_PIXELS)."""
    limits = {
        "OPENCV_IO_MAX_IMAGE_PIXELS": max(1, _int_env("REDSEG_MAX_PIXELS", DEFAULT_MAX_PIXELS)),
        "OPENCV_IO_MAX_IMAGE_WIDTH": 1 << 16,
        "OPENCV_IO_MAX_IMAGE_HEIGHT": 1 << 16,
    }
    for name, limit in limits.items():
        os.environ[name] = str(min(limit, _int_env(name, limit)))
    os.environ["OPENCV_IO_ENABLE_OPENEXR"] = "0"
    os.environ["OPENCV_IO_ENABLE_JASPER"] = "0"


_set_opencv_limits()
