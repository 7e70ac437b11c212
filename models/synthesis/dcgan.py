"""Seed 003's DCGAN for a rare defect class, at 64 or 128 px.

Generator: transposed convolutions from a 100-d noise vector, BatchNorm + ReLU, Tanh out;
discriminator: strided convolutions, BatchNorm + LeakyReLU(0.2), no BN on the first layer;
weights N(0, 0.02) (BatchNorm scale N(1, 0.02)); Adam lr 2e-4, beta1 0.5; flips only.
Seed 003 kept G and D balanced at 128 px with ndf = ngf / 4 (mode collapse past ~300 epochs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from kensa.models.data.samples import Sample
from kensa.models.synthesis.base import (
    Generator,
    Synthesised,
    is_gray,
    register_generator,
    to_uint8,
    training_tensor,
)

NOISE = 100


def _levels(size: int) -> int:
    levels = int(math.log2(size)) - 2
    if size < 16 or 2 ** (levels + 2) != size:
        raise ValueError(f"DCGAN size must be a power of two >= 16, got {size}")
    return levels


class DcganG(nn.Module):
    def __init__(self, size: int, channels: int, ngf: int) -> None:
        super().__init__()
        levels = _levels(size)
        width = ngf * 2 ** (levels - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(NOISE, width, 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(width), nn.ReLU(True)]
        for _ in range(levels - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(width // 2), nn.ReLU(True)]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class DcganD(nn.Module):
    def __init__(self, size: int, channels: int, ndf: int) -> None:
        super().__init__()
        levels = _levels(size)
        layers: list[nn.Module] = [nn.Conv2d(channels, ndf, 4, 2, 1, bias=False),
                                   nn.LeakyReLU(0.2, inplace=True)]
        width = ndf
        for _ in range(levels - 1):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2, inplace=True)]
            width *= 2
        layers += [nn.Conv2d(width, 1, 4, 1, 0, bias=False)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def dcgan_init(module: nn.Module) -> None:
    """Seed 003's N(0, 0.02) initialisation."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


@register_generator("dcgan", "seed 003's DCGAN (64 or 128 px, ndf = ngf / 4, N(0, 0.02))")
class Dcgan(Generator):
    def __init__(self, *, ngf: int = 64, batch_size: int = 32, lr: float = 2e-4,
                 **options: Any) -> None:
        super().__init__(**options)
        self.ngf = ngf
        self.ndf = max(1, ngf // 4)
        self.batch_size = batch_size
        self.lr = lr
        self.channels = 3
        self.generator: DcganG | None = None

    def fit(self, label: str, samples: Sequence[Sample], good: Sequence[Sample]
            ) -> dict[str, Any]:
        if len(samples) < 2:
            raise ValueError(f"DCGAN needs at least 2 images of {label!r}, got {len(samples)}")
        torch.manual_seed(self.seed)
        images = [s.load_image() for s in samples]
        gray = is_gray(images)
        self.channels = 1 if gray else 3
        data = training_tensor(samples, self.size, gray)
        g = DcganG(self.size, self.channels, self.ngf).to(self.device)
        d = DcganD(self.size, self.channels, self.ndf).to(self.device)
        g.apply(dcgan_init)
        d.apply(dcgan_init)
        opt_g = torch.optim.Adam(g.parameters(), lr=self.lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(d.parameters(), lr=self.lr, betas=(0.5, 0.999))
        bce = nn.BCEWithLogitsLoss()
        gen = torch.Generator().manual_seed(self.seed)
        curves: dict[str, list[float]] = {"loss_d": [], "loss_g": []}
        for _ in tqdm(range(self.epochs), desc=f"dcgan {label} {self.size}px", unit="epoch"):
            order = torch.randperm(len(data), generator=gen)
            sums, batches = [0.0, 0.0], 0
            for start in range(0, len(data), self.batch_size):
                real = data[order[start:start + self.batch_size]]
                if len(real) < 2:
                    continue
                flip = torch.rand(len(real), generator=gen)
                real = torch.where((flip < 0.5).view(-1, 1, 1, 1), real.flip(-1), real)
                flip = torch.rand(len(real), generator=gen)
                real = torch.where((flip < 0.5).view(-1, 1, 1, 1), real.flip(-2), real)
                real = real.to(self.device)
                z = torch.randn(len(real), NOISE, 1, 1, generator=gen).to(self.device)
                fake = g(z)
                ones = torch.ones(len(real), device=self.device)
                zeros = torch.zeros(len(real), device=self.device)
                opt_d.zero_grad(set_to_none=True)
                loss_d = bce(d(real), ones) + bce(d(fake.detach()), zeros)
                loss_d.backward()
                opt_d.step()
                opt_g.zero_grad(set_to_none=True)
                loss_g = bce(d(fake), ones)
                loss_g.backward()
                opt_g.step()
                sums[0] += float(loss_d)
                sums[1] += float(loss_g)
                batches += 1
            curves["loss_d"].append(sums[0] / max(1, batches))
            curves["loss_g"].append(sums[1] / max(1, batches))
        self.generator = g.eval()
        return {"method": "dcgan", "size": self.size, "ngf": self.ngf, "ndf": self.ndf,
                "channels": self.channels, "epochs": self.epochs, "n_images": len(samples),
                "final_loss_d": curves["loss_d"][-1] if curves["loss_d"] else None,
                "final_loss_g": curves["loss_g"][-1] if curves["loss_g"] else None,
                "curves": curves}

    @torch.inference_mode()
    def generate(self, count: int) -> list[Synthesised]:
        if self.generator is None:
            raise RuntimeError("fit the DCGAN first")
        gen = torch.Generator().manual_seed(self.seed + 1)
        out: list[Synthesised] = []
        for start in range(0, count, 64):
            z = torch.randn(min(64, count - start), NOISE, 1, 1, generator=gen)
            out.extend(Synthesised(im) for im in to_uint8(self.generator(z.to(self.device))))
        return out
