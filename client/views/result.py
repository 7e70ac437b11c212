"""Result of the inspection just sent: verdict, findings, overlay; the next photo one tap away."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import flet as ft

from kensa.client.components.overlay_viewer import FindingsList, OverlayViewer
from kensa.client.components.verdict_badge import VerdictBadge
from kensa.client.state import AppState


def when(record: dict[str, Any]) -> str:
    raw = str(record.get("created_at") or "")
    try:
        stamp = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return raw
    return stamp.strftime("%Y-%m-%d %H:%M:%S")


def detector_versions(record: dict[str, Any]) -> str:
    items = record.get("detectors") or []
    return ", ".join(f"{d.get('name')} {d.get('version') or ''}".strip() for d in items) or "-"


@ft.component
def RecordFacts(record: dict[str, Any]):
    score = record.get("anomaly_score")
    facts = [
        ("Captured", when(record)),
        ("Station", record.get("station") or "-"),
        ("Operator", record.get("operator") or "-"),
        ("Detectors", detector_versions(record)),
        ("Anomaly score", f"{float(score):.3f}" if score is not None else "-"),
        ("Size", f"{record.get('width', '?')} × {record.get('height', '?')} px"),
    ]
    return ft.Column(
        spacing=4,
        controls=[
            ft.Row(controls=[ft.Text(k, size=15, width=130, color=ft.Colors.ON_SURFACE_VARIANT),
                             ft.Text(str(v), size=16, expand=True, selectable=True)])
            for k, v in facts
        ],
    )


@ft.component
def ResultView(state: AppState):
    record = state.current
    if record is None:
        return ft.Text("No result yet.", size=20)

    async def next_photo():
        state.go("/capture")

    findings = record.get("findings") or []
    return ft.Column(
        expand=True,
        spacing=14,
        scroll=ft.ScrollMode.AUTO,
        controls=[
            ft.Row(
                spacing=16,
                vertical_alignment=ft.CrossAxisAlignment.CENTER,
                controls=[
                    VerdictBadge(record.get("verdict", "review"), size=26),
                    ft.Container(expand=True),
                    ft.FilledButton("Next photo", icon=ft.Icons.PHOTO_CAMERA, height=64,
                                    on_click=next_photo,
                                    style=ft.ButtonStyle(text_style=ft.TextStyle(size=20))),
                ],
            ),
            *([ft.Text(str(record["notice"]), size=16, color=ft.Colors.AMBER_900)]
              if record.get("notice") else []),
            OverlayViewer(state, height=300),
            ft.Row(
                vertical_alignment=ft.CrossAxisAlignment.START,
                spacing=24,
                controls=[
                    ft.Column(expand=True, controls=[
                        ft.Text(f"Findings ({len(findings)})", size=20,
                                weight=ft.FontWeight.BOLD),
                        FindingsList(findings),
                    ]),
                    ft.Column(expand=True, controls=[
                        ft.Text("Details", size=20, weight=ft.FontWeight.BOLD),
                        RecordFacts(record),
                    ]),
                ],
            ),
        ],
    )
