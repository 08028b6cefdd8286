"""Reading IDRiD's disease-grading part (photographs and their retinopathy grades) in its official layout."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from training.data.idrid import IDRID_SOURCE, DatasetLayoutError

IMAGES_DIR = "B. Disease Grading/1. Original Images/a. Training Set"
LABELS_CSV = "B. Disease Grading/2. Groundtruths/a. IDRiD_Disease Grading_Training Labels.csv"
DEFAULT_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "idrid-grading"
REFERABLE_GRADE = 2
"""Referable diabetic retinopathy: moderate non-proliferative or worse (grade 2, 3 or 4)."""


@dataclass(frozen=True)
class GradedImage:
    name: str
    path: Path
    grade: int
    macular_oedema: int = 0
    """IDRiD's risk of macular oedema: 0 none, 1 hard exudates beyond one disc diameter of the macula's centre, 2 within it."""

    @property
    def referable(self) -> bool:
        return self.grade >= REFERABLE_GRADE


def list_graded(root: str | Path) -> list[GradedImage]:
    """Every photograph with its retinopathy grade (0-4), sorted by name."""
    root = Path(root)
    labels, images = root / LABELS_CSV, root / IMAGES_DIR
    if not labels.is_file() or not images.is_dir():
        raise DatasetLayoutError(
            f"IDRiD's disease-grading part not found: expected its official grading layout under {root}, "
            f"'{IMAGES_DIR}/IDRiD_NNN.jpg' and '{LABELS_CSV}'; download IDRiD from {IDRID_SOURCE} "
            "and unpack it there, or name its folder with --data"
        )
    graded = []
    with labels.open(newline="", encoding="utf-8-sig") as f:
        for row in csv.reader(f):
            if len(row) < 2 or not row[0].strip().startswith("IDRiD_"):
                continue
            name = row[0].strip()
            path = images / f"{name}.jpg"
            if not path.is_file():
                raise DatasetLayoutError(f"{path} is listed in {labels.name} but missing")
            graded.append(GradedImage(name, path, int(row[1]), int(row[2]) if len(row) > 2 and row[2].strip() else 0))
    if not graded:
        raise DatasetLayoutError(f"{labels} lists no photographs")
    return sorted(graded, key=lambda g: g.name)
