"""The connected regions (8-connectivity) of a lesion mask, found without scanning its empty rows.

A lesion mask is mostly empty: IDRiD_05's haemorrhages span 2645 rows of the photograph but touch only
480 of them. A region cannot cross a row without mask pixels, so each run of rows holding any is
labelled on its own, cut to its pixels' columns.
"""

from __future__ import annotations

import cv2
import numpy as np


def occupied_boxes(mask: np.ndarray) -> list[tuple[slice, slice]]:
    """(rows, columns) boxes of a 2-D uint8 or bool mask holding all its non-zero pixels, one per run of rows
    holding any, cut to the columns those rows' pixels span; each 8-connected region lies in one box."""
    mask = mask.view(np.uint8)
    rows = np.flatnonzero(mask.any(axis=1))
    if not len(rows):
        return []
    gaps = np.flatnonzero(np.diff(rows) > 1)
    boxes = []
    for top, bottom in zip(rows[np.r_[0, gaps + 1]], rows[np.r_[gaps, len(rows) - 1]] + 1):
        left, _, width, _ = cv2.boundingRect(mask[top:bottom])
        boxes.append((slice(int(top), int(bottom)), slice(left, left + width)))
    return boxes


def region_stats(mask: np.ndarray) -> np.ndarray:
    """OpenCV's stats row (left, top, width, height, area) of each 8-connected region of a 2-D uint8
    or bool mask's non-zero pixels, labelled box by box (``occupied_boxes``)."""
    mask = mask.view(np.uint8)
    stats = [np.empty((0, 5), dtype=np.int32)]
    for rows, columns in occupied_boxes(mask):
        _, _, box_stats, _ = cv2.connectedComponentsWithStats(mask[rows, columns], connectivity=8)
        stats.append(box_stats[1:] + np.array([columns.start, rows.start, 0, 0, 0], dtype=np.int32))
    return np.concatenate(stats)
