"""Result of the inspection just sent: verdict, findings, overlay; the next photo one tap away."""

from __future__ import annotations

import flet as ft

from kensa.client.components.overlay_viewer import FindingsList, OverlayViewer
from kensa.client.components.verdict_badge import VerdictBadge
from kensa.client.state import AppState
from kensa.contract.schemas import InspectionPublic, iso_utc


def when(record: InspectionPublic) -> str:
    """When the photo was taken, UTC, to the second."""
    return (iso_utc(record.created_at) or "")[:19].replace("T", " ")


def detector_versions(record: InspectionPublic) -> str:
    return ", ".join(f"{d.name} {d.version or ''}".strip() for d in record.detectors) or "-"


@ft.component
def RecordFacts(record: InspectionPublic):
    score = record.anomaly_score
    facts = [
        ("Captured", when(record)),
        ("Station", record.station or "-"),
        ("Operator", record.operator or "-"),
        ("Detectors", detector_versions(record)),
        ("Anomaly score", f"{score:.3f}" if score is not None else "-"),
        ("Size", f"{record.width} × {record.height} px"),
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

    findings = record.findings
    return ft.Column(
        expand=True,
        spacing=14,
        scroll=ft.ScrollMode.AUTO,
        controls=[
            ft.Row(
                spacing=16,
                vertical_alignment=ft.CrossAxisAlignment.CENTER,
                controls=[
                    VerdictBadge(record.verdict, size=26),
                    ft.Container(expand=True),
                    ft.FilledButton("Next photo", icon=ft.Icons.PHOTO_CAMERA, height=64,
                                    on_click=next_photo,
                                    style=ft.ButtonStyle(text_style=ft.TextStyle(size=20))),
                ],
            ),
            *([ft.Text(record.notice, size=16, color=ft.Colors.AMBER_900)]
              if record.notice else []),
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
