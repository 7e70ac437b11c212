"""anomalib's own exported PatchCore, per 256x1600 photo: eager vs its ONNX export in ONNX
Runtime and OpenVINO, with peak memory, for ``bench/pipeline.py``'s table.

Runs in the peers venv (anomalib is never a kensa dependency):

    .venv-peers/bin/python bench/anomalib_export.py STRIPS.npz OUT.json [--bank 2048]

``STRIPS.npz`` holds ``train`` and ``test`` uint8 strips (N x H x W x 3), written by
``bench/pipeline.py`` from kensa's synthetic generator, so both systems see the same photos.
The model mirrors ours in that table: EfficientNet-Lite0 blocks 2-3 (untrained weights: speed
only), 9 neighbours, a memory bank of ``--bank`` patches chosen by anomalib's own greedy
coreset, pre/post-processing off (the photo goes in at its size). The export is anomalib's
``Patchcore.to_onnx`` (torch.onnx dynamo): the nearest-neighbour search against the whole
bank is inside the graph; anomalib fixes the example's batch of 2 in the graph, so exported
runs (and an eager row beside them) are timed on photo pairs, per photo = call / 2. Each
runtime is timed in its own process (``--child``) so its peak RSS (VmHWM) is its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


def _tensor(images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    return ((x - MEAN) / STD).astype(np.float32)


def _peak_mb() -> float:
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line.split()[1] for line in status if line.startswith("VmHWM"))) / 1024


def _stats(times: list[float]) -> dict:
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "n": len(times), "peak_rss_mb": round(_peak_mb(), 1)}


def fit_and_export(strips: Path, root: Path, bank: int) -> dict:
    import torch
    from anomalib.models import Patchcore

    torch.manual_seed(0)
    data = np.load(strips)
    module = Patchcore(backbone="efficientnet_lite0", layers=[2, 3], pre_trained=False,
                       num_neighbors=9, pre_processor=False, post_processor=False,
                       evaluator=False, visualizer=False)
    model = module.model
    model.train()
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(data["train"]), 2):
            model(torch.from_numpy(_tensor(data["train"][start:start + 2])))
    total = sum(e.shape[0] for e in model.embedding_store)
    model.subsample_embedding(min(1.0, bank / total))
    fit_s = time.perf_counter() - t0
    module.eval()
    test = torch.from_numpy(_tensor(data["test"]))
    with torch.no_grad():
        module(test[:1])  # warm-up
        times, scores = [], []
        for i in range(len(test)):
            t = time.perf_counter()
            out = module(test[i:i + 1])
            times.append((time.perf_counter() - t) * 1000)
            scores.append(float(out.pred_score.flatten()[0]))
    eager = {**_stats(times), "scores": scores}
    with torch.no_grad():
        pair_times = []
        for i in range(0, len(test) - 1, 2):
            t = time.perf_counter()
            module(test[i:i + 2])
            pair_times.append((time.perf_counter() - t) * 1000 / 2)
    eager_pairs = _stats(pair_times)
    t = time.perf_counter()
    # A fixed size, as anomalib's docs show (fully dynamic shapes fail to export here); the
    # graph comes out with the example's batch of 2 fixed, so exported runs take photo pairs.
    onnx_path = module.to_onnx(root, input_size=tuple(data["test"].shape[1:3]))
    export_s = time.perf_counter() - t
    return {"bank": int(model.memory_bank.shape[0]), "patches": int(total),
            "fit_s": round(fit_s, 1), "export_onnx_s": round(export_s, 1),
            "onnx_mb": round(Path(onnx_path).stat().st_size / 1e6, 1), "onnx": str(onnx_path),
            "onnx_dir_mb": round(sum(f.stat().st_size for f in Path(onnx_path).parent.iterdir())
                                 / 1e6, 1),
            "eager": eager, "eager_pairs_per_photo": eager_pairs,
            "peak_rss_fit_export_mb": round(_peak_mb(), 1)}


def run_exported(runtime: str, onnx_path: str, strips: Path) -> dict:
    test = _tensor(np.load(strips)["test"])
    if runtime == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        outputs = [o.name for o in session.get_outputs()]

        def call(x):
            return dict(zip(outputs, session.run(None, {name: x}), strict=True))
    else:
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(core.read_model(onnx_path), "CPU",
                                      {"INFERENCE_NUM_THREADS": 1})
        names = [o.get_any_name() for o in compiled.outputs]

        def call(x):
            result = compiled(x)
            return {n: result[o] for n, o in zip(names, compiled.outputs, strict=True)}
    call(test[:2])
    times, scores = [], []
    for i in range(0, len(test) - 1, 2):  # the graph's fixed batch of 2: per photo = call / 2
        t = time.perf_counter()
        out = call(test[i:i + 2])
        times.append((time.perf_counter() - t) * 1000 / 2)
        scores.extend(float(v) for v in np.asarray(out["pred_score"]).ravel()[:2])
    return {**_stats(times), "scores": scores}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("strips", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--bank", type=int, default=2048)
    parser.add_argument("--child", nargs=2, metavar=("RUNTIME", "ONNX"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_exported(args.child[0], args.child[1], args.strips)))
        return 0
    import anomalib

    with tempfile.TemporaryDirectory() as tmp:
        report = {"anomalib": anomalib.__version__,
                  **fit_and_export(args.strips, Path(tmp), args.bank)}
        eager_scores = np.array(report["eager"]["scores"])
        for runtime in ("onnxruntime", "openvino"):
            done = subprocess.run([sys.executable, __file__, str(args.strips), str(args.out),
                                   "--child", runtime, report["onnx"]], capture_output=True,
                                  text=True)
            if done.returncode != 0:
                report[runtime] = {"failed": done.stderr.strip().splitlines()[-3:]}
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rel = np.abs(np.array(result["scores"]) - eager_scores) / np.maximum(
                np.abs(eager_scores), 1e-12)
            result["score_max_rel_diff_vs_eager"] = float(rel.max())
            report[runtime] = result
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "onnx"}, default=str)[:2000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
