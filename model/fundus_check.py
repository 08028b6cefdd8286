"""Is this upload a colour fundus photograph at all? A fast check before any lesion is reported.

A fundus photograph is the retina seen through the pupil: a bright disc (the camera's field of
view) on a black surround, often cut by the frame or cropped into; inside it a smooth, vignetted
red-orange field (grey in a red-free or monochrome copy) crossed by a tree of thin *dark* vessels
that run in every direction, with a bright optic disc and a darker fovea, few sharp edges, no flat
areas, no black holes, little that is saturated and little pixel grain. The check measures these
(``FEATURES``) on a copy of at most ``SHRINK_LONG_SIDE`` pixels, resampled by the disc it finds
(``model.fov.detect_disc``). Three gates come first (``failed_gate``: the colours, lines that run in
one direction, neither vessels nor an optic disc); a logistic regression fitted by
``python -m training.evaluation.fundus_check --fit`` (on IDRiD's segmentation photographs, their
variants and augmented copies against half of a non-fundus corpus; its coefficients are the
constants below) weighs the rest. ``docs/fundus-check/report.md`` has its measured acceptance and
refusal rates. It judges only *what* the image is: whether a fundus photograph is good enough to
grade is the separate gradable rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from model.fov import FOV_RED_THRESHOLD, Disc, detect_disc

SHRINK_LONG_SIDE = 512
"""The image is first shrunk to at most this long side (every n-th pixel to about twice that, then an area average)."""
VIEW_DIAMETER = 384
"""The disc is resampled to this many pixels across before its texture is measured."""
LINE_SIGMA = 1.5
"""Scale, in view pixels, at which thin lines are told from blobs (Hessian eigenvalues)."""
VESSEL_KERNEL = 11
"""Side of the closing that fills the vessels (in view pixels: about 3 % of the disc, twice a main vessel's width)."""
MIN_FILL = 0.6
"""A found disc less bright inside than this share is the rim of a dark patch: the image is judged whole."""
MIN_SURROUND = 0.5
"""Nor is a found disc with less than this share of the image around it dark."""
MIN_SIDE = 32
"""An image with a shorter side than this is too small to be judged (and is refused as not a fundus)."""

FEATURES = (
    "colour",
    "grey",
    "red_share",
    "surround",
    "fill",
    "vessel_contrast",
    "bright_contrast",
    "line_balance",
    "vessel_span",
    "vessel_area",
    "line_order",
    "edges",
    "strong_edges",
    "flat",
    "holes",
    "saturated",
    "optic_disc",
    "fovea",
    "grain",
)
"""The features the logistic regression weighs, in its order."""


@dataclass(frozen=True)
class FundusCheck:
    """The check's answer for one image."""

    is_fundus: bool
    score: float
    """Probability-like score in 0..1 that the image is a colour fundus photograph; ``is_fundus`` is score >= THRESHOLD."""
    reason: str | None
    """Why it is not one, in a few words for a person (None when it is one)."""
    features: dict[str, float]
    """The measured features (for validation and debugging)."""


def _shrink(image: np.ndarray, long_side: int) -> np.ndarray:
    """At most ``long_side`` pixels on the long side: every n-th pixel to twice that, then a 2x2 area average."""
    height, width = image.shape[:2]
    scale = min(1.0, long_side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):
        return np.ascontiguousarray(image)
    if width >= 4 * size[0] and height >= 4 * size[1]:
        image = cv2.resize(image, (2 * size[0], 2 * size[1]), interpolation=cv2.INTER_NEAREST)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _masked_blur(values: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian average of ``values`` over ``mask`` (normalised convolution)."""
    weight = cv2.GaussianBlur(mask, (0, 0), sigma)
    blurred = cv2.GaussianBlur(values * mask, (0, 0), sigma)
    return blurred / np.maximum(weight, 1e-3)


def _hessian(level: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Second derivatives (xx, yy, xy) of ``level`` smoothed at ``sigma``."""
    smooth = cv2.GaussianBlur(level, (0, 0), sigma)
    # OpenCV's 3x3 derivative kernels weigh 4 times
    return tuple(cv2.Sobel(smooth, cv2.CV_32F, dx, dy, ksize=3) / 4 for dx, dy in ((2, 0), (0, 2), (1, 1)))


def _brightest(image: np.ndarray) -> np.ndarray:
    return cv2.max(cv2.max(image[..., 0], image[..., 1]), image[..., 2])


def _darkest(image: np.ndarray) -> np.ndarray:
    return cv2.min(cv2.min(image[..., 0], image[..., 1]), image[..., 2])


def _disc_fill_and_surround(small: np.ndarray, bright: np.ndarray, disc: Disc) -> tuple[float, float]:
    """Share of the disc (within the image) that is bright; share of the image outside it that is dark (0 when
    no disc was found, or too little of the image lies outside it)."""
    height, width = small.shape[:2]
    dy = (np.arange(height, dtype=np.float32)[:, None] - disc.cy) ** 2
    dx = (np.arange(width, dtype=np.float32)[None, :] - disc.cx) ** 2
    distance2 = (dx + dy) / max(disc.radius, 1.0) ** 2
    inside, outside = distance2 <= 0.97**2, distance2 >= 1.05**2
    fill = float(bright[inside].mean()) if inside.any() else 0.0
    if not disc.found or outside.sum() < 0.02 * outside.size:
        return fill, 0.0
    return fill, float((_brightest(small)[outside] < 2 * FOV_RED_THRESHOLD).mean())


def shrink(image: np.ndarray) -> np.ndarray:
    """The copy of an RGB uint8 image that the features are measured on (at most ``SHRINK_LONG_SIDE`` pixels)."""
    return _shrink(image, SHRINK_LONG_SIDE)


def fundus_features(image: np.ndarray) -> dict[str, float]:
    """The check's features of an RGB uint8 (H, W, 3) image of at least ``MIN_SIDE`` pixels a side."""
    return shrunk_features(shrink(image))


def shrunk_features(small: np.ndarray) -> dict[str, float]:
    """The check's features of an image's ``shrink`` copy."""
    disc, fill, surround = _judged_disc(small)
    view, interior, mask = _view(small, disc)
    green = view[..., 1]
    relative = np.where(interior, green / np.maximum(_masked_blur(green, mask, VIEW_DIAMETER / 24), 4.0), 1.0)
    relative = relative.astype(np.float32)  # texture on the green channel (the vessels' best contrast), relative to its local mean
    values = {"surround": surround, "fill": fill}
    values |= _colour(view, interior)
    dark, texture = _contrast(relative, interior)
    values |= texture
    values |= _vessel_tree(relative, interior, dark)
    values |= _edges(relative, interior)
    values |= _optic_disc_and_fovea(green, interior, mask)
    fine = relative - cv2.GaussianBlur(relative, (0, 0), 1.0)  # grain: the finest scale's share of the texture
    middle = cv2.GaussianBlur(relative, (0, 0), 1.0) - cv2.GaussianBlur(relative, (0, 0), 4.0)
    values["grain"] = float(fine[interior].std() / max(float(middle[interior].std()), 1e-4))
    values["holes"] = float((relative[interior] < 0.4).mean())
    values["saturated"] = float(((green >= 250) | (_darkest(view) >= 250))[interior].mean())
    return {name: values[name] for name in FEATURES}


def _judged_disc(small: np.ndarray) -> tuple[Disc, float, float]:
    """The disc, its fill and its dark surround. A found disc that is not bright inside, or not dark around, is
    the rim of a dark patch in a crop: the image is then judged whole."""
    height, width = small.shape[:2]
    disc = detect_disc(small)
    bright = cv2.medianBlur(np.ascontiguousarray(small[..., 0]), 5) > FOV_RED_THRESHOLD
    fill, surround = _disc_fill_and_surround(small, bright, disc)
    if disc.found and (fill < MIN_FILL or surround < MIN_SURROUND):
        disc = Disc((width - 1) / 2, (height - 1) / 2, math.hypot(height, width) / 2, found=False)
        fill, surround = _disc_fill_and_surround(small, bright, disc)
    return disc, fill, surround


def _view(small: np.ndarray, disc: Disc) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The disc's bounding square cut by the frame, resampled to ``VIEW_DIAMETER`` across (float32 RGB); the
    field's interior inside the disc, as bool and as float weights."""
    height, width = small.shape[:2]
    scale = VIEW_DIAMETER / max(disc.diameter, 1.0)
    top, bottom = max(0, math.floor(disc.cy - disc.radius)), min(height, math.ceil(disc.cy + disc.radius) + 1)
    left, right = max(0, math.floor(disc.cx - disc.radius)), min(width, math.ceil(disc.cx + disc.radius) + 1)
    box = small[top:bottom, left:right].astype(np.float32)
    size = (max(16, round((right - left) * scale)), max(16, round((bottom - top) * scale)))
    view = cv2.resize(box, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    field = cv2.medianBlur(np.clip(view[..., 0], 0, 255).astype(np.uint8), 5) > FOV_RED_THRESHOLD
    vy = (np.arange(size[1], dtype=np.float32)[:, None] + 0.5) / scale + top - 0.5 - disc.cy
    vx = (np.arange(size[0], dtype=np.float32)[None, :] + 0.5) / scale + left - 0.5 - disc.cx
    in_disc = vx**2 + vy**2 <= (0.92 * disc.radius) ** 2
    erode = max(3, round(0.03 * VIEW_DIAMETER) | 1)
    interior = cv2.erode(field.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (erode, erode))) > 0
    interior &= in_disc
    if interior.sum() < 0.05 * interior.size:  # no bright field: judge the disc (or the whole view) as it is
        interior = in_disc if in_disc.sum() >= 0.05 * in_disc.size else np.ones_like(in_disc)
    return view, interior, interior.astype(np.float32)


def _colour(view: np.ndarray, interior: np.ndarray) -> dict[str, float]:
    """A red-orange field (R >= G >= B, red dominant), or grey (a red-free or monochrome copy)."""
    red, green, blue = view[..., 0], view[..., 1], view[..., 2]
    highest, lowest = _brightest(view), _darkest(view)
    total = red + green + blue + 1.0
    grey_pixels = (highest - lowest) < 0.08 * (highest + 1.0)
    warm_pixels = (red >= green - 4) & (green >= blue - 4) & (red > 0.42 * total) & ~grey_pixels
    grey = float(grey_pixels[interior].mean())
    return {"colour": max(grey, float(warm_pixels[interior].mean())), "grey": grey,
            "red_share": float((red / total)[interior].mean())}


def _contrast(relative: np.ndarray, interior: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Thin dark (top-hat of the closing) and thin bright structures: the dark one's values, and the features."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (VESSEL_KERNEL, VESSEL_KERNEL))
    dark = (cv2.morphologyEx(relative, cv2.MORPH_CLOSE, kernel) - relative)[interior]
    light = (relative - cv2.morphologyEx(relative, cv2.MORPH_OPEN, kernel))[interior]
    vessel_contrast = float(np.partition(dark, int(0.9 * (dark.size - 1)))[int(0.9 * (dark.size - 1))])
    bright_contrast = float(np.partition(light, int(0.9 * (light.size - 1)))[int(0.9 * (light.size - 1))])
    dark_mean, light_mean = float(dark.mean()), float(light.mean())
    return dark, {
        "vessel_contrast": math.log10(vessel_contrast + 0.003),
        "bright_contrast": math.log10(bright_contrast + 0.003),
        "line_balance": (dark_mean - light_mean) / (dark_mean + light_mean + 0.003),
    }


def _vessel_tree(relative: np.ndarray, interior: np.ndarray, dark: np.ndarray) -> dict[str, float]:
    """Dark, thin, line-like structures that reach far, in every direction."""
    dxx, dyy, dxy = _hessian(relative, LINE_SIGMA)
    half_trace, root = (dxx + dyy) / 2, np.sqrt(((dxx - dyy) / 2) ** 2 + dxy**2)
    large, small_eigen = half_trace + root, half_trace - root
    dark_line = (large > 0.01 / LINE_SIGMA**2) & (np.abs(small_eigen) < 0.35 * large) & interior
    dark_full = np.zeros(interior.shape, np.float32)
    dark_full[interior] = dark
    lines = (dark_line & (dark_full > 0.04)).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(lines, connectivity=8)
    span = np.hypot(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]).astype(np.float64) / VIEW_DIAMETER
    area = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    weight = float(2 * root[lines > 0].sum())
    line_order = math.hypot(float((dxx - dyy)[lines > 0].sum()), float(2 * dxy[lines > 0].sum())) / max(weight, 1e-6)
    return {"vessel_span": float(span.max()) if n > 1 else 0.0,
            "vessel_area": float(area[span >= 0.15].sum() / float(interior.sum())), "line_order": line_order}


def _edges(relative: np.ndarray, interior: np.ndarray) -> dict[str, float]:
    gx = cv2.Sobel(relative, cv2.CV_32F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(relative, cv2.CV_32F, 0, 1, ksize=3) / 8
    gradient = cv2.magnitude(gx, gy)[interior]
    return {"edges": math.log10(float(np.median(gradient)) + 0.001), "strong_edges": float((gradient > 0.15).mean()),
            "flat": float((gradient < 0.002).mean())}


def _optic_disc_and_fovea(green: np.ndarray, interior: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The optic disc (a bright spot about a seventh of the disc across) and the fovea (a darker one), against
    the field's brightness at a larger scale; measured at a quarter of the view's size."""
    quarter = (max(4, green.shape[1] // 4), max(4, green.shape[0] // 4))
    green_q = cv2.resize(np.where(interior, green, 0).astype(np.float32), quarter, interpolation=cv2.INTER_AREA)
    mask_q = cv2.resize(mask, quarter, interpolation=cv2.INTER_AREA)
    spot = _masked_blur(green_q, mask_q, VIEW_DIAMETER / 4 / 60)
    field_level = _masked_blur(green_q, mask_q, VIEW_DIAMETER / 4 / 8)
    ratio = spot / np.maximum(field_level, 4.0)
    core = mask_q > 0.99
    return {"optic_disc": float(ratio[core].max() - 1) if core.any() else 0.0,
            "fovea": float(1 - ratio[core].min()) if core.any() else 0.0}


FEATURES_VERSION = 4
"""Bumped whenever a feature's definition changes (cached features of older versions are recomputed)."""

THRESHOLD = 0.5
"""Scores at or above this are fundus photographs."""

QUADRATIC = ("red_share", "vessel_contrast", "bright_contrast", "vessel_area", "edges", "optic_disc", "grain")
"""Features that a fundus photograph holds within a band (too little and too much both speak against it): they
also enter the regression squared, with a weight that is never positive."""

LOGARITHMIC: dict[str, float] = {"vessel_area": 0.003, "strong_edges": 0.001, "flat": 0.001, "holes": 0.001,
                                 "saturated": 0.001}
"""Shares that are near 0 in a fundus photograph enter the regression as log10(share + this)."""

MIN_COLOUR = 0.3
"""A colour fundus photograph is red-orange (R >= G >= B) or, as a red-free or monochrome copy, grey: at least this
share of its field is one or the other (the real photographs and their variants: 0.90 and more). A copy with its
channels swapped (BGR) is not one."""
MAX_LINE_ORDER = 0.6
"""A vessel tree runs in every direction: lines more ordered than this (stripes, ribs, text) are not one. The most
that the real photographs and their variants show is 0.37 (a copy of IDRiD grading's IDRiD_081)."""
MIN_ORDERED_LINES = 0.02
"""The order of the lines is judged only where they cover at least this share (``vessel_area``): the few lines left
in a blurred photograph may run one way by chance."""
MIN_VESSEL_AREA = 0.003
MIN_OPTIC_DISC = 0.12
"""A fundus photograph shows its vessels (``vessel_area`` at least this) or its optic disc (``optic_disc`` at
least this), or both. Hazy photographs show few vessels (IDRiD grading's IDRiD_031: none measured, optic disc
0.23); crops may leave the optic disc out; a plain or noisy disc, a dark star field, show neither."""

COEFFICIENTS: dict[str, tuple[float, float, float, float]] = {
    "colour": (0.773495, 0.372005, 1.07275, 0),
    "grey": (0.42813, 0.465944, -0.388436, 0),
    "red_share": (0.424767, 0.159468, 1.81993, -0.768947),
    "surround": (0.372363, 0.476273, 1.04784, 0),
    "fill": (0.903374, 0.203329, 1.10407, 0),
    "vessel_contrast": (-1.12328, 0.610736, 0.557416, -0.346238),
    "bright_contrast": (-1.14233, 0.604277, -0.429079, -0.978092),
    "line_balance": (0.0184095, 0.198408, 0.731471, 0),
    "vessel_span": (0.478264, 0.320793, 0.301171, 0),
    "vessel_area": (-1.57284, 0.577153, 0.730117, -0.169534),
    "line_order": (0.259347, 0.294608, -1.09307, 0),
    "edges": (-1.96228, 0.537073, 0.100756, -0.492102),
    "strong_edges": (-1.84775, 0.785464, -1.18652, 0),
    "flat": (-1.27736, 0.83678, -1.1484, 0),
    "holes": (-2.5456, 0.725526, -1.01802, 0),
    "saturated": (-2.35345, 1.07559, -1.24511, 0),
    "optic_disc": (0.537888, 0.5232, 1.52229, -0.666913),
    "fovea": (0.370776, 0.230424, -2.67028, 0),
    "grain": (0.578693, 0.395176, -1.34938, -1.71964),
}
"""Per feature: (mean, scale, weight, weight of the square) of the logistic regression on standardised features."""
BIAS = -1.07522


def regression_inputs(features: dict[str, float]) -> dict[str, float]:
    """The features as the regression takes them (``LOGARITHMIC``'s as logarithms)."""
    return {name: math.log10(value + LOGARITHMIC[name]) if name in LOGARITHMIC else value for name, value in features.items()}


def failed_gate(features: dict[str, float]) -> str | None:
    """Why these features cannot be a fundus photograph's, whatever the regression says, or None."""
    if features["colour"] < MIN_COLOUR:
        return "its colours are not a retina's (red-orange, or grey in a red-free copy)"
    if features["line_order"] > MAX_LINE_ORDER and features["vessel_area"] >= MIN_ORDERED_LINES:
        return "its lines run in one direction (stripes, ribs, text), not a vessel tree"
    if features["vessel_area"] < MIN_VESSEL_AREA and features["optic_disc"] < MIN_OPTIC_DISC:
        return "neither retinal vessels nor an optic disc"
    return None


def regression_score(features: dict[str, float]) -> float:
    """The logistic regression's probability that features like these come from a fundus photograph."""
    inputs = regression_inputs(features)
    logit = BIAS
    for name, (mean, scale, weight, square) in COEFFICIENTS.items():
        z = (inputs[name] - mean) / scale
        logit += weight * z + square * z * z
    return 1 / (1 + math.exp(-min(max(logit, -60.0), 60.0)))


def score_features(features: dict[str, float]) -> float:
    """The check's score: the regression's, or 0 where ``failed_gate`` says why it cannot be one."""
    return 0.0 if failed_gate(features) else regression_score(features)


REASONS: dict[str, tuple[str, str]] = {
    "colour": ("its colours are not a retina's (red-orange, or grey in a red-free copy)", "its colours"),
    "grey": ("its colours", "it is grey"),
    "red_share": ("it is not red enough for a retina", "it is too red for a retina"),
    "surround": ("no field-of-view disc on a dark surround", "its dark surround"),
    "fill": ("no bright field of view filling a disc", "a bright field filling a disc"),
    "vessel_contrast": ("no retinal vessels", "far more contrast than a retina"),
    "bright_contrast": ("too little texture for a retina", "bright lines and spots that a retina does not have"),
    "line_balance": ("as many bright lines as dark ones (a retina's vessels are dark)", "its dark lines"),
    "vessel_span": ("no vessel tree (no long, thin dark lines)", "long dark lines"),
    "vessel_area": ("too few vessels", "too many long dark lines for a retina"),
    "line_order": ("lines in every direction", "lines that run in one direction (stripes, ribs, text), not a vessel tree"),
    "edges": ("too smooth for a retina", "far more edges than a retina"),
    "strong_edges": ("too few sharp edges", "sharp edges that a retina does not have"),
    "flat": ("too little flat area", "flat areas of one colour, as in a drawing or a screenshot"),
    "holes": ("no dark holes", "black holes inside the field"),
    "saturated": ("no saturated areas", "large white or saturated areas"),
    "optic_disc": ("no optic disc (a bright spot)", "a bright spot far brighter than an optic disc"),
    "fovea": ("no fovea (a darker spot)", "a dark spot far darker than a fovea"),
    "grain": ("too smooth at the finest scale for a photograph", "grain or noise rather than a retina's texture"),
}
"""Per feature, what to tell a person when it speaks against a fundus photograph: (too low, too high)."""


def _reason(features: dict[str, float]) -> str:
    """The two features that speak most against a fundus photograph, in words."""
    gate = failed_gate(features)
    if gate:
        return gate
    inputs = regression_inputs(features)
    against = []
    for name, (mean, scale, weight, square) in COEFFICIENTS.items():
        z = (inputs[name] - mean) / scale
        contribution = weight * z + square * z * z
        if contribution < 0:
            slope = weight + 2 * square * z  # which way the feature would have to move to speak for a fundus
            against.append((contribution, REASONS[name][0 if slope > 0 else 1]))
    against.sort()
    words = list(dict.fromkeys(text for _, text in against[:2]))
    return "; ".join(words) if words else "it does not look like one"


def check_fundus(image: np.ndarray) -> FundusCheck:
    """Whether an RGB uint8 (H, W, 3) image is a colour fundus photograph (or a red-free/monochrome copy of one).

    Any size is judged in about the same time (a copy of at most ``SHRINK_LONG_SIDE`` pixels is measured);
    an image under ``MIN_SIDE`` pixels on a side is too small to be judged and is not one.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        return FundusCheck(False, 0.0, f"the image is too small to be judged ({width}x{height} pixels)", {})
    features = fundus_features(image)
    score = score_features(features)
    if score >= THRESHOLD:
        return FundusCheck(True, score, None, features)
    return FundusCheck(False, score, _reason(features), features)
