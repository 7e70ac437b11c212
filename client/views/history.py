"""History: filters (manager), count and defect ratio, a thumbnail grid, more on demand."""

from __future__ import annotations

import flet as ft

from kensa.client.components.api_image import ApiImage
from kensa.client.components.filters import FilterBar
from kensa.client.components.palette import VERDICTS, pretty
from kensa.client.state import AppState, short_id
from kensa.client.views.result import when
from kensa.contract.schemas import InspectionPublic


@ft.component
def HistoryCard(state: AppState, record: InspectionPublic):
    async def open_it():
        await state.open_detail(record.id)

    bg, icon, _ = VERDICTS.get(record.verdict, ("#546E7A", ft.Icons.HELP, ""))
    labels = sorted({pretty(f.label) for f in record.findings if f.label})
    return ft.Container(
        border_radius=12,
        bgcolor=ft.Colors.SURFACE_CONTAINER,
        clip_behavior=ft.ClipBehavior.HARD_EDGE,
        on_click=open_it,
        ink=True,
        content=ft.Column(
            spacing=0,
            controls=[
                ft.Container(
                    expand=True,
                    bgcolor=ft.Colors.BLACK,
                    content=ApiImage(state, state.api.image_path(record.id, ("masks",)),
                                     fit=ft.BoxFit.COVER),
                ),
                ft.Container(
                    padding=10,
                    content=ft.Column(
                        spacing=2,
                        controls=[
                            ft.Row(spacing=6, controls=[
                                ft.Icon(icon, color=bg, size=22),
                                ft.Text(", ".join(labels) or "no defect", size=16,
                                        weight=ft.FontWeight.BOLD, expand=True, max_lines=1,
                                        overflow=ft.TextOverflow.ELLIPSIS),
                                ft.Text(f"#{short_id(record)}", size=13,
                                        color=ft.Colors.ON_SURFACE_VARIANT),
                            ]),
                            ft.Text(f"{when(record)[:16]} · {record.station or '-'}",
                                    size=14, max_lines=1, overflow=ft.TextOverflow.ELLIPSIS),
                        ],
                    ),
                ),
            ],
        ),
    )


@ft.component
def HistoryView(state: AppState):
    async def more():
        await state.load_history(more=True)

    async def refresh():
        await state.load_history()

    title = "History" if state.is_manager else "Recent inspections"
    summary = (f"{state.history_total} image{'s' if state.history_total != 1 else ''} · "
               f"{state.defect_ratio:.0%} with defects")
    grid = ft.GridView(
        expand=True,
        max_extent=260,
        child_aspect_ratio=1.3,
        spacing=12,
        run_spacing=12,
        controls=[HistoryCard(state, r, key=str(r.id)) for r in state.history],
    )
    return ft.Column(
        expand=True,
        spacing=12,
        controls=[
            ft.Row(
                vertical_alignment=ft.CrossAxisAlignment.CENTER,
                controls=[
                    ft.Text(title, size=30, weight=ft.FontWeight.BOLD),
                    ft.Container(expand=True),
                    ft.Text(summary, size=20, weight=ft.FontWeight.W_500),
                    ft.IconButton(ft.Icons.REFRESH, tooltip="Refresh", icon_size=28,
                                  on_click=refresh),
                ],
            ),
            *([FilterBar(state)] if state.is_manager else []),
            grid if state.history else ft.Text(
                "No inspections match these filters." if not state.busy else state.busy,
                size=20),
            *([ft.Row(alignment=ft.MainAxisAlignment.CENTER, controls=[
                ft.OutlinedButton(f"Show more ({state.history_total - len(state.history)} left)",
                                  height=52, on_click=more)])]
              if state.has_more else []),
        ],
    )
