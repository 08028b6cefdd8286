"""``redseg-dicom-node``: run the DICOM node until SIGTERM or SIGINT (settings from REDSEG_DICOM_* and REDSEG_*)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from pydantic import ValidationError

from service.app import StartupError
from service.serve import configure_logging

log = logging.getLogger("service.dicom_node")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="redseg-dicom-node",
        description="RedSeg as a DICOM node: a Storage SCP that takes Ophthalmic Photography and VL Photographic "
        "images from the AE titles in REDSEG_DICOM_ALLOWED_CALLERS, segments each, and stores its DICOM SEG and SR "
        "to REDSEG_DICOM_DESTINATION_AE/_HOST/_PORT (C-STORE) or REDSEG_DICOM_STOW_URL (STOW-RS). The model's "
        "settings are the API's REDSEG_* variables. See docs/dicom.md.",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parse_args(argv)
    configure_logging()
    from service.dicom_node.node import DicomNode  # torch and the model load here, once --help is answered
    from service.dicom_node.settings import NodeSettings
    from service.settings import Settings

    try:
        node = DicomNode(Settings(), NodeSettings())
        node.start()
    except ValidationError as exc:
        prefix = "REDSEG_DICOM_" if exc.title == "NodeSettings" else "REDSEG_"
        for error in exc.errors():
            where = f"{prefix}{str(error['loc'][0]).upper()}: " if error["loc"] else ""
            print(f"redseg-dicom-node: error: {where}{error['msg']}", file=sys.stderr)
        return 2
    except (StartupError, RuntimeError, OSError) as exc:
        print(f"redseg-dicom-node: error: {exc}", file=sys.stderr)
        return 2
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    stopping.wait()
    log.info("stopping")
    node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
