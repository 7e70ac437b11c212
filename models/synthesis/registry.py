"""The registered generators (importing this module registers the built-in ones)."""

from __future__ import annotations

from typing import Any

from kensa.models.synthesis import dcgan, inpaint, vae  # noqa: F401  (they register)
from kensa.models.synthesis.base import _GENERATORS, Generator


def list_generators() -> dict[str, str]:
    return {name: desc for name, (_, desc) in _GENERATORS.items()}


def create_generator(method: str, **options: Any) -> Generator:
    if method not in _GENERATORS:
        raise ValueError(f"unknown synthesis method {method!r}; known: "
                         f"{', '.join(_GENERATORS)}")
    return _GENERATORS[method][0](**options)
