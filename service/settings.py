"""Every setting of the service, read from REDSEG_* environment variables."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.checkpoint import DEFAULT_CHECKPOINT
from model.inference import TileSettings
from model.tta import resolve_tta
from service import DEFAULT_MAX_PIXELS


def on_gpu(devices: list[str]) -> bool:
    return any(device.startswith("cuda") for device in devices)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REDSEG_", frozen=True)

    checkpoint: Path = Field(
        DEFAULT_CHECKPOINT, description="The model checkpoint (.safetensors) to serve. Default: the bundled "
        "full-width model; checkpoints/redseg-fast.safetensors is the bundled quarter-width one (less accurate, "
        "about 2.5 times faster on a CPU).")
    device: str = Field(
        "auto",
        description="auto (every CUDA GPU, else the CPU), cpu, cuda (every GPU) or cuda:N. One worker per device.",
    )
    max_upload_bytes: int = Field(50 * 2**20, gt=0, description="Largest accepted image file, in bytes.")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0, description="Largest accepted image, in pixels.")
    queue_size: int = Field(
        32, ge=0, description="Hard cap on requests waiting for a busy model; within it, admission is by expected wait."
    )
    request_timeout_s: float = Field(
        120.0, gt=0, description="Longest a request waits for and runs on the model; requests that could not finish in it get 503."
    )
    max_image_memory_bytes: int = Field(
        2 * 2**30, gt=0, description="Hard cap on the memory held by the requests in progress: 13 bytes a photograph pixel, "
        "320 a working-scale pixel."
    )
    warm_memory_bytes: int = Field(
        2**30, ge=0, description="Free memory the server keeps between requests for the next one rather than handing it "
        "back to the OS, which the next request would pay for in page faults (0: hand it all back after each request)."
    )
    body_timeout_s: float = Field(120.0, gt=0, description="Longest a request body may take to arrive; slower ones get 408.")
    drain_max_bytes: int = Field(
        256 * 2**20, ge=0, description="Most bytes of an oversized body read and discarded so the client can read its 413."
    )
    drain_timeout_s: float = Field(10.0, ge=0, description="Longest spent discarding an oversized body before the 413.")
    max_header_bytes: int = Field(64 * 2**10, ge=1024, description="Largest request head (request line and headers) accepted.")
    shutdown_grace_s: float = Field(
        15.0, ge=0, lt=30, description="On SIGTERM, how long requests in progress may take to finish before they get 503."
    )
    api_token: SecretStr | None = Field(None, description="If set, POST /segment needs 'Authorization: Bearer <token>'.")
    tile_size: int = Field(TileSettings.tile_size, ge=16, description="Largest tile side at the working scale.")
    tile_overlap: int = Field(TileSettings.min_overlap, ge=0, description="Least overlap between tiles.")
    tile_batch_size: int = Field(TileSettings.batch_size, ge=1, description="Tiles per forward pass.")
    fundus_check: bool = Field(
        True, description="Refuse (422) an upload that is not a colour fundus photograph (model/fundus_check.py) "
        "before any lesion is reported; false only to study other images.")
    fov_mask: bool = Field(True, description="Zero the probabilities outside the fundus's field of view.")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="The network's precision: auto (bf16 autocast where the device computes bf16 natively: "
        "CUDA, CPUs with AVX512-BF16 or AMX; else fp32), bf16, or fp32 to force full precision.")
    backend: Literal["auto", "torch", "openvino-int8", "openvino-bf16"] = Field(
        "auto", description="The network's engine: auto (OpenVINO int8 on an x86 CPU where openvino is installed, "
        "torch on GPUs and elsewhere), torch, openvino-int8, or openvino-bf16 (fp32 weights computed in bf16). An "
        "OpenVINO model is made from the checkpoint at its first start and kept beside it (model/openvino_export.py).")
    tta: Literal["auto", "none", "hflip", "flips", "dihedral"] = Field(
        "auto", description="Test-time augmentation: average the maps over flipped (and rotated) views; each view "
        "costs one more pass of the network. auto: hflip on GPUs (a few ms more; it raises hold-out AP for both "
        "lesions), none on the CPU.")
    torch_threads: int | None = Field(None, ge=1, description="CPU threads for torch (default: torch's choice).")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        value = value.strip().lower()
        if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError("device must be auto, cpu, cuda or cuda:N")

    @field_validator("api_token")
    @classmethod
    def _empty_token_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @model_validator(mode="after")
    def _valid_tiles(self) -> "Settings":
        self.tiles  # TileSettings checks overlap < tile size
        return self

    @property
    def tiles(self) -> TileSettings:
        return TileSettings(
            tile_size=self.tile_size,
            min_overlap=self.tile_overlap,
            batch_size=self.tile_batch_size,
            fov_mask=self.fov_mask,
            precision=self.precision,
            tta=resolve_tta(self.tta, on_gpu=False),
        )

    def tiles_for(self, devices: list[str]) -> TileSettings:
        """The tile settings on ``devices``, with ``auto`` test-time augmentation resolved for them."""
        return replace(self.tiles, tta=resolve_tta(self.tta, on_gpu(devices)))

    def devices(self) -> list[str]:
        """The devices to run one inference worker on each."""
        gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
        if self.device == "auto":
            return gpus or ["cpu"]
        if self.device == "cuda":
            if not gpus:
                raise RuntimeError("REDSEG_DEVICE=cuda but no CUDA GPU is available")
            return gpus
        if self.device.startswith("cuda") and not gpus:
            raise RuntimeError(f"REDSEG_DEVICE={self.device} but no CUDA GPU is available")
        return [self.device]

