"""Stacked bar chart and trend drawn with containers (flet-charts is not in the Flet web build).

Tapping a bar segment or a legend entry highlights that label and dims the others.
"""

from __future__ import annotations

from collections.abc import Callable

import flet as ft

from kensa.client.components.palette import OK_COLOR, pretty
from kensa.contract.constants import label_hex
from kensa.contract.schemas import StatsPublic

DIM = 0.18


def bucket_labels(stats: StatsPublic | None) -> list[str]:
    if stats is None:
        return []
    found = set(stats.totals.by_label)
    for bucket in stats.buckets:
        found |= set(bucket.by_label)
    return sorted(found)


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def bucket_caption(start: str, kind: str, first: bool) -> str:
    """Short axis text: day of month (with the month on the 1st and the first bar), week start,
    or month name."""
    try:
        year, month, day = (int(x) for x in str(start)[:10].split("-"))
    except ValueError:
        return str(start)[:10]
    name = MONTHS[month - 1]
    if kind == "month":
        return f"{name} {year}" if first or month == 1 else name
    if kind == "week":
        return f"{day} {name}"
    return f"{day} {name}" if first or day == 1 else str(day)


@ft.component
def Legend(labels: list[str], highlight: str | None, on_tap: Callable[[str | None], None],
           counts: dict[str, int] | None = None):
    counts = counts or {}

    def chip(label: str, color: str, text: str):
        if label in counts:
            text = f"{text} ({counts[label]})"
        return ft.Chip(
            label=ft.Text(text, size=15),
            leading=ft.Container(width=14, height=14, border_radius=7, bgcolor=color),
            selected=highlight == label,
            show_checkmark=False,
            opacity=1.0 if highlight in (None, label) else 0.45,
            on_select=lambda e, label=label: on_tap(label),
        )

    return ft.Row(
        wrap=True,
        spacing=8,
        controls=[
            *[chip(label, label_hex(label), pretty(label)) for label in labels],
            chip("__ok__", OK_COLOR, "no defect"),
        ],
    )


@ft.component
def StackedBars(stats: StatsPublic | None, highlight: str | None,
                on_tap: Callable[[str | None], None], kind: str = "day", height: int = 240):
    buckets = stats.buckets if stats else []
    if not buckets:
        return ft.Text("No inspections in this period.", size=18)
    labels = bucket_labels(stats)
    peak = max(max(b.total for b in buckets), 1)
    scale = height / peak

    def segment(label: str, count: float, color: str) -> ft.Control:
        return ft.Container(
            height=max(count * scale, 2),
            bgcolor=color,
            opacity=1.0 if highlight in (None, label) else DIM,
            tooltip=f"{pretty(label) if label != '__ok__' else 'no defect'}: {count:g}",
            on_click=lambda e: on_tap(label),
        )

    columns = []
    for position, bucket in enumerate(buckets):
        total, defective = bucket.total, bucket.defective
        by_label = {k: v for k, v in bucket.by_label.items() if v}
        labelled = sum(by_label.values())
        # A photo can carry several labels: label segments share the defective part.
        share = (defective / labelled) if labelled > defective > 0 else 1.0
        parts = [segment(label, by_label[label] * share, label_hex(label))
                 for label in reversed(labels) if label in by_label]
        if total - defective > 0:
            parts.append(segment("__ok__", total - defective, OK_COLOR))
        shown = by_label.get(highlight, 0) if highlight and highlight != "__ok__" else total
        columns.append(
            ft.Column(
                expand=len(buckets) > 12,
                width=None if len(buckets) > 12 else 72,
                spacing=0,
                alignment=ft.MainAxisAlignment.END,
                horizontal_alignment=ft.CrossAxisAlignment.STRETCH,
                controls=[
                    ft.Text(f"{shown}" if total else "", size=13,
                            text_align=ft.TextAlign.CENTER),
                    *parts,
                    ft.Text(bucket_caption(bucket.start, kind, position == 0),
                            size=12, text_align=ft.TextAlign.CENTER, max_lines=1,
                            overflow=ft.TextOverflow.VISIBLE, no_wrap=True),
                ],
            )
        )
    return ft.Container(
        height=height + 44,
        content=ft.Row(spacing=6 if len(buckets) > 12 else 20,
                       vertical_alignment=ft.CrossAxisAlignment.END, controls=columns),
    )


@ft.component
def RatioTrend(stats: StatsPublic | None, kind: str = "day", height: int = 90):
    buckets = stats.buckets if stats else []
    cols = []
    for bucket in buckets:
        total = bucket.total
        ratio = (bucket.defective / total) if total else 0.0
        cols.append(
            ft.Column(
                expand=len(buckets) > 12,
                width=None if len(buckets) > 12 else 72,
                spacing=2,
                alignment=ft.MainAxisAlignment.END,
                horizontal_alignment=ft.CrossAxisAlignment.STRETCH,
                controls=[
                    ft.Text(f"{ratio:.0%}" if total else "", size=12,
                            text_align=ft.TextAlign.CENTER),
                    ft.Container(height=max(ratio * height, 2) if total else 0,
                                 bgcolor="#C62828",
                                 border_radius=ft.BorderRadius.only(top_left=4, top_right=4)),
                ],
            )
        )
    return ft.Container(height=height + 22,
                        content=ft.Row(spacing=6 if len(buckets) > 12 else 20,
                                       vertical_alignment=ft.CrossAxisAlignment.END,
                                       controls=cols))
