"""Probe for the int8 path's hard-exudate loss (issue 25): is it the calibration crops? The shipped pack
holds one crop per training photograph at a place fixed by a hash of its name, so few of them hold
the brightest hard exudates, and NNCF may clip the activations they raise. This writes a pack with a
second crop per photograph, centred on its largest hard exudate, quantises a copy of the checkpoint
with it, and runs redseg-evaluate on the copy through int8 (the hold-out, all four lesions):

    .venv/bin/python campaign/int8-exudates/probe_pack.py runs/int8-pack   # then compare with docs/exudates.md
"""

import sys
from pathlib import Path

import cv2
import numpy as np

import model.openvino_export as export
from int8_holdout import copy_into, int8_holdout
import training.data.calibration_pack as calibration_pack
from model.checkpoint import DEFAULT_CHECKPOINT
from training.data.cache import resize_sample
from training.data.idrid import DEFAULT_ROOT, list_samples, load_sample, split_holdout

CROP = calibration_pack.CROP


def exudate_crops(config) -> dict[str, np.ndarray]:
    """One crop per training photograph centred on its largest hard exudate, at the working scale."""
    crops = {}
    training, _ = split_holdout(list_samples(DEFAULT_ROOT, "train", ("MA", "EX")))
    for sample in training:
        working, masks = resize_sample(*load_sample(sample), config)
        count, labels, stats, centroids = cv2.connectedComponentsWithStats(masks[1].astype(np.uint8))
        if count < 2:
            continue
        cx, cy = centroids[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]
        h, w = working.shape[:2]
        y, x = int(np.clip(cy - CROP / 2, 0, max(h - CROP, 0))), int(np.clip(cx - CROP / 2, 0, max(w - CROP, 0)))
        crops[f"{sample.name}-EX"] = working[y : y + CROP, x : x + CROP]
    return crops


def main(out: Path) -> int:
    checkpoint = copy_into(out, DEFAULT_CHECKPOINT)
    from model.checkpoint import load_checkpoint

    config = load_checkpoint(checkpoint).config
    pack = out / "calibration-crops-ex.npz"
    with np.load(export.CALIBRATION_PACK) as data:
        arrays = {name: data[name] for name in data.files}
    import json

    header = json.loads(bytes(arrays["header"]))
    for name, crop in exudate_crops(config).items():
        arrays[name] = np.frombuffer(cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                                                  [cv2.IMWRITE_JPEG_QUALITY, 90])[1], np.uint8)
        header["names"].append(name)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(pack, **arrays)
    print(f"{pack}: {len(header['names'])} crops", flush=True)
    export.ensure_ir.__defaults__ = (pack,)  # the copy's IR is quantised on, and looked up by, this pack
    return int8_holdout(out, checkpoint)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
