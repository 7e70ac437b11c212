"""Models: each detector's versions with their figures; activate, roll back, shadow."""

from __future__ import annotations

import flet as ft

from kensa.client.components.metrics import StateChip, agreement_text, made, metric_rows
from kensa.client.state import AppState
from kensa.client.teaching import DetectorVersions
from kensa.contract.schemas import DetectorVersionPublic


@ft.component
def VersionRow(state: AppState, model: DetectorVersions, version: DetectorVersionPublic,
               older_than_active: bool):
    async def activate():
        await state.activate_version(model.name, version.version)

    async def shadow():
        await state.shadow_version(model.name, version.version)

    busy = bool(state.busy)
    buttons: list[ft.Control] = []
    if version.state != "active":
        buttons.append(ft.FilledButton(
            "Roll back" if older_than_active else "Activate",
            icon=ft.Icons.RESTORE if older_than_active else ft.Icons.ROCKET_LAUNCH,
            height=52, disabled=busy, on_click=activate))
    if version.state == "candidate" and model.active is not None:
        buttons.append(ft.OutlinedButton("Shadow", icon=ft.Icons.LAYERS, height=52,
                                         disabled=busy, on_click=shadow))
    figures = " · ".join(f"{k}: {v}" for k, v in metric_rows(version.metrics)[:3])
    agreement = agreement_text(version)
    return ft.Container(
        border_radius=10, padding=12,
        bgcolor=ft.Colors.SURFACE_CONTAINER_HIGH if version.state == "active" else None,
        content=ft.Row(spacing=16, vertical_alignment=ft.CrossAxisAlignment.CENTER, controls=[
            ft.Container(width=110, alignment=ft.Alignment.CENTER_LEFT,
                         content=StateChip(version.state)),
            ft.Column(expand=True, spacing=2, controls=[
                ft.Text(version.version, size=18, weight=ft.FontWeight.BOLD, selectable=True),
                ft.Text(made(version), size=14, color=ft.Colors.ON_SURFACE_VARIANT),
                ft.Text(figures or "no held-out figures", size=15),
                *([ft.Text(agreement, size=15, color=ft.Colors.AMBER_900)] if agreement
                  else []),
            ]),
            *buttons,
        ]),
    )


@ft.component
def ModelCard(state: AppState, model: DetectorVersions):
    active = model.active
    kind = model.versions[0].kind if model.versions else ""
    head = ft.Row(spacing=12, vertical_alignment=ft.CrossAxisAlignment.CENTER, controls=[
        ft.Text(model.name, size=22, weight=ft.FontWeight.BOLD),
        ft.Text(kind, size=16, color=ft.Colors.ON_SURFACE_VARIANT),
        ft.Container(expand=True),
        ft.Text(f"runs {model.loaded}" if model.loaded else "not running", size=15,
                color=ft.Colors.ON_SURFACE_VARIANT),
    ])
    if not model.versions:
        body: list[ft.Control] = [ft.Text(
            "No versions trained here: served from its artifact folder.", size=15,
            color=ft.Colors.ON_SURFACE_VARIANT)]
    else:
        active_at = active.created_at if active else None
        body = [VersionRow(state, model, v,
                           older_than_active=bool(active_at and v.created_at
                                                  and v.created_at < active_at),
                           key=v.version)
                for v in reversed(model.versions)]
    return ft.Container(border_radius=12, padding=16, bgcolor=ft.Colors.SURFACE_CONTAINER,
                        content=ft.Column(spacing=8, controls=[head, *body]))


@ft.component
def ModelsView(state: AppState):
    async def refresh():
        await state.load_models()

    return ft.Column(expand=True, spacing=12, scroll=ft.ScrollMode.AUTO, controls=[
        ft.Row(vertical_alignment=ft.CrossAxisAlignment.CENTER, controls=[
            ft.Text("Models", size=30, weight=ft.FontWeight.BOLD),
            ft.Container(expand=True),
            ft.OutlinedButton("Teach this station", icon=ft.Icons.SCHOOL, height=52,
                              on_click=lambda e: state.go("/teach")),
            ft.IconButton(ft.Icons.REFRESH, tooltip="Refresh", icon_size=28, on_click=refresh),
        ]),
        ft.Text("A new version inspects only after it is activated; shadow runs it beside the "
                "active one without showing its verdicts.", size=16,
                color=ft.Colors.ON_SURFACE_VARIANT),
        *([ModelCard(state, m, key=m.name) for m in state.models] or [
            ft.Text(state.busy or "No models yet.", size=20)]),
    ])
