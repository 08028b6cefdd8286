"""``python -m training.data.non_fundus_corpus``: a corpus of images that are not colour fundus photographs.

The fundus check (``model.fundus_check``) is fitted on half of it and its refusal rate measured on the
other half (``training.evaluation.fundus_check``). Nothing here goes into git: the corpus is written to
``--out`` (default ``.cache/non-fundus/``, ignored), one folder per source, and made again by running
this script. Images that packages ship are linked (symlinks), not copied; rendered and generated ones
are written as PNG. Sources:

- ``debian-wallpapers``: the photographs and artwork of Debian's wallpaper packages
  (``apt-get install --no-install-recommends`` of ``DEBIAN_PACKAGES``; ``--apt`` runs it).
- ``system-images``: screenshots, diagrams and icons under /usr/share/doc and /usr/share/icons.
- ``package-samples``: the sample images of matplotlib, scikit-learn and scikit-image (the latter read
  from its wheel, which ``--skimage`` fetches with ``pip download``; its ``retina.jpg`` is a fundus
  photograph and is left out here: the evaluation uses it as one), and plots that packages ship as test
  baselines (networkx, sympy).
- ``dicom``: the CT, MR, ultrasound and secondary-capture images that pydicom ships, windowed to 8 bits.
- ``screenshots``: local HTML pages (Debian's HTML documentation and two generated app-like pages)
  rendered by headless chromium, where it is installed.
- ``documents``: rendered text pages, tables, a scanned-looking page, and charts (matplotlib).
- ``synthetic``: flat colours (the issue's 64x64 flat orange square among them), noise, gradients,
  checkerboards, plain and shaded orange and grey discs on black, X-ray-like grey images, colour maps.
- ``photo-variants``: the packages' photographs as red-free-like grey copies, warm-tinted and cropped.

Each image's split (``fit`` or ``held-out``) is fixed by a hash of its corpus name (``split_of``).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

DEFAULT_OUT = Path(".cache/non-fundus")
DEBIAN_PACKAGES = (
    "desktop-base",
    "gnome-backgrounds",
    "mate-backgrounds",
    "sway-backgrounds",
    "ukui-wallpapers",
    "lomiri-wallpapers",
)
RASTER = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")
MIN_BYTES = 12_000
"""Files smaller than this (icons, bullets, spacer images) are left out of the package sources."""
SKIMAGE_FUNDUS = ("retina.jpg", "microaneurysms.png")
"""scikit-image's data that are fundus photographs (or a crop of one): positives, not corpus images."""
SKIMAGE_SKIP = ("lfw_subset.npy", "lbpcascade_frontalface_opencv.xml", "motorcycle_disp.npz")
WHEELS = Path(".cache/wheels")


def split_of(name: str) -> str:
    """``fit`` or ``held-out`` for a corpus image, by a hash of its name (relative path in the corpus)."""
    return "fit" if hashlib.sha1(name.encode()).digest()[0] % 2 == 0 else "held-out"


def list_corpus(root: Path) -> list[tuple[str, str, Path]]:
    """(source, name, path) of every image under ``root``: its first folder is its source."""
    items = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in RASTER and (path.is_file() or path.is_symlink()) and path.exists():
            relative = path.relative_to(root)
            source = relative.parts[0] if len(relative.parts) > 1 else "other"
            items.append((source, relative.as_posix(), path))
    return items


# --- writing -------------------------------------------------------------------------------------


class Writer:
    def __init__(self, root: Path):
        self.root = root
        self.counts: dict[str, int] = {}

    def save(self, source: str, name: str, rgb: np.ndarray) -> None:
        path = self.root / source / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]) if rgb.ndim == 3 else rgb)
        self.counts[source] = self.counts.get(source, 0) + 1

    def link(self, source: str, original: Path, name: str | None = None) -> None:
        name = name or "_".join(original.parts[-3:])
        path = self.root / source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(original.resolve())
        self.counts[source] = self.counts.get(source, 0) + 1


def _readable(path: Path) -> bool:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return image is not None and min(image.shape[:2]) >= 32


# --- sources -------------------------------------------------------------------------------------


