"""``python -m training.evaluation.fundus_check``: how often the fundus check accepts fundus photographs and refuses others.

Measures ``model.fundus_check.check_fundus`` on every real photograph at hand (IDRiD segmentation and
grading, DiaRetDB1's training split, scikit-image's retina.jpg when its wheel is in .cache/wheels) and on
the variants a clinic produces of each (``VARIANTS``), and on the non-fundus corpus that
``python -m training.data.non_fundus_corpus`` writes. Prints, and writes to ``--out``, the acceptance rate
per real set and per variant, the refusal rate per corpus source, each misclassified file, a
``metrics.json``, a ``report.md`` and a figure of the score distributions.

``--fit`` refits the check's logistic regression instead, on the *fit* part only: IDRiD's segmentation
photographs with their variants and augmented copies, against the corpus's ``fit`` half (and the
augmented copies of those), and prints the coefficients to paste into ``model/fundus_check.py``. The
report then measures the held-out parts: IDRiD grading, DiaRetDB1, scikit-image's retina and the
corpus's ``held-out`` half (the fit part is reported too, marked as such).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from model.formats.images import read_image
from model.fundus_check import (
    FEATURES,
    FEATURES_VERSION,
    MIN_SIDE,
    QUADRATIC,
    THRESHOLD,
    check_fundus,
    failed_gate,
    regression_inputs,
    score_features,
    shrink,
    shrunk_features,
)
from training.data.non_fundus_corpus import DEFAULT_OUT as DEFAULT_CORPUS
from training.data.non_fundus_corpus import list_corpus, skimage_retina, split_of

DEFAULT_SHARED = Path("../shared/data")
DEFAULT_CACHE = Path(".cache/fundus-check")
REAL_SETS = {
    "idrid-segmentation": ("idrid", "A. Segmentation/1. Original Images/a. Training Set/*.jpg"),
    "idrid-grading": ("idrid-grading", "B. Disease Grading/1. Original Images/a. Training Set/*.jpg"),
    "diaretdb1": ("diaretdb1-train", "images/*.png"),
}
FIT_SETS = ("idrid-segmentation",)
"""Real sets whose photographs (and variants) the logistic regression is fitted on."""


def _crop(image: np.ndarray, share: float) -> np.ndarray:
    h, w = image.shape[:2]
    dy, dx = round(h * (1 - share) / 2), round(w * (1 - share) / 2)
    return image[dy : h - dy, dx : w - dx]


def _pad(image: np.ndarray, share: float) -> np.ndarray:
    h, w = image.shape[:2]
    dy, dx = round(h * share), round(w * share)
    return cv2.copyMakeBorder(image, dy, dy, dx, dx, cv2.BORDER_CONSTANT, value=(0, 0, 0))


def _width(image: np.ndarray, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]


def _red_free(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., 1:2], 3, axis=2)


VARIANTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "original": lambda image: image,
    "crop-60%": lambda image: _crop(image, 0.6),
    "padded": lambda image: _pad(image, 0.25),
    "640-wide": lambda image: _width(image, 640),
    "jpeg-30": lambda image: _jpeg(image, 30),
    "rotated-90": lambda image: np.ascontiguousarray(np.rot90(image)),
    "red-free": _red_free,
}
"""What a clinic does to a photograph: each must still be accepted."""


def augment(image: np.ndarray, rng: np.random.Generator, fundus: bool) -> np.ndarray:
    """A random copy for fitting: crops of any share, padding, scale, JPEG, rotation, grey; fundus copies also get
    another camera's look (colour balance, gamma, exposure) and, some, a hazy or out-of-focus look (blur, less
    contrast) that hides the finer vessels."""
    if fundus and rng.random() < 0.7:
        gains = rng.uniform([0.85, 0.6, 0.4], [1.1, 1.3, 1.8])
        gamma = rng.uniform(0.7, 1.4)
        exposure = rng.uniform(0.6, 1.3)
        image = np.clip(255 * ((image.astype(np.float32) / 255) ** gamma) * gains * exposure, 0, 255).astype(np.uint8)
    if fundus and rng.random() < 0.35:
        image = _width(image, min(image.shape[1], 1600))
        sigma = image.shape[1] * float(rng.uniform(0.0005, 0.003))
        hazy = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma)
        field = hazy[image.max(axis=2) > 20]
        mean = field.mean(axis=0) if field.size else 0
        contrast = float(rng.uniform(0.5, 1.0))
        hazy = np.where(image.max(axis=2, keepdims=True) > 20, mean + (hazy - mean) * contrast, hazy)
        image = np.clip(hazy, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        image = _crop(image, float(rng.uniform(0.35, 0.95)))
    elif rng.random() < 0.3:
        image = _pad(image, float(rng.uniform(0.05, 0.6)))
    if rng.random() < 0.5:
        image = _width(image, int(rng.integers(400, 1600)))
    if rng.random() < 0.3:
        image = _jpeg(image, int(rng.integers(15, 60)))
    if rng.random() < 0.3:
        image = np.ascontiguousarray(np.rot90(image, int(rng.integers(1, 4))))
    if rng.random() < 0.25:
        image = _red_free(image) if fundus or rng.random() < 0.5 else np.repeat(image.mean(2, keepdims=True).astype(np.uint8), 3, 2)
    return image


AUGMENT_VERSION = 2
"""Part of the cache key of an augmented fundus copy: bumped when ``augment`` changes what it makes of one."""


@dataclass
class Item:
    group: str
    """The real set or the corpus source."""
    variant: str
    name: str
    fundus: bool
    fit: bool
    """In the part the logistic regression is fitted on."""
    features: dict[str, float] | None
    """None: too small to be judged."""


class FeatureCache:
    """Features by (file, its size and time, variant), kept in one JSON file under the cache folder, and the
    shrunk copies they are measured on (``model.fundus_check.shrink``, PNG files under ``shrunk/``), so that
    changed features are measured again without decoding and making the variants again."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.path = folder / f"features-v{FEATURES_VERSION}.json" if folder else None
        self.values: dict[str, dict[str, float] | None] = {}
        if self.path and self.path.exists():
            self.values = json.loads(self.path.read_text())
        self.dirty = 0

    @staticmethod
    def key(path: Path, variant: str) -> str:
        stat = path.stat()
        return hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{variant}".encode()).hexdigest()

    def get(self, path: Path, variant: str, make: Callable[[], np.ndarray]) -> dict[str, float] | None:
        key = self.key(path, variant)
        if key not in self.values:
            self.values[key] = self._measure(key, make)
            self.dirty += 1
            if self.dirty % 50 == 0:
                self.save()
        return self.values[key]

    def _measure(self, key: str, make: Callable[[], np.ndarray]) -> dict[str, float] | None:
        stored = self.folder / "shrunk" / f"{key}.png" if self.folder else None
        if stored is not None and stored.exists():
            small = cv2.imread(str(stored), cv2.IMREAD_COLOR)[..., ::-1]
            return shrunk_features(np.ascontiguousarray(small))
        image = make()
        if min(image.shape[:2]) < MIN_SIDE:
            return None
        small = shrink(image)
        if stored is not None:
            stored.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(stored), np.ascontiguousarray(small[..., ::-1]))
        return shrunk_features(small)

    def save(self) -> None:
        if self.path and self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.values))


