"""A trained detector on disk: ``config.json`` + ``weights.safetensors`` + ``metrics.json``.

``save`` then ``load`` gives a detector whose outputs are identical to the original's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from kensa.models.base import ArtifactMetadata, Detector
from kensa.models.registry import get_spec

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
METRICS_FILE = "metrics.json"


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor of the module, contiguous and unshared (safetensors refuses aliases)."""
    out: dict[str, torch.Tensor] = {}
    seen: dict[int, str] = {}
    for key, tensor in model.state_dict(keep_vars=False).items():
        ptr = tensor.data_ptr()
        out[key] = tensor.detach().cpu().clone() if ptr in seen else tensor.detach().cpu()
        seen[ptr] = key
        out[key] = out[key].contiguous()
    return out


def _write_json_atomic(path: Path, payload: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    os.replace(tmp, path)


def save(detector: Detector, directory: str | Path) -> Path:
    """Write the detector to ``directory`` (created); sets and returns its version there."""
    if getattr(detector, "runtime", "torch") != "torch":
        raise ValueError("an exported detector holds no torch weights for its graph; save the "
                         "eager artifact and run `kensa export` again")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights_path = directory / WEIGHTS_FILE
    tensors = _tensors(detector.model)
    tmp = weights_path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"kind": detector.kind, "format": str(FORMAT_VERSION)})
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:10]
    os.replace(tmp, weights_path)
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    if not detector.metadata.version.endswith(digest):
        detector.metadata.version = f"{stamp}-{digest}"
    write_config(detector, directory)
    _write_json_atomic(directory / METRICS_FILE, detector.metadata.metrics)
    log.info("saved %s (%s) to %s", detector.name, detector.version, directory)
    return directory


def write_config(detector: Detector, directory: str | Path) -> None:
    """Rewrite only ``config.json`` (e.g. after a threshold change at run time)."""
    payload = {
        "format": FORMAT_VERSION,
        "kind": detector.kind,
        "config": detector.config.model_dump(mode="json"),
        "postprocess": detector.post.model_dump(mode="json"),
        "metadata": detector.metadata.model_dump(mode="json"),
    }
    _write_json_atomic(Path(directory) / CONFIG_FILE, payload)


def _match_buffer_shapes(model: nn.Module, path: Path) -> None:
    """Resize buffers whose size depends on training data (e.g. a memory bank) to the file's."""
    with safe_open(str(path), framework="pt") as fh:
        saved_keys = set(fh.keys())
        for module_name, module in model.named_modules():
            for buf_name, buf in list(module._buffers.items()):
                key = f"{module_name}.{buf_name}" if module_name else buf_name
                if buf is None or key not in saved_keys:
                    continue
                saved = fh.get_slice(key)
                shape = tuple(saved.get_shape())
                dtype = fh.get_tensor(key).dtype if tuple(buf.shape) != shape else buf.dtype
                if tuple(buf.shape) != shape or buf.dtype != dtype:
                    module._buffers[buf_name] = torch.empty(shape, dtype=dtype, device=buf.device)


def load(directory: Path, device: str | None = None, runtime: str | None = None) -> Detector:
    """Rebuild a detector from ``directory`` exactly as it was saved; an exported artifact
    (``metadata.runtime`` onnxruntime|openvino, or ``runtime``) gets its engine when its parity
    check passed, else stays eager torch (logged)."""
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"not a kensa artifact (no {CONFIG_FILE}): {directory}")
    payload = json.loads(config_path.read_text())
    if payload.get("format") != FORMAT_VERSION:
        raise ValueError(f"unsupported artifact format {payload.get('format')!r} in {directory}")
    spec = get_spec(payload["kind"])
    config = spec.cls.Config(**payload["config"])
    detector = spec.cls(config, spec=spec, weights="artifact", device=device)
    weights_path = directory / WEIGHTS_FILE
    _match_buffer_shapes(detector.model, weights_path)
    state = load_file(str(weights_path))
    detector.model.load_state_dict(state, strict=True)
    detector.post = spec.cls.Post(**payload["postprocess"])
    detector.metadata = ArtifactMetadata(**payload["metadata"])
    detector.model.to(detector.device)
    detector.model.eval()
    runtime = runtime or getattr(detector.metadata, "runtime", None) or "torch"
    if runtime != "torch":
        from kensa.models.export.serve import serve_exported

        return serve_exported(detector, directory, runtime)
    return detector


def load_detector(path: str | Path, device: str | None = None,
                  runtime: str | None = None) -> Detector:
    """A trained detector from an artifact directory written by ``save`` or ``kensa export``
    (the runtime from its metadata unless ``runtime`` is given)."""
    return load(Path(path), device=device, runtime=runtime)


def artifact_kind(path: str | Path) -> str:
    """The registered kind stored in an artifact directory, without loading weights."""
    return json.loads((Path(path) / CONFIG_FILE).read_text())["kind"]
