"""Label colours, the same as the backend overlays (``models.visualize.LABEL_COLORS``)."""

from __future__ import annotations

import colorsys
import hashlib

import flet as ft

LABEL_COLORS: dict[str, str] = {
    "pitted_surface": "#E69F00",
    "crazing": "#56B4E9",
    "scratches": "#009E73",
    "patches": "#CC79A7",
    "anomaly": "#D55E00",
}
OK_COLOR = ft.Colors.BLUE_GREY_200
VERDICTS = {
    # verdict: (background, icon, words)
    "ok": ("#2E7D32", ft.Icons.CHECK_CIRCLE, "OK: no defect found"),
    "defect": ("#C62828", ft.Icons.ERROR, "Defect found"),
    "review": ("#B26A00", ft.Icons.HELP, "Needs review by a person"),
}


def label_color(label: str) -> str:
    """The label's fixed colour, or the same hashed hue the backend uses for other labels."""
    if label in LABEL_COLORS:
        return LABEL_COLORS[label]
    digest = hashlib.sha256(label.encode()).digest()
    r, g, b = colorsys.hsv_to_rgb(digest[0] / 255.0, 0.65 + digest[1] / 255.0 * 0.3, 0.85)
    return f"#{int(r * 255):02X}{int(g * 255):02X}{int(b * 255):02X}"


def pretty(label: str) -> str:
    return label.replace("_", " ")