def real_photographs(shared: Path) -> dict[str, list[Path]]:
    found = {}
    for name, (folder, pattern) in REAL_SETS.items():
        paths = sorted((shared / folder).glob(pattern))
        if paths:
            found[name] = paths
        else:
            print(f"{name}: no photographs under {shared / folder}", file=sys.stderr)
    return found


def collect(shared: Path, corpus: Path, cache: FeatureCache, augmented: int = 0, log=print) -> list[Item]:
    """Features of every real photograph and its variants, and of every corpus image; with ``augmented`` > 0, also
    that many augmented copies of each fit-part image (fundus and not) for fitting."""
    items: list[Item] = []
    rng = np.random.default_rng(0)
    sets = real_photographs(shared)
    retina_path = None
    wheels = sorted(Path(".cache/wheels").glob("scikit_image-*.whl"))
    if wheels:
        retina_path = wheels[-1]
    started = time.monotonic()
    for group, paths in sets.items():
        fit = group in FIT_SETS
        for index, path in enumerate(paths):
            loaded: dict[str, np.ndarray] = {}

            def original(path: Path = path) -> np.ndarray:
                if "image" not in loaded:
                    loaded["image"] = read_image(path)
                return loaded["image"]

            for variant, make in VARIANTS.items():
                features = cache.get(path, variant, lambda make=make: make(original()))
                items.append(Item(group, variant, path.name, True, fit, features))
            for copy in range(augmented if fit else 0):
                seed = int(rng.integers(1 << 31))
                features = cache.get(path, f"augmented-v{AUGMENT_VERSION}-{copy}-{seed}",
                                     lambda seed=seed: augment(original(), np.random.default_rng(seed), fundus=True))
                items.append(Item(group, f"augmented-{copy}", path.name, True, True, features))
            if index % 25 == 24:
                log(f"{group}: {index + 1}/{len(paths)} ({time.monotonic() - started:.0f} s)")
    if retina_path is not None:
        retina = skimage_retina()
        if retina is not None:
            for variant, make in VARIANTS.items():
                features = cache.get(retina_path, f"retina|{variant}", lambda make=make: make(retina))
                items.append(Item("skimage-retina", variant, "retina.jpg", True, False, features))
    for source, name, path in list_corpus(corpus) if corpus.exists() else []:
        fit = split_of(name) == "fit"
        loaded = {}

        def image(path: Path = path) -> np.ndarray:
            if "image" not in loaded:
                loaded["image"] = read_image(path)
            return loaded["image"]

        try:
            features = cache.get(path, "original", image)
        except Exception as exc:  # noqa: BLE001 - an undecodable corpus file is reported and left out
            log(f"{name}: cannot read ({exc})")
            continue
        items.append(Item(source, "original", name, False, fit, features))
        for copy in range(augmented if fit else 0):
            seed = int(rng.integers(1 << 31))
            features = cache.get(path, f"augmented-{copy}-{seed}",
                                 lambda seed=seed: augment(image(), np.random.default_rng(seed), fundus=False))
            items.append(Item(source, f"augmented-{copy}", name, False, True, features))
    cache.save()
    return items


