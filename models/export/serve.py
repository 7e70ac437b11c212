"""Export a saved artifact and load it back with its module call swapped for the runtime."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from kensa.models.base import Detector
from kensa.models.export.engine import FORMAT_RUNTIME, GRAPH_FILES, open_engine
from kensa.models.export.plans import MethodModule, plan_for

log = logging.getLogger(__name__)
MANIFEST = "export.json"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install(detector: Detector, fmt: str, directory: Path) -> None:
    """Swap the plan's module method for the engine and drop the torch tensors it replaced."""
    plan = plan_for(detector)
    engine = open_engine(fmt, directory)
    model = detector.model
    keep = plan.keep(model)

    def kept(name: str) -> bool:
        return any(name == k or name.startswith(k) for k in keep)

    for name, param in model.named_parameters():
        if not kept(name):
            param.data = torch.empty(0)
    for module_name, module in model.named_modules():
        for buf_name, buf in list(module._buffers.items()):
            key = f"{module_name}.{buf_name}" if module_name else buf_name
            if buf is not None and not kept(key):
                module._buffers[buf_name] = torch.empty(0, dtype=buf.dtype)
    setattr(model, plan.method, engine)
    detector.runtime = engine.runtime


def export_graph(detector: Detector, fmt: str, out: Path, images: list) -> list[str]:
    """Write the plan's graph to ``out``; returns the graph file names."""
    from kensa.models.imaging import to_tensor

    plan = plan_for(detector)
    module = MethodModule(detector.model, plan.method).eval()
    # traced at batch 1 (the batch axis stays dynamic): tracing a 256x1600 B3 U-Net at batch
    # 2 held enough activations to run out of memory on a 24 GB machine shared by other jobs
    x = to_tensor(images[:1], tuple(detector.config.input_size))
    onnx_path = out / "model.onnx"
    with torch.no_grad():
        # the TorchScript exporter: mature for these convnets and needs no onnxscript
        torch.onnx.export(module, (x,), str(onnx_path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    if fmt == "openvino":
        import openvino as ov

        ov.save_model(ov.convert_model(str(onnx_path)), str(out / "model.xml"),
                      compress_to_fp16=False)
        onnx_path.unlink()
    return list(GRAPH_FILES[fmt])


def refusal(directory: Path, runtime: str) -> str | None:
    """Why ``directory``'s exported graph must not be served (None when it may)."""
    path = directory / MANIFEST
    if not path.is_file():
        return f"no {MANIFEST}"
    manifest = json.loads(path.read_text())
    if manifest.get("runtime") != runtime:
        return f"exported for {manifest.get('runtime')}, config asks for {runtime}"
    if not manifest.get("parity", {}).get("passed"):
        return f"parity check failed: {manifest.get('parity', {}).get('failures')}"
    for name, digest in manifest.get("files", {}).items():
        if not (directory / name).is_file() or sha256_file(directory / name) != digest:
            return f"{name} changed since its parity check"
    return None


def serve_exported(detector: Detector, directory: Path, runtime: str) -> Detector:
    """The detector with its engine installed, or eager torch (logged) when refused."""
    reason = refusal(directory, runtime)
    if reason is None:
        fmt = next(f for f, r in FORMAT_RUNTIME.items() if r == runtime)
        try:  # the engine opens before any torch tensor is released
            install(detector, fmt, directory)
            return detector
        except Exception as exc:  # a runtime that is missing or cannot read the graph
            reason = f"{type(exc).__name__}: {exc}"
    log.warning("%s: serving with torch instead of %s: %s", directory, runtime, reason)
    detector.runtime = "torch"
    return detector
