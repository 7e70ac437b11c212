"""Run an exported graph: ONNX Runtime session or OpenVINO compiled model, torch in and out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

RUNTIMES = ("torch", "onnxruntime", "openvino")
FORMAT_RUNTIME = {"onnx": "onnxruntime", "openvino": "openvino"}
GRAPH_FILES = {"onnx": ("model.onnx",), "openvino": ("model.xml", "model.bin")}


def _threads() -> int:
    """torch's intra-op thread count (OMP_NUM_THREADS at start, or the service's
    ``torch_threads``), so every runtime uses the same number of cores."""
    return torch.get_num_threads()


class Engine:
    """Callable ``x (B x 3 x H x W float32) -> tensor``, as the replaced module method."""

    runtime: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(np.array(self.run(array), dtype=np.float32, copy=True))

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class OnnxRuntimeEngine(Engine):
    runtime = "onnxruntime"

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = _threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


class OpenVinoEngine(Engine):
    runtime = "openvino"

    def __init__(self, path: Path) -> None:
        import openvino as ov

        core = ov.Core()
        # fp32 inference: the CPU plugin may otherwise pick bf16 on capable CPUs
        config = {"INFERENCE_NUM_THREADS": _threads(), "INFERENCE_PRECISION_HINT": "f32"}
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.compiled(x)[0]


def open_engine(fmt: str, directory: Path) -> Engine:
    """The engine for an exported graph in ``directory``."""
    if fmt == "onnx":
        return OnnxRuntimeEngine(directory / "model.onnx")
    if fmt == "openvino":
        return OpenVinoEngine(directory / "model.xml")
    raise ValueError(f"unknown export format {fmt!r}; known: onnx, openvino")