def item_score(item: Item) -> float:
    return 0.0 if item.features is None else score_features(item.features)


def fit(items: list[Item], c: float = 1.0) -> tuple[dict[str, tuple[float, float, float, float]], float]:
    """Logistic regression on the fit part's standardised features (and the squares of ``QUADRATIC``'s), refitted
    without any square whose weight comes out positive (a band, never a valley): (coefficients, bias)."""
    from sklearn.linear_model import LogisticRegression

    chosen = [item for item in items if item.fit and item.features is not None]
    x = np.array([[regression_inputs(item.features)[name] for name in FEATURES] for item in chosen])
    y = np.array([item.fundus for item in chosen])
    if len(set(y.tolist())) < 2:
        raise ValueError("fitting needs both fundus photographs and non-fundus images in the fit part")
    means, scales = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = (x - means) / scales
    squared = [FEATURES.index(name) for name in QUADRATIC]
    while True:
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=10000)
        model.fit(np.hstack([z, z[:, squared] ** 2]), y)
        weights, squares = model.coef_[0][: len(FEATURES)], model.coef_[0][len(FEATURES) :]
        if not (squares > 0).any():
            break
        squared = [index for index, square in zip(squared, squares) if square <= 0]
    square_of = dict(zip(squared, squares))
    coefficients = {name: (float(means[i]), float(scales[i]), float(weights[i]), float(square_of.get(i, 0.0)))
                    for i, name in enumerate(FEATURES)}
    return coefficients, float(model.intercept_[0])


