"""``redseg-pack-data``: the working-scale training data of a run config, packed into one small file.

    redseg-pack-data --config configs/gpu-imagenet.yaml --out .pack/idrid-working.npz [--quality 95]

A machine without the IDRiD folder (a lent GPU host, which takes at most a few tens of MB along)
trains from the pack instead: set ``data.packed`` in the run config. The pack holds every image of
the config's split mapped to the model's working scale exactly as ``training.data.cache`` maps it, the
images as JPEG (4:4:4, ``--quality``) and the masks as lossless PNG, with the scale settings they
were made for; loading it with another scale is an error. The 54 IDRiD images take 18 MB.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from model.atomic import atomic_write
from model.cli_help import plain_help
from model.config import RED_LESIONS, RedSegConfig
from training.data.cache import CachedSample, WorkingScaleCache, scale_settings
from training.config import ConfigError, load_config
from training.data.idrid import DatasetLayoutError, data_root, list_samples

PACK_VERSION = 1


class PackError(ValueError):
    pass


def encode(sample: CachedSample, quality: int, lesions: tuple[str, ...] = RED_LESIONS) -> dict[str, np.ndarray]:
    bgr = cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    arrays = {f"{sample.name}/image": np.frombuffer(cv2.imencode(".jpg", bgr, params)[1], np.uint8)}
    for channel, lesion in enumerate(lesions):
        png = cv2.imencode(".png", sample.masks[channel].astype(np.uint8) * 255)[1]
        arrays[f"{sample.name}/{lesion}"] = np.frombuffer(png, np.uint8)
    return arrays


def decode(data, name: str, lesions: tuple[str, ...] = RED_LESIONS) -> CachedSample:
    image = cv2.cvtColor(cv2.imdecode(data[f"{name}/image"], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    masks = np.stack([cv2.imdecode(data[f"{name}/{lesion}"], cv2.IMREAD_GRAYSCALE) > 0 for lesion in lesions])
    return CachedSample(name, image, masks)


def write_pack(path: Path, samples: list[CachedSample], model_config: RedSegConfig, quality: int = 95) -> None:
    header = {"version": PACK_VERSION, "scale": scale_settings(model_config), "names": [s.name for s in samples],
              "jpeg_quality": quality, "lesions": list(model_config.lesions)}
    arrays = {"header": np.frombuffer(json.dumps(header).encode(), np.uint8)}
    for sample in samples:
        arrays |= encode(sample, quality, model_config.lesions)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def read_pack(path: str | Path, model_config: RedSegConfig) -> list[CachedSample]:
    """Every sample of a pack, sorted by name; the pack must be made for ``model_config``'s scale."""
    path = Path(path)
    if not path.is_file():
        raise PackError(f"packed data not found: {path} (make it with redseg-pack-data)")
    with np.load(path) as data:
        header = json.loads(data["header"].tobytes())
        if header.get("version") != PACK_VERSION:
            raise PackError(f"{path} is pack version {header.get('version')}, expected {PACK_VERSION}")
        wanted = scale_settings(model_config)
        if header["scale"] != wanted:
            raise PackError(f"{path} was packed for the scale {header['scale']}, but the model needs {wanted}")
        packed = tuple(header.get("lesions", RED_LESIONS))
        missing = [lesion for lesion in model_config.lesions if lesion not in packed]
        if missing:
            raise PackError(f"{path} holds the masks of {list(packed)}, but the model also segments {missing}")
        return [decode(data, name, model_config.lesions) for name in sorted(header["names"])]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="redseg-pack-data", description=plain_help(__doc__.split("\n\n")[0]))
    parser.add_argument("--config", required=True, help="the run config whose data and model scale to pack")
    parser.add_argument("--out", type=Path, required=True, help="the pack to write (.npz)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the images (masks are lossless)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        samples = list_samples(data_root(config.data.root), config.data.split, config.model.lesions)
    except (ConfigError, DatasetLayoutError) as exc:
        print(f"redseg-pack-data: error: {exc}", file=sys.stderr)
        return 2
    model_config = config.model
    cached = WorkingScaleCache(model_config, config.data.cache_dir).get_all(samples, progress=not args.no_progress)
    write_pack(args.out, cached, model_config, args.quality)
    print(f"redseg-pack-data: {len(cached)} images -> {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
