# OpenCV reads its decompression-bomb limits once, when it loads: import the service package
# (which sets them) before any test module imports model and with it cv2, so in-process servers
# in a whole-suite run get the same limits as in production.
import service  # noqa: F401
