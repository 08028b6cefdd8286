"""Lesion-level FROC: ground-truth regions found by the served mask's regions as its threshold sweeps.

A ground-truth region is an 8-connected region of a lesion's ground-truth mask. At a threshold t
the served mask is the probability map's 16-bit levels at or above t (``model.screening.masks``,
exactly the mask the service returns at t), and its regions are its 8-connected regions:

- a ground-truth region is **found** at t where some served region overlaps it, i.e. where its
  highest probability reaches t;
- a served region is **false** where it overlaps no ground truth of its lesion and, where the set
  marks its look-alike too (the other red lesion; for an exudate, the other exudate), none of the
  look-alike's either (a microaneurysm called on a marked haemorrhage is neither found nor false).

Sensitivity (found / all ground-truth regions, pooled over images) against false regions per image
gives the FROC curve. The Retinopathy Online Challenge's and e-ophtha's figure is the mean of the
sensitivities at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false regions per image; here the sensitivity at a rate
is the highest one among the sweep's thresholds whose false regions per image do not exceed it (0 if
none), so no figure is read between two thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from model.screening.masks import PROBABILITY_LEVELS, mask_from_levels, probability_to_uint16, threshold_level

FROC_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""False regions per image at which the sensitivity is read (ROC challenge, e-ophtha)."""

SWEEP = np.round(np.concatenate([np.arange(1, 100) / 100, np.arange(991, 1000) / 1000, [0.9995, 0.9999, 1.0]]), 4)
"""The thresholds swept: 0.01, 0.02, ..., 0.99, then 0.991, ..., 0.999, 0.9995, 0.9999 and 1 (the 16-bit
map's top level) for the curve's low-false end, where calibrated maps crowd."""


def sweep_thresholds(operating: float | None = None) -> np.ndarray:
    """``SWEEP`` with the operating threshold added, ascending and without repeats."""
    extra = [] if operating is None else [float(operating)]
    return np.unique(np.concatenate([SWEEP, extra]))


def region_peaks(levels: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The highest 16-bit level inside each 8-connected region of ``truth`` (one entry per region)."""
    count, labels = cv2.connectedComponents(truth.astype(np.uint8), connectivity=8)
    peaks = np.zeros(count, dtype=np.int64)
    inside = labels > 0
    np.maximum.at(peaks, labels[inside], levels[inside].astype(np.int64))
    return peaks[1:]


def region_counts(levels: np.ndarray, thresholds: np.ndarray, marked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per threshold, the served mask's 8-connected regions, and those of them that touch no ``marked`` pixel."""
    regions = np.zeros(len(thresholds), dtype=np.int64)
    counts = np.zeros(len(thresholds), dtype=np.int64)
    marked_pixels = np.flatnonzero(marked)
    for i in np.argsort(thresholds):
        mask = mask_from_levels(levels, float(thresholds[i]))
        count, labels = cv2.connectedComponents(mask, connectivity=8)
        if count <= 1:
            break  # no region at this threshold, so none at any higher one
        touched = np.unique(labels.ravel()[marked_pixels])
        regions[i] = count - 1
        counts[i] = count - 1 - np.count_nonzero(touched)
    return regions, counts


@dataclass(frozen=True)
class ImageRegions:
    """One image's figures at the operating threshold, and its highest probability."""

    ground_truth_regions: int
    found_regions: int
    false_regions: int
    served_regions: int
    max_probability: float


class FROCAccumulator:
    """Ground-truth region peaks and false-region counts of one lesion, pooled over images."""

    def __init__(self, operating: float | None = None, thresholds: np.ndarray | None = None) -> None:
        self.thresholds = sweep_thresholds(operating) if thresholds is None else np.asarray(thresholds, float)
        self.operating = operating
        self.levels = np.array([threshold_level(t) for t in self.thresholds])
        self.peaks: list[np.ndarray] = []
        self.false = np.zeros(len(self.thresholds), dtype=np.int64)
        self.num_images = 0

    def update(self, probability: np.ndarray, truth: np.ndarray, other: np.ndarray | None = None) -> ImageRegions:
        """Add one image: its probability map, its ground truth and, where marked, the other lesion's.

        Returns the image's figures at the operating threshold (or the sweep's lowest).
        """
        levels = probability_to_uint16(probability)
        truth = np.asarray(truth, dtype=bool)
        marked = truth if other is None else truth | np.asarray(other, dtype=bool)
        peaks = region_peaks(levels, truth)
        served, false = region_counts(levels, self.thresholds, marked)
        self.peaks.append(peaks)
        self.false += false
        self.num_images += 1
        i = self.operating_index()
        return ImageRegions(len(peaks), int(np.sum(peaks >= self.levels[i])), int(false[i]), int(served[i]),
                            int(levels.max(initial=0)) / PROBABILITY_LEVELS)

    def operating_index(self) -> int:
        if self.operating is None:
            return 0
        return int(np.flatnonzero(np.isclose(self.thresholds, self.operating))[0])

    @property
    def num_regions(self) -> int:
        return int(sum(len(p) for p in self.peaks))

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(false regions per image, sensitivity) at each threshold of the sweep, ascending threshold."""
        peaks = np.concatenate(self.peaks) if self.peaks else np.zeros(0, dtype=np.int64)
        found = (peaks[None, :] >= self.levels[:, None]).sum(axis=1)
        sensitivity = found / len(peaks) if len(peaks) else np.full(len(self.thresholds), np.nan)
        return self.false / max(self.num_images, 1), sensitivity

    def sensitivity_at(self, rates=FROC_RATES) -> np.ndarray:
        """The highest sensitivity among thresholds with at most ``rate`` false regions per image."""
        false_rate, sensitivity = self.curve()
        out = []
        for rate in rates:
            allowed = false_rate <= rate + 1e-12
            out.append(float(np.max(sensitivity[allowed])) if allowed.any() else 0.0)
        return np.array(out)

    def point(self, index: int) -> dict:
        false_rate, sensitivity = self.curve()
        return {
            "threshold": float(self.thresholds[index]),
            "sensitivity": float(sensitivity[index]),
            "false_regions_per_image": float(false_rate[index]),
            "false_regions": int(self.false[index]),
        }

    def summary(self) -> dict:
        """FROC figures for metrics.json: the seven rates and their mean, the operating point, the curve."""
        at = self.sensitivity_at()
        false_rate, sensitivity = self.curve()
        return {
            "images": self.num_images,
            "ground_truth_regions": self.num_regions,
            "froc": {
                "false_regions_per_image": list(FROC_RATES),
                "sensitivity": [round(float(s), 6) for s in at],
                "mean_sensitivity": float(np.mean(at)) if self.num_regions else float("nan"),
            },
            "at_threshold": self.point(self.operating_index()),
            "lowest_threshold": self.point(0),
            "curve": {
                "thresholds": [float(t) for t in self.thresholds],
                "false_regions_per_image": [round(float(f), 6) for f in false_rate],
                "sensitivity": [round(float(s), 6) for s in sensitivity],
            },
        }