def constants_text(coefficients: dict[str, tuple[float, float, float, float]], bias: float) -> str:
    lines = ["COEFFICIENTS: dict[str, tuple[float, float, float, float]] = {"]
    for name, values in coefficients.items():
        lines.append(f'    "{name}": ({", ".join(f"{v:.6g}" for v in values)}),')
    lines.append("}")
    lines.append(f"BIAS = {bias:.6g}")
    return "\n".join(lines)


def summarise(items: list[Item]) -> dict:
    """Acceptance per real set and variant, refusal per corpus source, and the misclassified files."""
    real = [item for item in items if item.fundus and not item.variant.startswith("augmented")]
    other = [item for item in items if not item.fundus and not item.variant.startswith("augmented")]
    metrics: dict = {"threshold": THRESHOLD, "features_version": FEATURES_VERSION, "accepted": {}, "refused": {},
                     "misclassified": []}

    def rate(chosen: list[Item], accept: bool) -> dict:
        hits = sum((item_score(item) >= THRESHOLD) == accept for item in chosen)
        return {"n": len(chosen), "rate": round(hits / len(chosen), 4) if chosen else None, "count": hits}

    for group in dict.fromkeys(item.group for item in real):
        in_group = [item for item in real if item.group == group]
        metrics["accepted"][group] = {variant: rate([i for i in in_group if i.variant == variant], True)
                                      for variant in VARIANTS}
        metrics["accepted"][group]["all"] = rate(in_group, True)
        metrics["accepted"][group]["part"] = "fit" if in_group[0].fit else "held-out"
    held_out_real = [item for item in real if not item.fit]
    metrics["accepted"]["held-out, all"] = rate(held_out_real, True)
    metrics["accepted"]["held-out, originals"] = rate([i for i in held_out_real if i.variant == "original"], True)
    for source in sorted({item.group for item in other}):
        in_source = [item for item in other if item.group == source]
        metrics["refused"][source] = {part: rate([i for i in in_source if (i.fit == (part == "fit"))], False)
                                      for part in ("fit", "held-out")}
        metrics["refused"][source]["all"] = rate(in_source, False)
    metrics["refused"]["held-out, all"] = rate([item for item in other if not item.fit], False)
    metrics["refused"]["all"] = rate(other, False)
    for item in real + other:
        score = item_score(item)
        if (score >= THRESHOLD) != item.fundus:
            metrics["misclassified"].append({"group": item.group, "variant": item.variant, "name": item.name,
                                             "fundus": item.fundus, "part": "fit" if item.fit else "held-out",
                                             "score": round(score, 4),
                                             "gate": failed_gate(item.features) if item.features else "too small"})
    return metrics


def timing(path: Path, repeats: int = 7) -> dict:
    """CPU time of ``check_fundus`` on one photograph, on one thread (median of ``repeats``)."""
    image = read_image(path)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        check_fundus(image)
        times = []
        for _ in range(repeats):
            start = time.process_time()
            check_fundus(image)
            times.append(time.process_time() - start)
    finally:
        cv2.setNumThreads(threads)
    return {"image": path.name, "size": f"{image.shape[1]}x{image.shape[0]}", "cpu_ms_median": round(1000 * float(np.median(times)), 1)}