def debian_wallpapers(writer: Writer) -> None:
    packages = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Status}\n"], capture_output=True, text=True).stdout
    installed = {line.split()[0] for line in packages.splitlines() if line.endswith("installed")}
    wanted = [p for p in installed if any(p == d or p.startswith(d + "-") for d in DEBIAN_PACKAGES)]
    missing = [d for d in DEBIAN_PACKAGES if not any(p == d or p.startswith(d + "-") for p in installed)]
    if missing:
        print(f"debian-wallpapers: not installed: {' '.join(missing)} (apt-get install them, or pass --apt)", file=sys.stderr)
    seen = set()
    for package in sorted(wanted):
        files = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True).stdout.splitlines()
        for file in sorted(files):
            path = Path(file)
            if path.suffix.lower() not in RASTER or not path.is_file() or path.stat().st_size < MIN_BYTES:
                continue
            if path.resolve() in seen or not _readable(path):
                continue
            seen.add(path.resolve())
            writer.link("debian-wallpapers", path, f"{package}_{'_'.join(path.parts[-3:])}")


def system_images(writer: Writer) -> None:
    for folder in ("/usr/share/doc", "/usr/share/icons", "/usr/share/pixmaps"):
        for file in sorted(glob.glob(f"{folder}/**/*", recursive=True)):
            path = Path(file)
            if path.suffix.lower() in RASTER and path.is_file() and path.stat().st_size >= MIN_BYTES and _readable(path):
                writer.link("system-images", path)


def _site_packages() -> Path:
    return Path(np.__file__).resolve().parents[1]


def package_samples(writer: Writer, fetch_skimage: bool) -> None:
    import matplotlib
    from sklearn.datasets import load_sample_images

    for name, image in zip(load_sample_images().filenames, load_sample_images().images):
        writer.save("package-samples", f"sklearn_{Path(name).stem}", image)
    sample_data = Path(matplotlib.get_data_path()) / "sample_data"
    for path in sorted(sample_data.glob("*")):
        if path.suffix.lower() in RASTER and _readable(path):
            writer.link("package-samples", path, f"matplotlib_{path.name}")
    site = _site_packages()
    for pattern in ("networkx/drawing/tests/baseline/*.png", "sympy/plotting/tests/*.png"):
        for path in sorted(site.glob(pattern)):
            if path.stat().st_size >= MIN_BYTES:
                writer.link("package-samples", path, f"{path.parts[len(site.parts)]}_{path.name}")
    for name, data in skimage_data(fetch_skimage):
        if name in SKIMAGE_FUNDUS or name in SKIMAGE_SKIP or Path(name).suffix.lower() not in RASTER:
            continue
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if decoded is not None and min(decoded.shape[:2]) >= 32:
            writer.save("package-samples", f"skimage_{Path(name).stem}", decoded[..., ::-1])


def skimage_data(fetch: bool) -> Iterator[tuple[str, bytes]]:
    """(file name, bytes) of scikit-image's bundled data: from the installed package, or from its wheel."""
    try:
        import skimage.data as data_module

        folder = Path(data_module.__file__).parent
        for path in sorted(folder.iterdir()):
            yield path.name, path.read_bytes()
        return
    except ImportError:
        pass
    wheels = sorted(WHEELS.glob("scikit_image-*.whl"))
    if not wheels and fetch:
        WHEELS.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                        "scikit-image", "-d", str(WHEELS)], check=False)
        wheels = sorted(WHEELS.glob("scikit_image-*.whl"))
    if not wheels:
        print("package-samples: scikit-image's data left out (not installed; --skimage fetches its wheel)", file=sys.stderr)
        return
    with zipfile.ZipFile(wheels[-1]) as wheel:
        for info in sorted(wheel.infolist(), key=lambda i: i.filename):
            if info.filename.startswith("skimage/data/") and info.filename.count("/") == 2:
                yield Path(info.filename).name, wheel.read(info)


def skimage_retina(fetch: bool = False) -> np.ndarray | None:
    """scikit-image's retina.jpg (a colour fundus photograph from another camera) as RGB, where available."""
    for name, data in skimage_data(fetch):
        if name == "retina.jpg":
            return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1].copy()
    return None


