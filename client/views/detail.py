"""One inspection from history: facts, findings, zoomable overlay, delete with undo."""

from __future__ import annotations

import flet as ft

from kensa.client.components.overlay_viewer import FindingsList, OverlayViewer
from kensa.client.components.verdict_badge import VerdictBadge
from kensa.client.state import AppState, short_id
from kensa.client.views.result import RecordFacts


@ft.component
def DetailView(state: AppState):
    record = state.current
    if record is None:
        return ft.Text("Nothing selected.", size=20)

    async def back():
        state.go("/history")

    async def undo():
        await state.undo_delete()

    async def delete():
        if await state.delete(record.id):
            ft.context.page.show_dialog(ft.SnackBar(
                content=ft.Text(f"Inspection #{short_id(record)} deleted.", size=18),
                action=ft.SnackBarAction(label="Undo", on_click=undo),
                duration=ft.Duration(seconds=8),
            ))

    async def add_good():
        await state.add_to_good_set(record)

    return ft.Column(
        expand=True,
        spacing=12,
        scroll=ft.ScrollMode.AUTO,
        controls=[
            ft.Row(
                vertical_alignment=ft.CrossAxisAlignment.CENTER,
                spacing=16,
                controls=[
                    ft.OutlinedButton("Back", icon=ft.Icons.ARROW_BACK, height=52, on_click=back),
                    ft.Text(f"Inspection #{short_id(record)}", size=28, weight=ft.FontWeight.BOLD),
                    VerdictBadge(record.verdict, size=20),
                    ft.Container(expand=True),
                    *([ft.OutlinedButton(
                        "Add to good set", icon=ft.Icons.PLAYLIST_ADD_CHECK, height=52,
                        on_click=add_good)] if state.is_manager else []),
                    *([ft.OutlinedButton(
                        "Delete", icon=ft.Icons.DELETE_OUTLINE, height=52, on_click=delete,
                        style=ft.ButtonStyle(color=ft.Colors.RED_700))]
                      if state.is_manager else []),
                ],
            ),
            OverlayViewer(state, height=300),
            ft.Row(
                vertical_alignment=ft.CrossAxisAlignment.START,
                spacing=24,
                controls=[
                    ft.Column(expand=True, controls=[
                        ft.Text("Findings", size=20, weight=ft.FontWeight.BOLD),
                        FindingsList(record.findings),
                    ]),
                    ft.Column(expand=True, controls=[RecordFacts(record)]),
                ],
            ),
        ],
    )
