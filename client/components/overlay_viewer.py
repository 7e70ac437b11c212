"""The inspected photo with switchable layers, zoom and pan."""

from __future__ import annotations

import flet as ft

from kensa.client.components.api_image import ApiImage
from kensa.client.components.palette import pretty
from kensa.client.state import AppState, explain
from kensa.contract.constants import ANOMALY_LABEL, label_hex
from kensa.contract.schemas import FindingPublic

LAYER_WORDS = {"masks": "Defect masks", "heatmap": "Anomaly heatmap", "gradcam": "Grad-CAM"}


@ft.component
def LayerChips(state: AppState):
    return ft.Row(
        wrap=True,
        spacing=8,
        controls=[
            ft.Chip(
                label=ft.Text(words, size=16),
                selected=layer in state.layers,
                on_select=lambda e, layer=layer: state.toggle_layer(layer),
                height=48,
            )
            for layer, words in LAYER_WORDS.items()
        ],
    )


@ft.component
def OverlayViewer(state: AppState, height: float = 320):
    """``height`` is the most the picture may take; wide strips take less."""
    record = state.current
    if record is None:
        return ft.Container()
    width_px, height_px = record.width or 4, record.height or 3
    return ft.Column(
        spacing=8,
        controls=[
            LayerChips(state),
            ft.Container(
                # Wide strips: as tall as their shape needs; other photos: a fixed height.
                aspect_ratio=width_px / height_px if width_px / height_px > 2.5 else None,
                height=None if width_px / height_px > 2.5 else height,
                border_radius=12,
                bgcolor=ft.Colors.BLACK,
                clip_behavior=ft.ClipBehavior.HARD_EDGE,
                content=ft.InteractiveViewer(
                    min_scale=1,
                    max_scale=10,
                    boundary_margin=ft.Margin.all(40),
                    content=ApiImage(
                        state, state.api.image_path(record.id, state.layers),
                        fit=ft.BoxFit.CONTAIN,
                        semantics_label="inspected photo with overlay",
                        error_content=ft.Text("The picture could not be loaded.",
                                              color=ft.Colors.WHITE),
                    ),
                ),
            ),
            ft.Text("Pinch or scroll to zoom, drag to pan.", size=13,
                    color=ft.Colors.ON_SURFACE_VARIANT),
        ],
    )


@ft.component
def FindingsList(findings: list[FindingPublic], size: int = 18, explain_lines: bool = False):
    if not findings:
        return ft.Text("Nothing found on this photo.", size=size)
    rows = []
    for finding in findings:
        label = finding.label or ANOMALY_LABEL
        score = finding.score
        rows.append(
            ft.Row(
                spacing=12,
                vertical_alignment=ft.CrossAxisAlignment.CENTER,
                controls=[
                    ft.Container(width=18, height=18, border_radius=9,
                                 bgcolor=label_hex(label)),
                    ft.Text(
                        explain(finding) if explain_lines else pretty(label),
                        size=size, expand=True, weight=ft.FontWeight.W_500,
                    ),
                    *(
                        []
                        if explain_lines
                        else [ft.Text(f"score {score:.2f}", size=size,
                                      weight=ft.FontWeight.BOLD)]
                    ),
                ],
            )
        )
    return ft.Column(spacing=6, controls=rows)
