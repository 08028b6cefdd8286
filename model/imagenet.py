"""ImageNet initialisation of the encoder from VGG16 weights in torchvision's state-dict layout."""

from __future__ import annotations

from pathlib import Path

import torch

from model.network import RedSeg

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG16_BN_URL = "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth"


class PretrainedWeightsError(ValueError):
    pass


def load_imagenet_encoder(model: RedSeg, source: str | Path | None = None) -> list[str]:
    """Copy VGG16(-BN) ImageNet weights into ``model.encoder``.

    ``source`` is a file holding a torchvision VGG16 state dict, or ``None`` to fetch
    torchvision's published weights through ``torch.hub`` (needs internet). Returns the
    names of the encoder parameters that were loaded; the classifier is ignored.
    """
    if source is None:
        url = VGG16_BN_URL if model.config.batch_norm else VGG16_URL
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True)
    else:
        path = Path(source)
        if not path.is_file():
            raise PretrainedWeightsError(f"ImageNet weights file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise PretrainedWeightsError(f"{path} is not a readable PyTorch state dict: {exc}") from exc
    if not isinstance(state, dict):
        raise PretrainedWeightsError("ImageNet weights must be a state dict")

    features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    target = model.encoder.features.state_dict()
    missing = sorted(set(target) - set(features))
    if missing:
        kind = "VGG16-BN" if model.config.batch_norm else "VGG16"
        raise PretrainedWeightsError(
            f"the weights do not fit this network (expected torchvision {kind} 'features.*' keys); "
            f"missing: {missing[:4]}{' ...' if len(missing) > 4 else ''}"
        )
    mismatched = [k for k in target if features[k].shape != target[k].shape]
    if mismatched:
        k = mismatched[0]
        raise PretrainedWeightsError(
            f"the weights do not fit this network: {k} is {tuple(features[k].shape)} in the file but "
            f"{tuple(target[k].shape)} here (ImageNet weights need width=1.0, got width={model.config.width})"
        )
    model.encoder.features.load_state_dict({k: features[k] for k in target})
    return [f"encoder.features.{k}" for k in target]
