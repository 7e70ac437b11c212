"""Sample steel strips for the demo booth, from the synthetic generator (made once, cached)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache

from PIL import Image

from kensa.models.data.synthetic import DEFECT_CLASSES, SteelStripGenerator

SAMPLE_SEED = 7
GOOD = "good"


@dataclass(frozen=True)
class Sample:
    """One sample strip: its key, what a person reads, the PNG and a small JPEG preview."""

    name: str
    title: str
    png: bytes
    thumbnail: bytes


@cache
def demo_samples() -> dict[str, Sample]:
    """A good strip and one per defect family, keyed by name (``good`` or the family)."""
    generator = SteelStripGenerator(seed=SAMPLE_SEED)
    strips = [(GOOD, "Good strip", generator.good(0))]
    strips += [(label, label.replace("_", " ").capitalize(),
                generator.defective(i, labels=(label,)))
               for i, label in enumerate(DEFECT_CLASSES)]
    out = {}
    for name, title, strip in strips:
        picture = Image.fromarray(strip.image)
        full, thumb = io.BytesIO(), io.BytesIO()
        picture.save(full, format="PNG")
        picture.resize((picture.width // 3, picture.height // 3)).save(thumb, format="JPEG",
                                                                        quality=80)
        out[name] = Sample(name=name, title=title, png=full.getvalue(),
                           thumbnail=thumb.getvalue())
    return out
