"""Demo booth: a kiosk in four big steps that resets itself when left alone."""

from __future__ import annotations

import asyncio

import flet as ft

from kensa.client.components.api_image import ApiImage
from kensa.client.components.charts import StackedBars
from kensa.client.components.overlay_viewer import FindingsList, OverlayViewer
from kensa.client.components.verdict_badge import VerdictBadge
from kensa.client.state import AppState, short_id
from kensa.client.views.capture import pick_photo
from kensa.contract.schemas import SamplePublic

STEPS = ("Take a photo", "Watch the analysis", "See what was found", "See it in the history")
HUGE = 30


@ft.component
def StepBar(step: int):
    return ft.Row(
        spacing=10,
        controls=[
            ft.Container(
                expand=True,
                padding=ft.Padding.symmetric(vertical=10, horizontal=14),
                border_radius=14,
                bgcolor=ft.Colors.PRIMARY if i == step else ft.Colors.SURFACE_CONTAINER_HIGH,
                content=ft.Text(f"{i}  {text}", size=20, weight=ft.FontWeight.BOLD,
                                color=ft.Colors.ON_PRIMARY if i == step else None),
            )
            for i, text in enumerate(STEPS, start=1)
        ],
    )


def big_button(text: str, icon: ft.IconData, on_click, filled: bool = True) -> ft.Control:
    cls = ft.FilledButton if filled else ft.OutlinedButton
    return cls(text, icon=icon, height=84, on_click=on_click,
               style=ft.ButtonStyle(text_style=ft.TextStyle(size=HUGE),
                                    padding=ft.Padding.symmetric(horizontal=32)))


@ft.component
def DemoView(state: AppState, picker: ft.FilePicker):
    step = state.demo_step

    async def idle_reset():
        # Re-run on every step change; the previous countdown is cancelled by Flet.
        if step == 1:
            return
        await asyncio.sleep(max(5, state.settings.demo_idle_seconds))
        state.demo_reset()

    ft.use_effect(idle_reset, dependencies=[step], cleanup=lambda: None)

    async def take_photo():
        picked = await pick_photo(picker, camera=True)
        if picked:
            await state.demo_send(*picked)

    def use_sample(sample: SamplePublic):
        async def handler():
            await state.demo_send_sample(sample)
        return handler

    async def to_history():
        await state.demo_show_history()

    async def again():
        state.demo_reset()

    body: list[ft.Control]
    if step == 1:
        body = [
            ft.Text("Point the camera at a steel surface and take a photo,", size=HUGE),
            ft.Text("or tap one of the sample strips below.", size=HUGE),
            big_button("Take a photo", ft.Icons.PHOTO_CAMERA, take_photo),
            ft.Column(spacing=10, controls=[
                ft.Container(
                    on_click=use_sample(sample),
                    ink=True,
                    border_radius=10,
                    padding=6,
                    bgcolor=ft.Colors.SURFACE_CONTAINER,
                    content=ft.Row(controls=[
                        ft.Text(sample.title, size=22, width=200, weight=ft.FontWeight.W_500),
                        ft.Container(height=56, expand=True, content=ApiImage(
                            state, sample.thumbnail_url, height=56, fit=ft.BoxFit.FILL)),
                    ]),
                )
                for sample in state.samples
            ]),
        ]
    elif step == 2:
        body = [
            ft.Row(spacing=24, controls=[ft.ProgressRing(width=72, height=72, stroke_width=8),
                                         ft.Text("The detectors are looking at the photo…",
                                                 size=HUGE)]),
            *([ft.Text(state.error, size=22, color=ft.Colors.RED_700)] if state.error else []),
        ]
    elif step == 3 and state.current is not None:
        record = state.current
        body = [
            ft.Row(controls=[VerdictBadge(record.verdict, size=32),
                             ft.Container(expand=True),
                             big_button("See it in the history", ft.Icons.ARROW_FORWARD,
                                        to_history)]),
            OverlayViewer(state, height=260),
            ft.Text("What was found and why", size=26, weight=ft.FontWeight.BOLD),
            FindingsList(record.findings, size=22, explain_lines=True),
        ]
    else:
        body = [
            ft.Text(f"{'This week' if state.is_manager else 'So far'}: {state.history_total} "
                    f"photos, {state.defect_ratio:.0%} with defects.", size=HUGE),
            *([ft.Text(f"Yours is #{short_id(state.current)}, framed below.", size=24)]
              if state.current else []),
            ft.Row(spacing=10, controls=[
                ft.Container(
                    width=170, height=110, border_radius=10, bgcolor=ft.Colors.BLACK,
                    border=ft.Border.all(4, ft.Colors.PRIMARY)
                    if state.current and r.id == state.current.id else None,
                    content=ApiImage(state, state.api.image_path(r.id, ("masks",)),
                                     fit=ft.BoxFit.COVER),
                )
                for r in state.history[:6]
            ]),
            *([StackedBars(state.stats, state.highlight, state.toggle_highlight, height=140)]
              if state.is_manager else []),
            big_button("Start again", ft.Icons.REPLAY, again),
        ]
    if state.error and step != 2:
        body.insert(0, ft.Text(state.error, size=22, color=ft.Colors.RED_700))
    return ft.Column(
        expand=True,
        spacing=18,
        scroll=ft.ScrollMode.AUTO,
        controls=[
            ft.Text("How does the inspection work?", size=38, weight=ft.FontWeight.BOLD),
            StepBar(step),
            *body,
        ],
    )
