"""The network's configuration: a small dataclass saved inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

RED_LESIONS: tuple[str, ...] = ("MA", "HE")
"""The red lesions, the paper's two branches: microaneurysms, haemorrhages."""
EXUDATES: tuple[str, ...] = ("EX", "SE")
"""The bright lesions a model may also segment: hard exudates, soft exudates (cotton-wool spots)."""
ALL_LESIONS: tuple[str, ...] = RED_LESIONS + EXUDATES
"""Every lesion RedSeg knows, in output channel order; a model segments the red lesions and, where
its config gives the branches, the exudates (``RedSegConfig.lesions``)."""
LESIONS = RED_LESIONS
"""The lesions every model segments (a two-lesion model's output channels)."""
LESION_NAMES: dict[str, str] = {
    "MA": "microaneurysms",
    "HE": "haemorrhages",
    "EX": "hard exudates",
    "SE": "soft exudates",
}

VGG16_STAGE_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)
VGG16_STAGE_CONVS: tuple[int, ...] = (2, 2, 3, 3, 3)


@dataclass(frozen=True)
class RedSegConfig:
    width: float = 1.0
    """Channel multiplier on VGG16 (1.0 is the paper's network)."""
    batch_norm: bool = False
    ma_stages: tuple[int, ...] = (2, 3, 4)
    """VGG stages (1..5) whose last conv feeds the MA branch."""
    he_stages: tuple[int, ...] = (3, 4, 5)
    ex_stages: tuple[int, ...] = ()
    """VGG stages whose last conv feeds the hard-exudate branch; empty: the model has no EX output."""
    se_stages: tuple[int, ...] = ()
    """Likewise for soft exudates."""
    exudate_hidden: int = 0
    """Hidden channels of the EX and SE branches' side convs (1x1, ReLU, 1x1); 0: one 1x1 conv, as MA's and HE's."""
    working_long_side: int = 1440
    """Images are resized so their longer side has this many pixels (IDRiD 4288x2848 -> 1440x956),
    unless ``fov_diameter`` is set."""
    fov_diameter: float | None = None
    """Set: images are scaled so the fundus disc is this many pixels across and cropped to it
    (``model.fov``); None (checkpoints made before it existed): by ``working_long_side``."""
    fov_margin: float = 0.05
    """With ``fov_diameter``: the crop reaches this fraction of the disc's radius beyond its rim."""
    mean: tuple[float, float, float] = (116.513, 56.437, 16.309)
    """Per-channel RGB mean on the 0..255 scale (the authors' L-Seg values)."""
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    """Per-channel RGB std on the 0..255 scale (ImageNet's, as torchvision's VGG weights expect)."""

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ValueError(f"width must be positive, got {self.width}")
        for name in ("ma_stages", "he_stages", "ex_stages", "se_stages"):
            stages = tuple(int(s) for s in getattr(self, name))
            required = name in ("ma_stages", "he_stages")
            if (required and not stages) or any(s not in range(1, 6) for s in stages) or len(set(stages)) != len(stages):
                raise ValueError(f"{name} must be distinct VGG stages in 1..5, got {stages}")
            object.__setattr__(self, name, tuple(sorted(stages)))
        if self.exudate_hidden < 0:
            raise ValueError(f"exudate_hidden must be non-negative, got {self.exudate_hidden}")
        if self.working_long_side < 32:
            raise ValueError(f"working_long_side must be at least 32, got {self.working_long_side}")
        if self.fov_diameter is not None and not self.fov_diameter >= 32:
            raise ValueError(f"fov_diameter must be at least 32 or None, got {self.fov_diameter}")
        if not self.fov_margin >= 0:
            raise ValueError(f"fov_margin must be non-negative, got {self.fov_margin}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return tuple(max(1, round(c * self.width)) for c in VGG16_STAGE_CHANNELS)

    @property
    def branch_stages(self) -> dict[str, tuple[int, ...]]:
        """Per lesion the model segments, in output channel order, the stages its branch taps."""
        every = {"MA": self.ma_stages, "HE": self.he_stages, "EX": self.ex_stages, "SE": self.se_stages}
        return {lesion: stages for lesion, stages in every.items() if stages}

    @property
    def lesions(self) -> tuple[str, ...]:
        """The lesions the model segments, in output channel order."""
        return tuple(self.branch_stages)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RedSegConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown RedSegConfig fields: {sorted(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)
