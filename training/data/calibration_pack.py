"""The int8 calibration pack: crops of IDRiD *training* photographs at the working scale, shipped with the project.

    python -m training.data.calibration_pack [--data ../shared/data/idrid] [--out assets/calibration-crops.npz]

OpenVINO's int8 model (``model.openvino_export``) is made from a checkpoint at its first use, so a
fresh clone must carry the photographs NNCF calibrates its activation ranges on without the IDRiD
folder. The pack holds one crop (``CROP`` pixels square, JPEG) of each training photograph outside
the hold-out (``training.data.idrid.DEFAULT_HOLDOUT``: never IDRiD_05 and the other nine), mapped to
the working scale exactly as inference maps it (by the fundus disc), at a place fixed by a hash of
the photograph's name: some crops hold the field's edge and the black around it, as tiles do.
IDRiD is CC BY 4.0 (assets/ATTRIBUTION.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from model.atomic import atomic_write
from model.checkpoint import DEFAULT_CHECKPOINT, read_metadata
from model.cli_help import plain_help
from model.config import RedSegConfig
from model.fov import working_mapping
from model.openvino_export import CALIBRATION_PACK, PACK_FORMAT
from training.data.idrid import DEFAULT_ROOT, DatasetLayoutError, list_samples, split_holdout
from model.formats.images import read_image

CROP = 384
JPEG_QUALITY = 90


def crop_corner(name: str, height: int, width: int, size: int = CROP) -> tuple[int, int]:
    """Where the crop of photograph ``name`` starts: fixed by a hash of the name, anywhere in the image."""
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    return int(rng.integers(0, max(height - size, 0) + 1)), int(rng.integers(0, max(width - size, 0) + 1))


def make_pack(data: Path, out: Path, config: RedSegConfig) -> int:
    """Write the pack of crops to ``out``; how many crops it holds."""
    training, _ = split_holdout(list_samples(data, "train"))
    arrays, names = {}, []
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
              cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    for sample in training:
        image = read_image(sample.image_path)
        working = working_mapping(image, config).to_working(image)
        y, x = crop_corner(sample.name, *working.shape[:2])
        crop = working[y : y + CROP, x : x + CROP]
        arrays[sample.name] = np.frombuffer(cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), params)[1],
                                            np.uint8)
        names.append(sample.name)
    header = {"format": PACK_FORMAT, "crop": CROP, "jpeg_quality": JPEG_QUALITY, "names": names,
              "fov_diameter": config.fov_diameter, "working_long_side": config.working_long_side,
              "source": "IDRiD segmentation part, training split without the hold-out; CC BY 4.0"}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return len(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data.calibration_pack",
                                     description=plain_help(__doc__.split("\n\n")[0]))
    parser.add_argument("--data", type=Path, default=DEFAULT_ROOT, help="IDRiD root folder (official layout)")
    parser.add_argument("--out", type=Path, default=CALIBRATION_PACK)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help="whose working scale the crops are at (default: the bundled model's)")
    args = parser.parse_args(argv)
    try:
        config = RedSegConfig.from_dict(read_metadata(args.checkpoint)["config"])
        count = make_pack(args.data, args.out, config)
    except (DatasetLayoutError, ValueError, OSError) as exc:
        print(f"calibration_pack: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {count} crops of {CROP} px, {args.out.stat().st_size / 2**20:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
