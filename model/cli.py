"""``redseg-segment``: lesion masks, probability maps and overlays for fundus photographs on disk.

The command line is parsed before torch, OpenCV and the network load (about 3 s), so ``--help`` and
a wrong argument answer at once; the work is ``model.segment_files.run``. For that, the choices
below are written out here rather than imported from the modules that define them (which load
torch); tests/model/test_cli.py checks that they agree.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tqdm import tqdm

from model.config import ALL_LESIONS, RED_LESIONS

PROG = "redseg-segment"
EXIT_IMAGE_FAILED = 1
EXIT_SETUP_FAILED = 2

DEFAULT_MODEL = "redseg-default.safetensors"
"""``model.checkpoint.DEFAULT_CHECKPOINT``'s file name."""
FAST_MODEL = "redseg-fast.safetensors"
"""``model.checkpoint.FAST_CHECKPOINT``'s file name."""
DEFAULT_TILE_SIZE = 1360
"""``model.inference.TileSettings.tile_size``."""
PRECISION_CHOICES = ("auto", "bf16", "fp32")
"""``model.precision.PRECISIONS``."""
TTA_CHOICES = ("auto", "dihedral", "flips", "hflip", "none")
"""'auto' (``model.tta.resolve_tta``) and ``model.tta.TTA_MODES``, sorted."""
BACKEND_CHOICES = ("auto", "torch", "openvino-int8", "openvino-bf16")
"""``model.backends.BACKENDS``."""
SEG_CHOICES = ("binary", "fractional")
"""``model.formats.dicom_seg.SEG_TYPES``."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Segment microaneurysms (MA) and haemorrhages (HE) in fundus photographs, and hard (EX) and "
        "soft exudates (SE) with a model that segments them. For each image and each lesion the model segments "
        "writes <stem>_<lesion>_mask.png (0/255) and <stem>_<lesion>_prob.png (16-bit, p * 65535), e.g. "
        "<stem>_MA_mask.png, and <stem>_overlay.png; with --dicom-seg, <stem>_seg.dcm for DICOM inputs (with --dicom-sr, "
        "<stem>_sr.dcm too). Prints a "
        "one-line screening summary per image and writes them all to screening.csv (one row per image).",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", type=Path, help="JPEG, PNG, TIFF, BMP or DICOM files")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument(
        "--checkpoint", type=Path, metavar="PATH",
        help=f"default: the bundled model, {DEFAULT_MODEL} (full width); {FAST_MODEL}: the "
        "bundled quarter-width one, about 2.5 times faster on a CPU"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--tile-size", type=int, default=DEFAULT_TILE_SIZE, help="largest tile side at the working scale"
    )
    for lesion in ALL_LESIONS:
        parser.add_argument(
            f"--threshold-{lesion.lower()}",
            type=probability,
            metavar="P",
            help=f"{lesion} mask threshold in [0, 1] (default: the checkpoint's operating threshold)"
            + ("" if lesion in RED_LESIONS else f"; only for a model that segments {lesion}"),
        )
    parser.add_argument("--no-fov-mask", action="store_true", help="keep predictions outside the field of view")
    parser.add_argument("--no-fundus-check", action="store_true",
                        help="segment an image even if it does not look like a colour fundus photograph")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                        help="auto: bf16 where the device computes it natively, else fp32 (default); fp32 forces it")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default=os.environ.get("REDSEG_BACKEND") or "auto",
                        help="the network's engine: auto (OpenVINO int8 on an x86 CPU with openvino installed, else "
                        "torch), torch, openvino-int8 or openvino-bf16 (default: $REDSEG_BACKEND, else auto)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--dicom-seg",
        choices=SEG_CHOICES,
        help="also write <stem>_seg.dcm, a DICOM Segmentation of each DICOM input: binary masks or fractional "
        "probabilities (a non-DICOM input is then an error)",
    )
    parser.add_argument(
        "--dicom-sr",
        action="store_true",
        help="also write <stem>_sr.dcm, a DICOM Structured Report of each DICOM input's screening summary that "
        "references the photograph and its <stem>_seg.dcm (written too: binary unless --dicom-seg says otherwise)",
    )
    parser.add_argument("--tta", choices=TTA_CHOICES, default="auto",
                        help="test-time augmentation: average the maps over flipped/rotated views (default auto: "
                        "hflip on a GPU, none on the CPU)")
    return parser.parse_args(argv)


def probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def repeated_stems(paths: list[Path]) -> list[str]:
    """Stems shared by several inputs: their outputs would overwrite each other."""
    seen: dict[str, int] = {}
    for path in paths:
        seen[path.stem] = seen.get(path.stem, 0) + 1
    return sorted(stem for stem, count in seen.items() if count > 1)


def error(message: str) -> None:
    tqdm.write(f"{PROG}: error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clashes = repeated_stems(args.images)
    if clashes:
        error(f"several inputs share the file name stem {', '.join(clashes)}: their outputs would overwrite each other")
        return EXIT_SETUP_FAILED
    from model.segment_files import run  # torch, OpenCV and the network load here, once the arguments hold

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
