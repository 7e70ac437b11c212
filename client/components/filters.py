"""History / charts filter bar: date range, verdict, defect yes-no, labels, station."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import flet as ft

from kensa.client.components.palette import pretty
from kensa.client.state import AppState, HistoryFilter, label_names
from kensa.contract.constants import LABEL_COLORS, label_hex

DAYS = (("Today", 0), ("7 days", 7), ("30 days", 30), ("All time", None))
VERDICT_CHOICES = (("OK", "ok"), ("Defect", "defect"), ("Needs review", "review"))
DEFECT_CHOICES = (("With defects", True), ("Without defects", False))


def _chip(text: str, selected: bool, on_select: Callable[[], Awaitable[None]],
          color: str | None = None) -> ft.Chip:
    async def handler():
        await on_select()

    return ft.Chip(
        label=ft.Text(text, size=15),
        selected=selected,
        on_select=handler,
        leading=(ft.Container(width=14, height=14, border_radius=7, bgcolor=color)
                 if color else None),
        show_checkmark=color is None,
    )


@ft.component
def FilterBar(state: AppState, on_change: Callable[[], Awaitable[Any]] | None = None):
    f: HistoryFilter = state.filters

    async def apply(**changes: Any):
        await state.set_filters(**changes)
        if on_change:
            await on_change()

    async def toggle_label(label: str):
        await state.toggle_label_filter(label)
        if on_change:
            await on_change()

    async def station_submit(e: ft.Event[ft.TextField]):
        value = (e.control.value or "").strip()
        if value != state.filters.station:
            await apply(station=value)

    labels = sorted(set(LABEL_COLORS) | set(label_names(state.history)) | set(f.labels))
    row = []
    row.extend(_chip(t, f.days == d, lambda d=d: apply(days=d)) for t, d in DAYS)
    row.append(ft.VerticalDivider(width=12))
    row.extend(
        _chip(t, f.verdict == v, lambda v=v: apply(verdict=None if f.verdict == v else v))
        for t, v in VERDICT_CHOICES
    )
    row.append(ft.VerticalDivider(width=12))
    row.extend(
        _chip(t, f.has_defect is b,
              lambda b=b: apply(has_defect=None if f.has_defect is b else b))
        for t, b in DEFECT_CHOICES
    )
    return ft.Column(
        spacing=6,
        controls=[
            ft.Row(wrap=True, spacing=8, run_spacing=6, controls=row),
            ft.Row(
                wrap=True,
                spacing=8,
                run_spacing=6,
                vertical_alignment=ft.CrossAxisAlignment.CENTER,
                controls=[
                    *[
                        _chip(pretty(label), label in f.labels,
                              lambda label=label: toggle_label(label), label_hex(label))
                        for label in labels
                    ],
                    ft.TextField(
                        label="Station", value=f.station, width=180, dense=True,
                        on_submit=station_submit, on_blur=station_submit,
                    ),
                ],
            ),
        ],
    )
