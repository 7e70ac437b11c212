"""Verdict colours and words of the UI. Label colours come from the contract, the same as the
server's overlays (``kensa.contract.constants.label_hex``)."""

from __future__ import annotations

import flet as ft

OK_COLOR = ft.Colors.BLUE_GREY_200
VERDICTS = {
    # verdict: (background, icon, words)
    "ok": ("#2E7D32", ft.Icons.CHECK_CIRCLE, "OK: no defect found"),
    "defect": ("#C62828", ft.Icons.ERROR, "Defect found"),
    "review": ("#B26A00", ft.Icons.HELP, "Needs review by a person"),
}


def pretty(label: str) -> str:
    return label.replace("_", " ")
