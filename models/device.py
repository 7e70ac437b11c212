"""Where tensors run: the device asked for, else CUDA when present, else the CPU."""

import torch


def default_device(wanted: str | torch.device | None = None) -> torch.device:
    """``wanted`` (e.g. ``cpu``, ``cuda:1``; the service passes its ``KENSA_DEVICE`` setting),
    else ``cuda`` when available, else ``cpu``."""
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
