"""A photo on the tablet before it is sent."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Photo:
    """A picked or captured photo before it is sent."""

    filename: str
    data: bytes