def to_uint8(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    low, high = np.percentile(values, [0.5, 99.5])
    return (np.clip((values - low) / max(high - low, 1e-9), 0, 1) * 255).astype(np.uint8)


def dicom_images(writer: Writer) -> None:
    import pydicom
    shipped = Path(pydicom.__file__).parent / "data" / "test_files"  # on disk: pydicom's own finder may download more
    files = sorted(glob.glob(f"{shipped}/**/*.dcm", recursive=True)) + sorted(glob.glob("/usr/share/doc/dicom3tools/**/*.dcm", recursive=True))
    for file in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dataset = pydicom.dcmread(file)
                pixels = dataset.pixel_array
        except Exception:  # noqa: BLE001 - many test files are deliberately broken or need codecs
            continue
        photometric = str(dataset.get("PhotometricInterpretation", ""))
        if pixels.ndim == 4 or (pixels.ndim == 3 and not photometric.startswith(("RGB", "YBR", "PALETTE"))):
            pixels = pixels[len(pixels) // 2]
        if min(pixels.shape[:2]) < 48:
            continue
        if pixels.ndim == 3 and pixels.shape[-1] == 3:
            rgb = to_uint8(pixels)  # pydicom hands YBR data over as RGB
        elif pixels.ndim == 2:
            grey = to_uint8(pixels)
            if photometric == "MONOCHROME1":
                grey = 255 - grey
            rgb = np.repeat(grey[..., None], 3, axis=2)
        else:
            continue
        writer.save("dicom", Path(file).stem, rgb)


APP_PAGE = """<!doctype html><html><head><style>
body {{ font-family: sans-serif; margin: 0; background: {background}; color: {colour}; }}
header {{ background: {header}; color: white; padding: 14px 24px; font-size: 22px; }}
nav {{ float: left; width: 220px; height: 100vh; background: {nav}; padding: 12px; }}
nav a {{ display: block; padding: 8px; color: {colour}; }}
main {{ margin-left: 260px; padding: 20px; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #999; padding: 6px 12px; }}
button {{ background: {header}; color: white; border: 0; padding: 10px 18px; border-radius: 6px; }}
.card {{ display: inline-block; width: 260px; height: 140px; margin: 10px; border-radius: 8px; background: {card}; padding: 10px; }}
</style></head><body><header>Clinic dashboard: patients and appointments</header>
<nav>{links}</nav><main><h2>Today</h2><div class="card">Appointments: 24</div><div class="card">Photographs: 61</div>
<div class="card">Referrals: 3</div><h2>Patients</h2><table><tr><th>Name</th><th>Date</th><th>Eye</th><th>Status</th></tr>{rows}</table>
<p><input placeholder="Search" size="40"> <button>Upload</button> <button>Export</button></p></main></body></html>"""


def screenshots(writer: Writer, limit: int = 24) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        print("screenshots: left out (no chromium)", file=sys.stderr)
        return
    pages = sorted(glob.glob("/usr/share/doc/**/*.html", recursive=True))
    step = max(1, len(pages) // limit)
    chosen = [Path(p) for p in pages[::step][:limit]]
    with tempfile.TemporaryDirectory() as tmp:
        themes = [("#f4f6f8", "#222", "#1f6feb", "#e1e4e8", "white"), ("#16181d", "#ddd", "#b3541e", "#22252b", "#2c3038")]
        for index, (background, colour, header, nav, card) in enumerate(themes):
            links = "".join(f"<a>Menu item {i}</a>" for i in range(1, 12))
            rows = "".join(f"<tr><td>Patient {i:03d}</td><td>2024-0{1 + i % 9}-1{i % 10}</td><td>{'LR'[i % 2]}</td>"
                           f"<td>{'done' if i % 3 else 'waiting'}</td></tr>" for i in range(14))
            page = Path(tmp) / f"app_{index}.html"
            page.write_text(APP_PAGE.format(background=background, colour=colour, header=header, nav=nav, card=card,
                                            links=links, rows=rows))
            chosen.append(page)
        for index, page in enumerate(chosen):
            size = ("1280,800", "1920,1080", "1024,1366")[index % 3]
            shot = Path(tmp) / "shot.png"
            try:
                subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                f"--screenshot={shot}", f"--window-size={size}", page.resolve().as_uri()],
                               capture_output=True, timeout=60, check=False)
            except subprocess.TimeoutExpired:
                continue
            image = cv2.imread(str(shot), cv2.IMREAD_COLOR)
            if image is not None:
                writer.save("screenshots", f"{index:02d}_{page.stem}", image[..., ::-1])
            shot.unlink(missing_ok=True)


def _figure_to_rgb(fig) -> np.ndarray:
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    import matplotlib.pyplot as plt

    plt.close(fig)
    return rgb


def documents(writer: Writer, rng: np.random.Generator) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    texts = [cv2.__doc__ or "", np.__doc__ or "", argparse.__doc__ or "", zipfile.__doc__ or "", textwrap.__doc__ or "",
             subprocess.__doc__ or "", __doc__ or ""]
    words = " ".join(texts).split()
    for index in range(12):
        start = int(rng.integers(0, max(1, len(words) - 400)))
        paragraph = textwrap.fill(" ".join(words[start : start + 420]), 80)
        fig = plt.figure(figsize=(8.27, 11.69), dpi=(100, 150)[index % 2])
        fig.text(0.08, 0.95, f"Report {index + 1}", fontsize=18, weight="bold", va="top")
        fig.text(0.08, 0.9, paragraph, fontsize=9, va="top", family=("serif", "sans-serif", "monospace")[index % 3])
        page = _figure_to_rgb(fig)
        if index % 4 == 3:  # a scanned or photographed page: tilted, grey-yellow paper, noise, dark margin
            h, w = page.shape[:2]
            matrix = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-4, 4)), 0.9)
            page = cv2.warpAffine(page, matrix, (w, h), borderValue=(40, 40, 40))
            page = np.clip(page * np.array([0.92, 0.88, 0.75]) + rng.normal(0, 6, page.shape), 0, 255).astype(np.uint8)
        writer.save("documents", f"text_page_{index:02d}", page)
    for index in range(6):
        fig, ax = plt.subplots(figsize=(10, 6), dpi=100)
        ax.set_axis_off()
        cells = [[f"{rng.uniform(0, 100):.1f}" for _ in range(6)] for _ in range(18)]
        table = ax.table(cellText=cells, colLabels=[f"column {c}" for c in range(6)], loc="center")
        table.scale(1, 1.3)
        writer.save("documents", f"table_{index:02d}", _figure_to_rgb(fig))
    kinds = ["line", "bar", "scatter", "heatmap", "hist", "pie", "polar", "image"]
    for index in range(16):
        kind = kinds[index % len(kinds)]
        fig = plt.figure(figsize=(8, 6), dpi=100)
        ax = fig.add_subplot(projection="polar" if kind == "polar" else None)
        x = np.linspace(0, 10, 200)
        if kind == "line":
            for k in range(4):
                ax.plot(x, np.sin(x * (k + 1) / 3) + rng.normal(0, 0.1, x.size))
        elif kind == "bar":
            ax.bar(range(12), rng.uniform(1, 10, 12), color=plt.cm.autumn(np.linspace(0, 1, 12)))
        elif kind == "scatter":
            ax.scatter(*rng.normal(size=(2, 300)), c=rng.uniform(size=300), cmap="hot")
        elif kind == "heatmap":
            yy, xx = np.mgrid[-1:1:300j, -1:1:300j]
            field = np.exp(-(xx**2 + yy**2) * 3) + 0.1 * rng.normal(size=xx.shape)
            ax.imshow(field, cmap=("afmhot", "inferno", "gray", "magma")[index // len(kinds) % 4])
        elif kind == "hist":
            ax.hist(rng.normal(size=2000), bins=40, color="#c0502a")
        elif kind == "pie":
            ax.pie(rng.uniform(1, 5, 6))
        elif kind == "polar":
            ax.plot(x, 1 + np.sin(3 * x))
        else:
            yy, xx = np.mgrid[-1:1:400j, -1:1:400j]
            ax.imshow(np.sin(8 * xx) * np.cos(6 * yy) * (xx**2 + yy**2 < 0.8), cmap="copper")
        ax.set_title(f"Figure {index}: {kind}")
        writer.save("documents", f"chart_{index:02d}_{kind}", _figure_to_rgb(fig))


ORANGE = (150, 60, 20)


def _disc(size: tuple[int, int], radius: float, colour, shade: float = 0.0, noise: float = 0.0,
          rng: np.random.Generator | None = None, centre: tuple[float, float] | None = None) -> np.ndarray:
    h, w = size
    cy, cx = centre or ((h - 1) / 2, (w - 1) / 2)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    r = np.hypot(xx - cx, yy - cy) / radius
    level = np.clip(1 - shade * r**2, 0, 1)[..., None] * np.array(colour, np.float32)
    if noise and rng is not None:
        level = level + rng.normal(0, noise, level.shape)
    image = np.where((r <= 1)[..., None], level, 0)
    return np.clip(image, 0, 255).astype(np.uint8)


def synthetic(writer: Writer, rng: np.random.Generator) -> None:
    flat = {"orange": ORANGE, "fundus_red": (190, 80, 30), "black": (0, 0, 0), "white": (255, 255, 255),
            "grey": (128, 128, 128), "dark_grey": (30, 30, 30), "blue": (30, 60, 200), "green": (40, 160, 60),
            "skin": (224, 172, 140), "brown": (120, 70, 40), "yellow": (230, 200, 40), "purple": (120, 40, 140)}
    for name, colour in flat.items():
        writer.save("synthetic", f"flat_{name}", np.full((600, 800, 3), colour, np.uint8))
    writer.save("synthetic", "flat_orange_64x64", np.full((64, 64, 3), (230, 120, 40), np.uint8))
    writer.save("synthetic", "flat_orange_square_1024", np.full((1024, 1024, 3), (230, 120, 40), np.uint8))
    for index in range(6):
        h, w = (480, 640) if index % 2 else (1200, 1600)
        writer.save("synthetic", f"noise_uniform_{index}", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        grey = rng.integers(0, 256, (h, w), dtype=np.uint8)
        writer.save("synthetic", f"noise_grey_{index}", np.repeat(grey[..., None], 3, 2))
        smooth = cv2.GaussianBlur(rng.normal(0, 1, (h, w, 3)).astype(np.float32), (0, 0), 3 + 6 * index)
        writer.save("synthetic", f"noise_smooth_{index}", to_uint8(smooth))
        warm = np.clip(np.array(ORANGE, np.float32) * (1 + 0.3 * smooth / (smooth.std() + 1e-6)), 0, 255)
        writer.save("synthetic", f"noise_warm_{index}", warm.astype(np.uint8))
    for index, (a, b) in enumerate([((0, 0, 0), (255, 255, 255)), (ORANGE, (250, 200, 120)), ((10, 20, 80), (200, 220, 255)),
                                     ((0, 0, 0), ORANGE), ((60, 10, 0), (255, 140, 60))]):
        t = np.linspace(0, 1, 1000, dtype=np.float32)[None, :, None]
        linear = (np.array(a) * (1 - t) + np.array(b) * t).repeat(700, axis=0)
        writer.save("synthetic", f"gradient_linear_{index}", linear.astype(np.uint8))
        yy, xx = np.mgrid[-1:1:800j, -1:1:1000j]
        r = np.clip(np.hypot(xx, yy * 0.8), 0, 1)[..., None]
        writer.save("synthetic", f"gradient_radial_{index}", (np.array(b) * (1 - r) + np.array(a) * r).astype(np.uint8))
    for index, cells in enumerate((8, 32)):
        board = (np.indices((cells, cells)).sum(0) % 2 * 255).astype(np.uint8)
        writer.save("synthetic", f"checkerboard_{cells}", cv2.resize(np.repeat(board[..., None], 3, 2), (800, 800),
                                                                   interpolation=cv2.INTER_NEAREST))
    # bright discs on black: what a fundus photograph's outline looks like, without the retina
    colours = [ORANGE, (200, 90, 40), (230, 120, 40), (120, 120, 120), (200, 200, 200), (180, 60, 60), (220, 160, 60)]
    for index in range(14):
        colour = colours[index % len(colours)]
        h, w = ((700, 1000), (1152, 1500), (2848, 4288), (900, 900))[index % 4]
        radius = min(h, w) * float(rng.uniform(0.4, 0.55))
        image = _disc((h, w), radius, colour, shade=(0, 0.4, 0.7)[index % 3], noise=(0, 4, 12)[index % 3], rng=rng)
        writer.save("synthetic", f"disc_on_black_{index:02d}", image)
    # X-ray-like grey images: a bright body with dark lungs and rib arcs, smooth blobs, a skull-like ring
    for index in range(6):
        h, w = 1000, 900
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        body = np.exp(-(((xx - w / 2) / (w * 0.42)) ** 6 + ((yy - h / 2) / (h * 0.55)) ** 6)) * 200
        for side in (-1, 1):
            lung = np.exp(-(((xx - w / 2 - side * w * 0.18) / (w * 0.13)) ** 2 + ((yy - h * 0.45) / (h * 0.25)) ** 2))
            body -= 120 * lung
        ribs = 25 * (np.sin(yy / (18 + 3 * index) + 0.002 * (xx - w / 2) ** 2 / 40) > 0.7)
        image = np.clip(body + ribs + cv2.GaussianBlur(rng.normal(0, 8, (h, w)).astype(np.float32), (0, 0), 2), 0, 255)
        grey = image.astype(np.uint8)
        if index % 2:
            grey = 255 - grey
        writer.save("synthetic", f"xray_like_{index}", np.repeat(grey[..., None], 3, 2))
    for index in range(4):
        yy, xx = np.mgrid[-1:1:900j, -1:1:900j]
        ring = np.exp(-((np.hypot(xx, yy * 1.2) - 0.75) / 0.05) ** 2) * 230 + (np.hypot(xx, yy * 1.2) < 0.75) * 90
        blobs = cv2.GaussianBlur(rng.normal(0, 30, (900, 900)).astype(np.float32), (0, 0), 12) * (np.hypot(xx, yy * 1.2) < 0.75)
        grey = np.clip(ring + blobs, 0, 255).astype(np.uint8)
        writer.save("synthetic", f"skull_like_{index}", np.repeat(grey[..., None], 3, 2))
    for index, cmap in enumerate(("hot", "afmhot", "copper", "gray", "inferno", "YlOrRd")):
        import matplotlib

        field = cv2.GaussianBlur(rng.normal(0, 1, (700, 900)).astype(np.float32), (0, 0), 10 + 5 * index)
        colours = matplotlib.colormaps[cmap]((field - field.min()) / (np.ptp(field) + 1e-9))[..., :3]
        writer.save("synthetic", f"colourmap_{cmap}", (colours * 255).astype(np.uint8))


def photo_variants(writer: Writer, corpus: Path) -> None:
    """Grey (one channel replicated, like a red-free copy), warm-tinted and central-crop copies of the photographs."""
    photos = [p for p in sorted((corpus / "package-samples").glob("*"))
              if any(k in p.name for k in ("sklearn_", "grace_hopper", "astronaut", "chelsea", "coffee", "rocket",
                                           "motorcycle_left", "brick", "grass", "gravel", "hubble", "moon", "coins"))]
    photos += sorted((corpus / "debian-wallpapers").glob("*mate*nature*"))[:6]
    for path in photos:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        rgb = image[..., ::-1]
        stem = path.stem.replace(".", "_")
        writer.save("photo-variants", f"{stem}_grey", np.repeat(rgb[..., 1:2], 3, 2))
        warm = rgb.astype(np.float32).mean(2, keepdims=True) * np.array([1.25, 0.6, 0.2])
        writer.save("photo-variants", f"{stem}_warm", np.clip(warm, 0, 255).astype(np.uint8))
        h, w = rgb.shape[:2]
        writer.save("photo-variants", f"{stem}_crop", rgb[h // 5 : h - h // 5, w // 5 : w - w // 5])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data.non_fundus_corpus", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"corpus folder (default {DEFAULT_OUT})")
    parser.add_argument("--apt", action="store_true", help="apt-get install the Debian wallpaper packages first")
    parser.add_argument("--skimage", action="store_true", help="pip download scikit-image's wheel for its sample images")
    parser.add_argument("--no-screenshots", action="store_true", help="leave out the chromium screenshots")
    args = parser.parse_args(argv)
    if args.apt:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *DEBIAN_PACKAGES], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if args.out.exists():
        shutil.rmtree(args.out)
    writer = Writer(args.out)
    rng = np.random.default_rng(20)
    debian_wallpapers(writer)
    system_images(writer)
    package_samples(writer, args.skimage)
    dicom_images(writer)
    if not args.no_screenshots:
        screenshots(writer)
    documents(writer, rng)
    synthetic(writer, rng)
    photo_variants(writer, args.out)
    for source, count in sorted(writer.counts.items()):
        print(f"{source}: {count}")
    print(f"{sum(writer.counts.values())} images in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
