"""MA false regions, issue 22: what they look like, and whether a shape filter removes them.

Step 1, ``dump``: run ``redseg-evaluate`` as usual and keep each photograph's MA and HE maps (16-bit levels),
ground truth, any-grader markings and green channel in ``DUMP`` (``runs/``, never committed: DiaRetDB1 stays
out of the repository)::

    DUMP=runs/ma-maps/ddb .venv/bin/python campaign/other-cameras/probe_ma_regions.py dump <redseg-evaluate arguments>

Step 2, ``report``: per folder, the served MA regions at the operating threshold by kind (on MA ground truth,
on HE ground truth, on weaker markings, off every marking) with their area (millionths of the field of view's
squared diameter) and peak, then the MA FROC with regions dropped at every threshold by shape::

    .venv/bin/python campaign/other-cameras/probe_ma_regions.py report runs/ma-maps/ddb runs/ma-maps/idrid
"""

import os
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from model.screening.features import MA_MAX_DIAMETER, MA_MAX_ELONGATION, MA_MIN_FILL, diameter_of_area  # noqa: E402
from model.screening.masks import probability_to_uint16, threshold_level  # noqa: E402
from training.evaluation.froc import FROC_RATES, SWEEP  # noqa: E402

OPERATING = 0.23  # the default model's MA operating threshold


def dump(argv: list[str]) -> int:
    import training.evaluation.evaluate as evaluate

    out = Path(os.environ["DUMP"])
    out.mkdir(parents=True, exist_ok=True)
    score_image = evaluate._score_image

    def keeping(result, name, labelled, probabilities, thresholds):
        shown = probabilities * (labelled.valid if labelled.valid is not None else 1)
        channel = {lesion: i for i, lesion in enumerate(thresholds)}
        none = np.zeros(labelled.image.shape[:2], bool)
        np.savez_compressed(out / f"{name}.npz", MA=probability_to_uint16(shown[channel["MA"]]),
                            tMA=labelled.truth["MA"], tHE=labelled.truth.get("HE", none),
                            marked=none if labelled.marked is None else labelled.marked, green=labelled.image[..., 1])
        return score_image(result, name, labelled, probabilities, thresholds)

    evaluate._score_image = keeping
    return evaluate.main(argv)


def fov_diameter(green: np.ndarray) -> float:
    return diameter_of_area(np.count_nonzero(green > 20))


def shape_filter(max_diameter: float = 1.0, max_elongation: float = 1e9, min_fill: float = 0.0):
    """Keeps regions at most ``max_diameter`` of the field of view across, elongated at most so, filling their box so."""
    def keep(stats: np.ndarray, diameter: float) -> np.ndarray:
        width, height, area = stats[:, 2], stats[:, 3], stats[:, 4]
        longer, shorter = np.maximum(width, height), np.maximum(np.minimum(width, height), 1)
        return (longer <= max_diameter * diameter) & (longer / shorter <= max_elongation) & (area >= min_fill * width * height)
    return keep


FILTERS = {
    "none": shape_filter(),
    "small and round, as counted (0.009, 3, 0.3)": shape_filter(MA_MAX_DIAMETER, MA_MAX_ELONGATION, MA_MIN_FILL),
    "twice as large allowed (0.018, 3, 0.3)": shape_filter(2 * MA_MAX_DIAMETER, MA_MAX_ELONGATION, MA_MIN_FILL),
    "elongation <= 2": shape_filter(max_elongation=2.0),
    "fills >= 0.5 of its box": shape_filter(min_fill=0.5),
}


def froc(files: list[Path], keep) -> float:
    """Mean sensitivity at 1/8..8 false regions per image, regions dropped by ``keep`` at every threshold."""
    levels = [threshold_level(t) for t in SWEEP]
    found, false, total = np.zeros(len(SWEEP)), np.zeros(len(SWEEP)), 0
    for file in files:
        z = np.load(file)
        count, truth_labels = cv2.connectedComponents(z["tMA"].astype(np.uint8), connectivity=8)
        total += count - 1
        truth_pixels, marked_pixels = np.flatnonzero(truth_labels), np.flatnonzero(z["tMA"] | z["tHE"])
        diameter = fov_diameter(z["green"])
        for i, level in enumerate(levels):
            n, labels, stats, _ = cv2.connectedComponentsWithStats((z["MA"] >= level).astype(np.uint8), connectivity=8)
            if n <= 1:
                break
            kept = np.zeros(n, bool)
            kept[1:] = keep(stats[1:], diameter)
            touched = np.zeros(n, bool)
            touched[labels.ravel()[marked_pixels]] = True
            false[i] += np.count_nonzero(kept & ~touched)
            hit = kept[labels.ravel()[truth_pixels]]
            found[i] += len(np.unique(truth_labels.ravel()[truth_pixels][hit]))
    rate, sensitivity = false / len(files), found / total
    return float(np.mean([sensitivity[rate <= r + 1e-12].max(initial=0.0) for r in FROC_RATES]))


def region_kinds(files: list[Path]) -> dict[str, list[tuple[float, float]]]:
    """(area, peak) of each served MA region at the operating threshold, by what it lies on."""
    kinds = defaultdict(list)
    for file in files:
        z = np.load(file)
        diameter = fov_diameter(z["green"])
        n, labels, stats, _ = cv2.connectedComponentsWithStats((z["MA"] >= threshold_level(OPERATING)).astype(np.uint8), connectivity=8)
        flat = labels.ravel()
        peak = np.zeros(n)
        np.maximum.at(peak, flat, z["MA"].ravel())
        on = {key: np.bincount(flat, z[key].ravel(), n) > 0 for key in ("tMA", "tHE", "marked")}
        for i in range(1, n):
            kind = ("on MA ground truth" if on["tMA"][i] else "on HE ground truth" if on["tHE"][i]
                    else "on a weaker marking" if on["marked"][i] else "off every marking")
            kinds[kind].append((stats[i, 4] / diameter**2 * 1e6, peak[i] / 65535))
    return kinds


def report(folders: list[str]) -> None:
    for folder in map(Path, folders):
        files = sorted(folder.glob("*.npz"))
        print(f"\n{folder} ({len(files)} photographs), MA regions at {OPERATING}:")
        print("| kind | per photograph | area, quartiles | peak, quartiles |\n|---|---|---|---|")
        for kind, rows in sorted(region_kinds(files).items()):
            area, peak = np.array(rows).T
            print(f"| {kind} | {len(rows) / len(files):.1f} | {' / '.join(f'{v:.0f}' for v in np.percentile(area, [25, 50, 75]))} "
                  f"| {' / '.join(f'{v:.2f}' for v in np.percentile(peak, [25, 50, 75]))} |")
        print("| shape filter at every threshold | MA FROC |\n|---|---|")
        for name, keep in FILTERS.items():
            print(f"| {name} | {froc(files, keep):.3f} |", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["dump"]:
        sys.exit(dump(sys.argv[2:]))
    report(sys.argv[2:])
