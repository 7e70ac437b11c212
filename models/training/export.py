"""``kensa export``: write an exported artifact (ONNX Runtime / OpenVINO graph beside the eager
files), check its parity against torch on real-looking images, and record the result.

A recipe over ``kensa.models.export`` (the engines and their serving) and the artifacts.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

import torch

from kensa.models.artifacts import CONFIG_FILE, load
from kensa.models.export.engine import FORMAT_RUNTIME
from kensa.models.export.parity import compare, parity_images
from kensa.models.export.plans import plan_for
from kensa.models.export.serve import MANIFEST, export_graph, install, sha256_file

log = logging.getLogger(__name__)


def export_artifact(source: Path, fmt: str, out: Path | None = None,
                    extra_images: list | None = None, parity: tuple[int, int] = (2, 3)
                    ) -> dict:
    """Export ``source`` to ``out`` (default ``<source>-<fmt>``), check parity on
    ``parity`` = (good, defective) synthetic strips plus ``extra_images``, record it."""
    if fmt not in FORMAT_RUNTIME:
        raise ValueError(f"unknown format {fmt!r}; choose onnx or openvino")
    source, out = Path(source), Path(out or f"{source}-{fmt}")
    eager = load(source, device="cpu", runtime="torch")
    plan_for(eager)  # a kind (or mode) without an export plan is refused before writing
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != source.resolve():
        for item in source.iterdir():
            if item.is_file() and item.name != MANIFEST:
                shutil.copy2(item, out / item.name)
    images = parity_images(n_good=parity[0], n_defective=parity[1], extra=extra_images or [])
    files = export_graph(eager, fmt, out, images)
    exported = load(source, device="cpu", runtime="torch")
    install(exported, fmt, out)
    report = compare(eager, exported, images)
    manifest = {
        "format": fmt, "runtime": FORMAT_RUNTIME[fmt], "method": plan_for(eager).method,
        "note": plan_for(eager).note, "files": {f: sha256_file(out / f) for f in files},
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
