"""Tile size: ``predict_probabilities`` with the default tiles against smaller ones, on torch and OpenVINO.

    .venv/bin/python bench/tiles.py [--old 1024] [--repeats 6] [--checkpoint PATH] [--image assets/IDRiD_05.jpg]

On one photograph, interleaved, medians: the default ``TileSettings.tile_size`` (one tile for any
disc-scaled photograph) against ``--old`` (1024: two 976x640 tiles for an IDRiD photograph), on the
torch engine and, where installed, OpenVINO int8; and how far the maps move (they differ only near
the old tiles' seam). Run as a script, it keeps freed arrays in the heap as the server does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from model.backends import load_for_inference, openvino_installed  # noqa: E402
from model.checkpoint import DEFAULT_CHECKPOINT  # noqa: E402
from model.cli_help import plain_help  # noqa: E402
from model.formats.images import read_image  # noqa: E402
from model.inference import TileSettings, predict_probabilities, tile_count  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=plain_help(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--image", default=str(ROOT / "assets" / "IDRiD_05.jpg"))
    parser.add_argument("--old", type=int, default=1024, help="the tile size compared with the default")
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args(argv)
    image = read_image(args.image)
    engines = ("torch", "openvino-int8") if openvino_installed() else ("torch",)
    checkpoints = {engine: load_for_inference(args.checkpoint, "cpu", engine) for engine in engines}
    sizes = (TileSettings.tile_size, args.old)
    runs = {(engine, size): run_of(checkpoints[engine], image, size) for engine in engines for size in sizes}
    maps = {key: run() for key, run in runs.items()}  # also the warm-up
    times: dict[tuple[str, int], list[float]] = {key: [] for key in runs}
    for _ in range(args.repeats):
        for key, run in runs.items():
            started = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - started)
    print(f"| engine | tile size | tiles | median s of {args.repeats} | new / old | max, mean abs difference of the maps |")
    print("|---|---:|---:|---:|---:|---|")
    for engine in engines:
        new, old = (statistics.median(times[engine, size]) for size in sizes)
        difference = np.abs(maps[engine, sizes[0]] - maps[engine, sizes[1]])
        for size, seconds in zip(sizes, (new, old)):
            tiles = tile_count(*image.shape[:2], checkpoints[engine].model, TileSettings(tile_size=size), image)
            print(f"| {engine} | {size} | {tiles} | {seconds:.3f} | {new / old:.3f} | {difference.max():.4f}, {difference.mean():.1e} |")


def run_of(checkpoint, image: np.ndarray, tile_size: int):
    settings = TileSettings(tile_size=tile_size)
    return lambda: predict_probabilities(checkpoint.model, image, settings, checkpoint.calibration)


if __name__ == "__main__":
    from service.memory import configure_heap

    configure_heap()  # the server's heap settings
    main()
