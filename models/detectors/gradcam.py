"""Grad-CAM (Selvaraju et al. 2017) on the last convolutional stage of a timm classifier.

timm models split into ``forward_features`` (the last conv stage's activations, B x C x h x w)
and ``forward_head`` (pooling + classifier), so the activations and their gradients are taken
directly there, without hooks. Seed 000 reads the evidence of InceptionV3 the same way.
Given the features the prediction already computed, Grad-CAM costs only the head's backward
pass (a few KB of weights), not a second backbone forward.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def grad_cam(model: nn.Module, x: torch.Tensor,
             class_indices: Sequence[Sequence[int]],
             features: torch.Tensor | None = None) -> list[dict[int, np.ndarray]]:
    """Grad-CAM maps for the requested classes of each image of the batch ``x``.

    ``class_indices[i]`` lists the classes wanted for image ``i``. Maps are at the input size
    of ``x``, rectified and scaled to [0, 1] per map (all zeros when nothing supports the
    class). The model's train/eval mode is left as it is. ``features``: the batch's
    ``model.forward_features(x)`` when already computed (not an inference-mode tensor).
    """
    wanted = sorted({c for per_image in class_indices for c in per_image})
    out: list[dict[int, np.ndarray]] = [{} for _ in range(len(x))]
    if not wanted:
        return out
    with torch.enable_grad():
        if features is None:
            with torch.no_grad():
                features = model.forward_features(x)
        features = features.detach().requires_grad_(True)
        logits = model.forward_head(features)
        for n, cls in enumerate(wanted):
            rows = [i for i, per_image in enumerate(class_indices) if cls in per_image]
            (grads,) = torch.autograd.grad(logits[rows, cls].sum(), features,
                                           retain_graph=n < len(wanted) - 1)
            weights = grads[rows].mean(dim=(2, 3), keepdim=True)
            cams = F.relu((weights * features[rows]).sum(dim=1, keepdim=True))
            cams = F.interpolate(cams, size=x.shape[-2:], mode="bilinear", align_corners=False)
            peak = cams.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            cams = (cams / peak).clamp(0, 1)[:, 0].detach().cpu().numpy()
            for row, cam in zip(rows, cams, strict=True):
                out[row][cls] = cam.astype(np.float32)
    return out
