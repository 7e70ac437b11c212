"""Every constant of the wire contract, defined once for the server, the client and the CLI."""

from __future__ import annotations

API_PREFIX = "/api/v1"
"""Every resource route lives under this prefix."""

DEFAULT_SERVER_URL = "http://127.0.0.1:8000"
"""Where ``kensa serve`` listens by default, and where clients look when told nothing else."""

USER_ROLES = ("operator", "manager", "admin")
"""Account roles, lowest first: each may do everything the ones before it may."""

VERDICTS = ("ok", "defect", "review")
"""An inspection's verdict; ``review`` = a person should look (see ``kensa.models.decision``)."""

STEEL_CLASSES = ("pitted_surface", "crazing", "scratches", "patches")
"""The Severstal defect families (class ids 1-4), the labels of the demo steel models."""

ANOMALY_LABEL = "anomaly"
"""The label good-only detectors give what they find."""

FINDING_LAYERS = ("masks", "boxes")
"""Overlay layers drawn from findings; the other layers are evidence kinds
(``kensa.models.evidence``: ``heatmap``, ``gradcam`` and any a detector registers)."""

LABEL_COLORS: dict[str, tuple[int, int, int]] = {
    "pitted_surface": (230, 159, 0),  # orange
    "crazing": (86, 180, 233),  # sky blue
    "scratches": (0, 158, 115),  # bluish green
    "patches": (204, 121, 167),  # reddish purple
    ANOMALY_LABEL: (213, 94, 0),  # vermilion
}
"""Fixed colours (Okabe-Ito, colour-blind safe) for the Severstal families and 'anomaly';
other labels get a stable hashed hue (``label_color``)."""


def label_color(label: str) -> tuple[int, int, int]:
    """The label's fixed colour, or a stable hashed hue for labels without one."""
    import colorsys
    import hashlib

    if label in LABEL_COLORS:
        return LABEL_COLORS[label]
    digest = hashlib.sha256(label.encode()).digest()
    hue = digest[0] / 255.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.65 + digest[1] / 255.0 * 0.3, 0.85)
    return int(r * 255), int(g * 255), int(b * 255)


def label_hex(label: str) -> str:
    """``label_color`` as ``#RRGGBB`` for user interfaces."""
    r, g, b = label_color(label)
    return f"#{r:02X}{g:02X}{b:02X}"