def figure(items: list[Item], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [item for item in items if not item.variant.startswith("augmented")]
    logit = lambda s: np.log(np.clip(s, 1e-6, 1 - 1e-6) / (1 - np.clip(s, 1e-6, 1 - 1e-6)))  # noqa: E731
    fig, axes = plt.subplots(2, 1, figsize=(9, 7), dpi=110, sharex=True)
    bins = np.linspace(-16, 16, 65)
    for ax, part in zip(axes, ("held-out", "fit")):
        for fundus, colour, label in ((True, "#c0502a", "fundus photographs and variants"), (False, "#3060a0", "non-fundus corpus")):
            chosen = [item for item in items if item.fundus == fundus and (item.fit == (part == "fit"))]
            if chosen:
                ax.hist(np.clip(logit(np.array([item_score(i) for i in chosen])), -16, 16), bins=bins, color=colour,
                        alpha=0.6, label=f"{label} ({len(chosen)})")
        ax.axvline(logit(THRESHOLD), color="black", lw=1, ls="--", label="threshold")
        ax.set_yscale("log")
        ax.set_title(f"{part} part")
        ax.set_ylabel("images")
        ax.legend(fontsize=8)
    axes[1].set_xlabel("score (log-odds, clipped to +-16; images a gate refuses at the far left)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _rate_text(entry: dict) -> str:
    return "-" if entry["rate"] is None else f"{100 * entry['rate']:.1f} % ({entry['count']}/{entry['n']})"


def report_text(metrics: dict, command: str) -> str:
    lines = ["# Fundus check: acceptance and refusal", "",
             f"Measured with `{command}`, threshold {metrics['threshold']}, features version "
             f"{metrics['features_version']}.", "",
             "What the check measures (`model/fundus_check.py`): on a copy of at most 512 pixels, the field-of-view "
             "disc (`model.fov.detect_disc`; a found disc must be bright inside and dark around, or the image is "
             "judged whole, as a crop into the disc), whether it fills and has a dark surround; inside it, resampled "
             "to 384 pixels across, the colour (red-orange with R >= G >= B, or grey for red-free and monochrome "
             "copies), the contrast of thin dark and thin bright structures relative to the local brightness "
             "(morphological top-hats of the green channel), the vessel tree (line-like dark structures: their "
             "longest span, their area, whether they run in one direction as stripes, ribs and text do), edges, "
             "flat areas, black holes, saturation, an optic disc (a bright spot) and a fovea (a darker one), and the "
             "grain (the finest scale's share of the texture). A logistic regression weighs "
             f"them ({', '.join(QUADRATIC)} also squared, with weights that are never positive: a band, not a side). "
             "Three gates come first (`failed_gate`): the field is red-orange or grey, its lines do not run in one "
             "direction (stripes, ribs, text), and it shows its vessels or its optic disc.", "",
             "The logistic regression's coefficients were fitted on the *fit* part only: IDRiD's 54 segmentation "
             "photographs (with their variants and augmented copies) and the half of the non-fundus corpus whose "
             "names hash to `fit` (`training.data.non_fundus_corpus.split_of`), with augmented copies. Everything "
             "marked *held-out* (IDRiD grading, DiaRetDB1 (another camera), scikit-image's retina.jpg and the "
             "corpus's other half) took no part in it. They are held out from the fitting, not from the design: the "
             "features, the gates' limits and the augmentations were chosen over a few rounds while looking at every "
             "set's misclassified images (IDRiD grading's hazy IDRiD_031 and _089, which show few vessels, turned a "
             "vessel gate into the vessels-or-optic-disc gate and added hazy copies to the augmentation; DiaRetDB1's "
             "crops, where the disc finder fits the rim of a dark patch, the check that a found disc is bright inside "
             "and dark around). scikit-image's retina.jpg (another camera) was measured, never used for a decision.",
             "", f"The non-fundus corpus ({metrics['refused']['all']['n']} images) is made by `python -m "
             "training.data.non_fundus_corpus --apt --skimage` into .cache/non-fundus (not in git): Debian's wallpaper "
             "packages, the images under /usr/share/doc and /usr/share/icons (these depend on what the machine has "
             "installed), matplotlib's, scikit-learn's and scikit-image's samples, pydicom's test images, chromium "
             "screenshots of local pages, rendered documents and charts, synthetic images (flat colours, noise, "
             "gradients, plain and noisy discs on black, X-ray-like images) and grey, warm-tinted and cropped copies "
             "of the photographs. The variants of each photograph are made from it by `VARIANTS` in "
             "training/evaluation/fundus_check.py (crop-60%: the central 60 %; padded: 25 % black on every side; "
             "red-free: the green channel as grey).",
             "", "## Fundus photographs accepted", "",
             "| set | part | " + " | ".join(VARIANTS) + " | all |", "|---|---|" + "---|" * (len(VARIANTS) + 1)]
    for group, entry in metrics["accepted"].items():
        if "part" in entry:
            lines.append(f"| {group} | {entry['part']} | " + " | ".join(_rate_text(entry[v]) for v in VARIANTS)
                         + f" | {_rate_text(entry['all'])} |")
    lines += ["", f"Held-out, all variants: {_rate_text(metrics['accepted']['held-out, all'])}; "
              f"held-out originals: {_rate_text(metrics['accepted']['held-out, originals'])}.", "",
              "## Non-fundus images refused", "", "| source | fit part | held-out part | all |", "|---|---|---|---|"]
    for source, entry in metrics["refused"].items():
        if "fit" in entry:
            lines.append(f"| {source} | {_rate_text(entry['fit'])} | {_rate_text(entry['held-out'])} | {_rate_text(entry['all'])} |")
    lines += ["", f"Held-out corpus: {_rate_text(metrics['refused']['held-out, all'])}; whole corpus: "
              f"{_rate_text(metrics['refused']['all'])}.", "", "## Misclassified", ""]
    if metrics["misclassified"]:
        lines += ["| kind | set or source | variant | file | part | score | gate |", "|---|---|---|---|---|---|---|"]
        for m in metrics["misclassified"]:
            kind = "fundus refused" if m["fundus"] else "non-fundus accepted"
            lines.append(f"| {kind} | {m['group']} | {m['variant']} | {m['name']} | {m['part']} | {m['score']} | "
                         f"{m['gate'] or '-'} |")
    else:
        lines.append("None.")
    if "timing" in metrics:
        t = metrics["timing"]
        lines += ["", f"Speed: {t['cpu_ms_median']} ms of CPU time on one thread for {t['image']} ({t['size']}), "
                  "median of 7 (decoding not counted)."]
    lines += ["", "![score distributions](scores.png)", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluation.fundus_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/fundus-check"), help="folder for metrics.json, report.md, scores.png")
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="folder holding idrid/, idrid-grading/, diaretdb1-train/")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="the non-fundus corpus (training.data.non_fundus_corpus)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="feature cache folder ('none': no cache)")
    parser.add_argument("--fit", action="store_true", help="refit the logistic regression and print its coefficients")
    parser.add_argument("--augmented", type=int, default=4, help="augmented copies of each fit-part image when fitting")
    parser.add_argument("--c", type=float, default=1.0, help="inverse L2 strength when fitting")
    args = parser.parse_args(argv)
    cache = FeatureCache(None if str(args.cache) == "none" else args.cache)
    log = lambda text: print(text, file=sys.stderr)  # noqa: E731
    items = collect(args.shared, args.corpus, cache, args.augmented if args.fit else 0, log=log)
    if not items:
        print("no images found: see --shared and --corpus", file=sys.stderr)
        return 2
    if args.fit:
        try:
            print(constants_text(*fit(items, args.c)))
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        return 0
    metrics = summarise(items)
    photographs = [path for paths in real_photographs(args.shared).values() for path in paths]
    if photographs:
        metrics["timing"] = timing(photographs[0])
    command = "python -m training.evaluation.fundus_check " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report_text(metrics, command.strip())
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (args.out / "report.md").write_text(text)
    figure(items, args.out / "scores.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
