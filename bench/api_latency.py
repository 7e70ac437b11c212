"""Per-inspection latency through the API (live uvicorn on loopback) vs the bare detector call.

    PYTHONPATH=. .venv/bin/python bench/api_latency.py [--n 40] [--size 256 1600]
        [--model DIR] [--clients 1 4 8] [--out bench/results/api_latency.json]

Without ``--model`` a PatchCore with its registered ``quick`` settings is fitted on synthetic
good strips (the same recipe as the service's demo detector). The same N synthetic strips
(half good, half defective, PNG) go through these paths in one run, after a warm-up:

* ``detector_call``: ``detector(image)`` on the decoded array (model + post-processing);
* ``api_sequential``: ``POST /api/v1/inspections`` one at a time (upload, decode/verify once,
  detector, mask + map PNGs, blob writes, one DB transaction, JSON response), interleaved with
  the bare call so both see the same machine load; the server has the default settings
  (batching on: a lone request never waits);
* ``overlay_first_get``: the first ``GET .../overlay`` of each record (drawn then, and cached);
* ``api_concurrent``: for each ``--clients`` count, the same uploads from that many client
  threads at once, against a server with batching (``batch_max`` 8, 5 ms) and one without
  (``batch_max`` 1); ``throughput_per_s`` is uploads per second of wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm


def percentiles(values_ms: list[float]) -> dict[str, float]:
    arr = np.asarray(values_ms)
    return {"p50_ms": round(float(np.percentile(arr, 50)), 2),
            "p95_ms": round(float(np.percentile(arr, 95)), 2),
            "mean_ms": round(float(arr.mean()), 2), "n": len(values_ms)}


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def fit_quick_patchcore(directory: Path, size: tuple[int, int], n_good: int) -> Path:
    from kensa.models import artifacts
    from kensa.models.data.synthetic import SteelStripGenerator
    from kensa.models.registry import create_detector, get_spec

    detector = create_detector("patchcore", **get_spec("patchcore").quick)
    detector.fit(SteelStripGenerator(size=size, seed=0).samples(n_good, 0))
    return artifacts.save(detector, directory)


def start_server(settings) -> tuple[str, object, threading.Thread]:
    import uvicorn

    from kensa.backend.main import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return url, server, thread
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="images per path")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 1600), metavar=("H", "W"))
    parser.add_argument("--model", type=Path, help="artifact dir (default: fit quick PatchCore)")
    parser.add_argument("--fit-good", type=int, default=40, help="good strips for the fit")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--database-url", help="default: SQLite in a temp dir")
    parser.add_argument("--out", type=Path, default=Path("bench/results/api_latency.json"))
    args = parser.parse_args()

    from kensa.backend.config import Settings
    from kensa.models.artifacts import load_detector
    from kensa.models.data.synthetic import SteelStripGenerator

    size = (int(args.size[0]), int(args.size[1]))
    work = Path(tempfile.mkdtemp(prefix="kensa-bench-"))
    servers: list[tuple[object, threading.Thread]] = []
    try:
        model_dir = work / "models"
        if args.model:
            shutil.copytree(args.model, model_dir / args.model.name)
            artifact = model_dir / args.model.name
        else:
            t0 = time.perf_counter()
            artifact = fit_quick_patchcore(model_dir / "patchcore", size, args.fit_good)
            print(f"fitted quick PatchCore on {args.fit_good} strips in "
                  f"{time.perf_counter() - t0:.1f} s")
        gen = SteelStripGenerator(size=size, seed=1234)
        arrays = [gen.defective(i).image if i % 2 else gen.good(i).image for i in range(args.n)]
        pngs = [encode_png(a) for a in arrays]

        detector = load_detector(artifact)
        modes = {"batched": {"batch_max": 8, "batch_wait_ms": 5.0},
                 "unbatched": {"batch_max": 1}}
        urls, settings = {}, {}
        for mode, overrides in modes.items():
            settings[mode] = Settings(data_dir=work / f"data-{mode}", model_dir=model_dir,
                                      serve_client=False, admin_password="bench-password",
                                      database_url=args.database_url, **overrides)
            url, server, thread = start_server(settings[mode])
            urls[mode] = url
            servers.append((server, thread))

        def client_for(mode: str) -> httpx.Client:
            client = httpx.Client(base_url=urls[mode], timeout=300)
            token = client.post("/api/v1/auth/token", data={
                "username": "admin", "password": "bench-password"}).json()["access_token"]
            client.headers["Authorization"] = f"Bearer {token}"
            return client

        def poster(client: httpx.Client):
            def post(png: bytes) -> tuple[float, str]:
                t0 = time.perf_counter()
                response = client.post("/api/v1/inspections",
                                       files={"image": ("strip.png", png, "image/png")})
                response.raise_for_status()
                return (time.perf_counter() - t0) * 1000, response.json()["overlay_url"]
            return post

        def call(image: np.ndarray) -> float:
            t0 = time.perf_counter()
            detector(image)
            return (time.perf_counter() - t0) * 1000

        concurrent: dict[str, dict[str, dict]] = {}
        with contextlib.closing(client_for("batched")) as client:
            post = poster(client)
            for a, png in zip(arrays[: args.warmup], pngs[: args.warmup], strict=True):
                call(a)
                post(png)
            # interleaved, so both paths see the same machine load
            bare, api, overlays = [], [], []
            for a, png in tqdm(list(zip(arrays, pngs, strict=True)), desc="detector+api"):
                bare.append(call(a))
                ms, overlay_url = post(png)
                api.append(ms)
                overlays.append(overlay_url)
            first_get = []
            for overlay_url in overlays:
                t0 = time.perf_counter()
                client.get(overlay_url).raise_for_status()
                first_get.append((time.perf_counter() - t0) * 1000)
        for clients in args.clients:
            concurrent[str(clients)] = {}
            for mode in modes:
                with contextlib.closing(client_for(mode)) as client:
                    post = poster(client)
                    post(pngs[0])  # warm this server
                    t0 = time.perf_counter()
                    with ThreadPoolExecutor(max_workers=clients) as pool:
                        times = [ms for ms, _ in tqdm(pool.map(post, pngs), total=len(pngs),
                                                      desc=f"{mode} x{clients}")]
                    wall = time.perf_counter() - t0
                concurrent[str(clients)][mode] = {
                    **percentiles(times), "clients": clients,
                    "throughput_per_s": round(len(pngs) / wall, 2)}

        api_stats, bare_stats = percentiles(api), percentiles(bare)
        result = {
            "what": "per-inspection latency: API on loopback vs bare detector call",
            "created_at": datetime.now(UTC).isoformat(),
            "detector": {"artifact": str(args.model or "quick PatchCore (fitted here)"),
                         "kind": detector.kind, "runtime": detector.runtime,
                         "fit_good_strips": None if args.model else args.fit_good},
            "images": {"n": args.n, "size_hw": list(size), "format": "PNG",
                       "source": "kensa.models.data.synthetic seed 1234, half good half defective",
                       "mean_bytes": int(np.mean([len(p) for p in pngs]))},
            "database": settings["batched"].database_url.split("://")[0],
            "environment": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "device": str(torch.device("cuda" if torch.cuda.is_available()
                                                       else "cpu")),
                            "python": platform.python_version(), "torch": torch.__version__,
                            "inference_concurrency": settings["batched"].inference_concurrency,
                            "machine": "shared with other jobs",
                            "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()]},
            "detector_call": bare_stats,
            "api_sequential": api_stats,
            "api_overhead_p50_ms": round(api_stats["p50_ms"] - bare_stats["p50_ms"], 2),
            "api_overhead_p50_ratio": round(api_stats["p50_ms"] / bare_stats["p50_ms"] - 1, 4),
            "overlay_first_get": percentiles(first_get),
            "api_concurrent": concurrent,
            "batching": modes,
            "command": "PYTHONPATH=. python bench/api_latency.py " + " ".join(
                [f"--n {args.n}", "--clients", *map(str, args.clients)]),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: result[k] for k in ("detector_call", "api_sequential",
                                                 "api_overhead_p50_ratio", "overlay_first_get",
                                                 "api_concurrent")}, indent=2))
        print(f"wrote {args.out}")
    finally:
        for server, thread in servers:
            server.should_exit = True  # type: ignore[attr-defined]
            thread.join(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
