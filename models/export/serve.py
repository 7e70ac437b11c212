"""Export a saved artifact and load it back with its module call swapped for the runtime."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

import torch

from kensa.models.detectors.base import Detector
from kensa.models.export.engine import FORMAT_RUNTIME, GRAPH_FILES, open_engine
from kensa.models.export.plans import MethodModule, plan_for

log = logging.getLogger(__name__)
MANIFEST = "export.json"


def _sha(path: Path) -> str:
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
    x = to_tensor(images[:2], tuple(detector.config.input_size))
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


def export_artifact(source: Path, fmt: str, out: Path | None = None,
                    extra_images: list | None = None) -> dict:
    """Export ``source`` to ``out`` (default ``<source>-<fmt>``), check parity, record it."""
    from kensa.models.artifacts import CONFIG_FILE, load
    from kensa.models.export.parity import compare, parity_images

    if fmt not in FORMAT_RUNTIME:
        raise ValueError(f"unknown format {fmt!r}; choose onnx or openvino")
    source, out = Path(source), Path(out or f"{source}-{fmt}")
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != source.resolve():
        for item in source.iterdir():
            if item.is_file() and item.name != MANIFEST:
                shutil.copy2(item, out / item.name)
    eager = load(source, device="cpu", runtime="torch")
    images = parity_images(extra=extra_images or [])
    files = export_graph(eager, fmt, out, images)
    exported = load(source, device="cpu", runtime="torch")
    install(exported, fmt, out)
    report = compare(eager, exported, images)
    manifest = {
        "format": fmt, "runtime": FORMAT_RUNTIME[fmt], "method": plan_for(eager).method,
        "note": plan_for(eager).note, "files": {f: _sha(out / f) for f in files},
        "source_version": eager.version, "created_at": datetime.now(UTC).isoformat(),
        "versions": _versions(), "parity": report,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, default=float) + "\n")
    payload = json.loads((out / CONFIG_FILE).read_text())
    payload["metadata"]["runtime"] = FORMAT_RUNTIME[fmt]
    (out / CONFIG_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    log.info("exported %s to %s (%s): parity %s", source, out, fmt,
             "passed" if report["passed"] else f"FAILED {report['failures']}")
    return manifest


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    out = {"torch": torch.__version__, "onnx": onnx.__version__,
           "onnxruntime": onnxruntime.__version__}
    try:
        import openvino

        out["openvino"] = openvino.__version__
    except ImportError:
        pass
    return out


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
        if not (directory / name).is_file() or _sha(directory / name) != digest:
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
