"""Sample steel strips for the demo booth, from the synthetic generator (PNG bytes)."""

from __future__ import annotations

import io
from functools import cache

SAMPLE_SEED = 7


@cache
def demo_samples() -> tuple[tuple[str, str, bytes, bytes], ...]:
    """(title, file name, PNG bytes, small JPEG preview) for a good strip and one per family.

    Empty when the generator is not installed (a client-only install without the models).
    """
    try:
        from PIL import Image

        from kensa.models.data.synthetic import DEFECT_CLASSES, SteelStripGenerator
    except ImportError:
        return ()
    generator = SteelStripGenerator(seed=SAMPLE_SEED)
    strips = [("Good strip", generator.good(0))]
    strips += [(label.replace("_", " ").capitalize(), generator.defective(i, labels=(label,)))
               for i, label in enumerate(DEFECT_CLASSES)]
    out = []
    for title, strip in strips:
        picture = Image.fromarray(strip.image)
        full, thumb = io.BytesIO(), io.BytesIO()
        picture.save(full, format="PNG")
        picture.resize((picture.width // 3, picture.height // 3)).save(thumb, format="JPEG",
                                                                        quality=80)
        out.append((title, f"sample_{strip.name}.png", full.getvalue(), thumb.getvalue()))
    return tuple(out)
