"""The RedSeg REST service.

OpenCV reads its decompression-bomb limits from the environment once, when the
library loads, so they are set here, before anything in this package imports
model (and with it cv2).
"""

import os

DEFAULT_MAX_PIXELS = 50_000_000
"""Default pixel limit of an upload (IDRiD photographs have 12.2 million)."""


def _opencv_limits() -> dict[str, str]:
    try:
        max_pixels = int(os.environ.get("REDSEG_MAX_PIXELS", DEFAULT_MAX_PIXELS))
    except ValueError:
        max_pixels = DEFAULT_MAX_PIXELS  # the settings class reports the bad value
    return {
        "OPENCV_IO_MAX_IMAGE_PIXELS": str(max(1, max_pixels)),
        "OPENCV_IO_MAX_IMAGE_WIDTH": str(1 << 16),
        "OPENCV_IO_MAX_IMAGE_HEIGHT": str(1 << 16),
        "OPENCV_IO_ENABLE_OPENEXR": "0",
        "OPENCV_IO_ENABLE_JASPER": "0",
    }


for _name, _value in _opencv_limits().items():
    os.environ.setdefault(_name, _value)
