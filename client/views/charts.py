"""Charts: inspections per day, week or month stacked by label; defect-ratio trend; machine vs
person (false-alarm and miss rates of reviewed inspections, per bucket and detector version)."""

from __future__ import annotations

import flet as ft

from kensa.client.components.agreement import AgreementTrend
from kensa.client.components.charts import Legend, RatioTrend, StackedBars, bucket_labels
from kensa.client.components.filters import FilterBar
from kensa.client.components.palette import pretty
from kensa.client.state import AppState

BUCKETS = (("Per day", "day"), ("Per week", "week"), ("Per month", "month"))


@ft.component
def ChartsView(state: AppState):
    if not state.is_manager:
        return ft.Text("Charts are for managers and admins.", size=20)
    stats = state.stats

    async def reload():
        await state.load_stats()

    def bucket_chip(text: str, value: str) -> ft.Chip:
        async def pick():
            await state.load_stats(value)

        return ft.Chip(label=ft.Text(text, size=15), selected=state.bucket == value,
                       on_select=pick)

    totals = stats.totals if stats else None
    total = totals.total if totals else 0
    defective = totals.defective if totals else 0
    by_label = totals.by_label if totals else {}
    ratio = (totals.defect_ratio if totals else None) or 0.0
    if state.highlight and state.highlight != "__ok__":
        focus = (f"{pretty(state.highlight)}: {by_label.get(state.highlight, 0)} "
                 f"of {total} inspections. Tap it again to show all labels.")
    elif state.highlight == "__ok__":
        focus = f"No defect: {total - defective} of {total}. Tap it again to show all."
    else:
        focus = "Tap a label or a bar to highlight it."
    return ft.Column(
        expand=True,
        spacing=12,
        scroll=ft.ScrollMode.AUTO,
        controls=[
            ft.Row(
                vertical_alignment=ft.CrossAxisAlignment.CENTER,
                controls=[
                    ft.Text("Charts", size=30, weight=ft.FontWeight.BOLD),
                    ft.Container(expand=True),
                    ft.Text(f"{total} inspections · {defective} with defects · "
                            f"{ratio:.0%}", size=20,
                            weight=ft.FontWeight.W_500),
                ],
            ),
            FilterBar(state, on_change=reload),
            ft.Row(spacing=8, controls=[bucket_chip(t, v) for t, v in BUCKETS]),
            Legend(bucket_labels(stats), state.highlight, state.toggle_highlight,
                   counts={**by_label, "__ok__": total - defective}),
            ft.Text(focus, size=16, color=ft.Colors.ON_SURFACE_VARIANT),
            StackedBars(stats, state.highlight, state.toggle_highlight, kind=state.bucket),
            ft.Text("Share of photos with defects", size=20, weight=ft.FontWeight.BOLD),
            RatioTrend(stats, kind=state.bucket),
            ft.Text("Machine vs person (reviewed inspections)", size=20,
                    weight=ft.FontWeight.BOLD),
            AgreementTrend(state.agreement, kind=state.bucket),
        ],
    )
