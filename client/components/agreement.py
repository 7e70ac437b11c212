"""Machine vs person on the Charts screen (``GET /stats/agreement``): false-alarm and miss
rates per bucket, and a line per detector version. Drawn with containers like the other
charts."""

from __future__ import annotations

import flet as ft

from kensa.client.components.charts import bucket_caption
from kensa.contract.schemas import AgreementCounts, AgreementPublic

ALARM_COLOR = "#EF6C00"  # the machine said defect, the person OK
MISS_COLOR = "#6A1B9A"  # the machine said OK, the person defect


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def summary(counts: AgreementCounts) -> str:
    """One line in words: how often the machine and the people agreed."""
    if not counts.reviewed:
        return "No reviewed inspections in this period yet."
    return (f"{counts.reviewed} reviewed · agreed {rate(counts.agreement_rate)} · "
            f"false alarms {counts.false_alarms} ({rate(counts.false_alarm_rate)} of OK) · "
            f"misses {counts.misses} ({rate(counts.miss_rate)} of defects)")


def version_line(v) -> str:
    shadow = " (shadow)" if v.shadow else ""
    return (f"{v.detector} {v.version}{shadow}: {v.reviewed} reviewed · false alarms "
            f"{rate(v.false_alarm_rate)} · misses {rate(v.miss_rate)}")


def _key(color: str, words: str) -> ft.Control:
    return ft.Row(spacing=6, controls=[
        ft.Container(width=14, height=14, border_radius=3, bgcolor=color),
        ft.Text(words, size=15)])


@ft.component
def AgreementTrend(agreement: AgreementPublic | None, kind: str = "day", height: int = 110):
    """Per bucket two bars, the false-alarm and the miss rate; the reviewed count above."""
    if agreement is None:
        return ft.Text("Machine-vs-person figures could not be loaded.", size=16)
    columns = []
    buckets = agreement.buckets
    many = len(buckets) > 12
    for position, bucket in enumerate(buckets):
        bars = [
            ft.Container(
                expand=True, bgcolor=color,
                height=max(value * height, 2) if value is not None else 0,
                border_radius=ft.BorderRadius.only(top_left=3, top_right=3),
                tooltip=f"{words}: {rate(value)} ({bucket.reviewed} reviewed)")
            for value, color, words in ((bucket.false_alarm_rate, ALARM_COLOR, "false alarms"),
                                        (bucket.miss_rate, MISS_COLOR, "misses"))]
        columns.append(ft.Column(
            expand=many, width=None if many else 72, spacing=2,
            alignment=ft.MainAxisAlignment.END,
            horizontal_alignment=ft.CrossAxisAlignment.STRETCH,
            controls=[
                ft.Text(f"{bucket.reviewed}" if bucket.reviewed else "", size=12,
                        text_align=ft.TextAlign.CENTER),
                ft.Row(spacing=2, vertical_alignment=ft.CrossAxisAlignment.END, controls=bars),
                ft.Text(bucket_caption(bucket.start, kind, position == 0), size=12,
                        text_align=ft.TextAlign.CENTER, max_lines=1, no_wrap=True),
            ]))
    return ft.Column(spacing=8, controls=[
        ft.Text(summary(agreement.totals), size=16, weight=ft.FontWeight.W_500),
        ft.Row(spacing=20, controls=[_key(ALARM_COLOR, "false-alarm rate"),
                                     _key(MISS_COLOR, "miss rate"),
                                     ft.Text("number above a bar: inspections reviewed",
                                             size=14, color=ft.Colors.ON_SURFACE_VARIANT)]),
        ft.Container(height=height + 40, content=ft.Row(
            spacing=6 if many else 20, vertical_alignment=ft.CrossAxisAlignment.END,
            controls=columns)) if columns else ft.Container(),
        *[ft.Text(version_line(v), size=15) for v in agreement.by_version],
    ])
