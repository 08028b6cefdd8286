"""``python -m training.data.fov_reference``: the fundus disc of every image of an IDRiD-layout folder.

Prints each image's disc (centre and diameter, original pixels) and the median diameter, the
reference ``model.fov.IDRID_DISC_DIAMETER`` was set from.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from model.fov import detect_disc
from model.formats.images import read_image
from training.data.idrid import DEFAULT_ROOT, DatasetLayoutError, list_samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data.fov_reference", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_ROOT, help="IDRiD root folder (official layout)")
    parser.add_argument("--split", default="train")
    args = parser.parse_args(argv)
    try:
        samples = list_samples(args.data, args.split)
    except DatasetLayoutError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    diameters = []
    for sample in tqdm(samples, desc="discs", unit="image", file=sys.stderr):
        disc = detect_disc(read_image(sample.image_path))
        diameters.append(disc.diameter)
        print(f"{sample.name} centre ({disc.cx:.1f}, {disc.cy:.1f}) diameter {disc.diameter:.1f} found {disc.found}")
    print(f"median diameter {statistics.median(diameters):.1f} over {len(diameters)} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
