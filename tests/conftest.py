# OpenCV reads its decompression-bomb limits once, when it loads: import the service package
# (which sets them) before any test module imports model and with it cv2, so in-process servers
# in a whole-suite run get the same limits as in production.
import service  # noqa: F401

import os  # noqa: E402

# The tests compare against the torch network and make tiny checkpoints by the dozen: they run on torch
# unless a test asks for OpenVINO (tests/model/test_openvino.py), where REDSEG_BACKEND=auto would make
# an OpenVINO model of each checkpoint first. The service's Settings and the commands' --backend read it.
os.environ.setdefault("REDSEG_BACKEND", "torch")


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _few_threads():
    """At most 2 torch threads in a test, and the count given back after it (some benches and commands set it)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(min(previous, 2))
    yield
    torch.set_num_threads(previous)
