"""Where tensors run: CUDA when present, else CPU (override with KENSA_DEVICE)."""

import os

import torch


def default_device() -> torch.device:
    wanted = os.environ.get("KENSA_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
