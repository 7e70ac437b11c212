"""Teach this station: photograph good parts, choose the detector, train, compare, use it."""

from __future__ import annotations

import flet as ft

from kensa.client.components.metrics import MetricsTable, StateChip, made
from kensa.client.state import AppState, Photo
from kensa.client.views.capture import pick_photos
from kensa.contract.schemas import DetectorVersionPublic, JobPublic

BIG = 20
THUMB = (150, 96)
ADVISED = 30  # good photos a station is taught from
BUTTON = ft.ButtonStyle(text_style=ft.TextStyle(size=BIG))


@ft.component
def Thumbnail(state: AppState, index: int, photo: Photo):
    selected = state.teach.selected == index
    return ft.Container(
        width=THUMB[0], height=THUMB[1], border_radius=10,
        bgcolor=ft.Colors.BLACK, clip_behavior=ft.ClipBehavior.HARD_EDGE,
        border=ft.Border.all(4, ft.Colors.PRIMARY if selected else ft.Colors.TRANSPARENT),
        on_click=lambda e: state.select_teach_photo(index), ink=True,
        content=ft.Stack(controls=[
            ft.Image(src=photo.data, fit=ft.BoxFit.COVER, width=THUMB[0], height=THUMB[1],
                     semantics_label=f"good photo {index + 1}"),
            ft.Container(left=4, top=4, bgcolor=ft.Colors.with_opacity(0.7, ft.Colors.BLACK),
                         border_radius=6, padding=ft.Padding.symmetric(horizontal=6),
                         content=ft.Text(str(index + 1), size=14, color=ft.Colors.WHITE)),
        ]),
    )


@ft.component
def PhotoForm(state: AppState, picker: ft.FilePicker):
    form = state.teach
    busy = bool(state.busy)

    async def take():
        picked = await pick_photos(picker, camera=True)
        state.add_teach_photos([Photo(*p) for p in picked])

    async def choose():
        picked = await pick_photos(picker, camera=False, multiple=True)
        state.add_teach_photos([Photo(*p) for p in picked])

    async def retake():
        index = form.selected
        picked = await pick_photos(picker, camera=True)
        if picked and index is not None:
            state.replace_teach_photo(index, Photo(*picked[0]))

    def remove():
        if form.selected is not None:
            state.remove_teach_photo(form.selected)

    async def start():
        await state.start_teaching()

    def name_changed(e: ft.Event[ft.TextField]):
        state.set_teach_choice(name=e.control.value or "")

    count = len(form.photos)
    held = state.good_set.counts.get("good", 0) if state.good_set else 0
    station = state.settings.station or "-"
    counter = ft.Text(f"{count} new photo{'s' if count != 1 else ''}", size=26,
                      weight=ft.FontWeight.BOLD)
    advice = (f"The good set of {station} already holds {held} photo{'s' if held != 1 else ''}; "
              "the new ones are added to it." if held else
              f"About {ADVISED} photos of good parts make a good start.")
    strip = ft.Row(
        scroll=ft.ScrollMode.AUTO, spacing=10, height=THUMB[1] + 8,
        controls=[Thumbnail(state, i, p, key=f"t{i}-{p.filename}")
                  for i, p in enumerate(form.photos)]) if form.photos else ft.Container(
        height=THUMB[1] + 8, border_radius=10, alignment=ft.Alignment.CENTER,
        bgcolor=ft.Colors.SURFACE_CONTAINER_HIGHEST,
        content=ft.Text("No photos yet. Photograph good parts only, from the working angle.",
                        size=18, color=ft.Colors.ON_SURFACE_VARIANT))
    kinds = ft.Row(wrap=True, spacing=8, controls=[
        ft.Chip(label=ft.Text(k, size=16), selected=k == form.kind,
                on_select=lambda e, k=k: state.set_teach_choice(kind=k))
        for k in form.kinds])
    return ft.Column(spacing=14, controls=[
        ft.Row(wrap=True, spacing=16, vertical_alignment=ft.CrossAxisAlignment.CENTER, controls=[
            ft.FilledButton("Take photo", icon=ft.Icons.PHOTO_CAMERA, height=64, disabled=busy,
                            on_click=take, style=BUTTON),
            ft.OutlinedButton("Choose files", icon=ft.Icons.FOLDER_OPEN, height=64,
                              disabled=busy, on_click=choose, style=BUTTON),
            ft.Container(width=12),
            counter,
        ]),
        ft.Text(advice, size=16, color=ft.Colors.ON_SURFACE_VARIANT),
        strip,
        *([ft.Row(spacing=12, controls=[
            ft.Text(f"Photo {form.selected + 1}:", size=18),
            ft.OutlinedButton("Retake", icon=ft.Icons.CAMERA_ALT, height=52, on_click=retake),
            ft.OutlinedButton("Remove", icon=ft.Icons.DELETE_OUTLINE, height=52,
                              on_click=remove, style=ft.ButtonStyle(color=ft.Colors.RED_700)),
        ])] if form.selected is not None and form.selected < count else []),
        ft.Divider(),
        ft.Row(spacing=24, vertical_alignment=ft.CrossAxisAlignment.CENTER, wrap=True,
               controls=[
                   ft.Column(spacing=6, controls=[
                       ft.Text("Detector", size=16, color=ft.Colors.ON_SURFACE_VARIANT), kinds]),
                   ft.TextField(label="Model name", value=form.name, width=320,
                                hint_text=state.instance_name(), on_change=name_changed,
                                helper=f"empty = {state.instance_name()}"),
               ]),
        ft.Row(spacing=16, vertical_alignment=ft.CrossAxisAlignment.CENTER, controls=[
            ft.FilledButton("Start teaching", icon=ft.Icons.SCHOOL, height=64,
                            disabled=busy or not (count or held), on_click=start,
                            style=BUTTON),
            *([ft.ProgressRing(width=36, height=36), ft.Text(state.busy, size=BIG)]
              if busy else []),
        ]),
    ])


@ft.component
def Progress(state: AppState, job: JobPublic):
    async def cancel():
        await state.cancel_teaching()

    return ft.Column(spacing=14, controls=[
        ft.Text(f"Teaching {job.params.get('name', '')} ({job.params.get('detector', '')}) on "
                f"the good set of {state.settings.station}", size=20),
        ft.ProgressBar(value=max(0.02, job.progress), bar_height=14, border_radius=7,
                       semantics_label="training progress"),
        ft.Row(controls=[
            ft.Text(f"{job.progress:.0%}", size=BIG, weight=ft.FontWeight.BOLD, width=80),
            ft.Text(job.message.capitalize() or job.status, size=BIG, expand=True),
            ft.OutlinedButton("Cancel", icon=ft.Icons.CANCEL, height=52, on_click=cancel),
        ]),
        ft.Text("Inspections go on meanwhile; the training runs in the background.", size=16,
                color=ft.Colors.ON_SURFACE_VARIANT),
    ])


@ft.component
def VersionCard(title: str, version: DetectorVersionPublic | None, empty: str):
    body: list[ft.Control]
    if version is None:
        body = [ft.Text(empty, size=16, color=ft.Colors.ON_SURFACE_VARIANT)]
    else:
        body = [ft.Row(spacing=10, controls=[StateChip(version.state),
                                             ft.Text(version.version, size=18,
                                                     weight=ft.FontWeight.BOLD)]),
                ft.Text(made(version), size=14, color=ft.Colors.ON_SURFACE_VARIANT),
                MetricsTable(version.metrics)]
    return ft.Container(expand=True, border_radius=12, padding=16,
                        bgcolor=ft.Colors.SURFACE_CONTAINER,
                        content=ft.Column(spacing=8, controls=[
                            ft.Text(title, size=20, weight=ft.FontWeight.BOLD), *body]))


@ft.component
def Outcome(state: AppState, job: JobPublic):
    async def use():
        await state.use_taught_model()

    def again():
        state.teach_again()

    if job.status != "succeeded":
        words = "The training was cancelled." if job.status == "cancelled" else (
            f"The training failed: {job.message}")
        return ft.Column(spacing=14, controls=[
            ft.Text(words, size=BIG, color=ft.Colors.RED_800),
            ft.FilledButton("Teach again", icon=ft.Icons.REFRESH, height=64, on_click=again,
                            style=BUTTON)])
    name = str(job.params.get("name", ""))
    new = next((v for v in state.teach_versions if v.version == job.version), None)
    active = next((v for v in state.teach_versions if v.state == "active"), None)
    in_use = new is not None and new.state == "active"
    return ft.Column(spacing=14, controls=[
        ft.Row(spacing=12, controls=[
            ft.Icon(ft.Icons.CHECK_CIRCLE, color="#2E7D32", size=32),
            ft.Text(f"Training finished: {name} {job.version}", size=22,
                    weight=ft.FontWeight.BOLD)]),
        ft.Row(spacing=16, vertical_alignment=ft.CrossAxisAlignment.START, controls=[
            VersionCard("This version", new or DetectorVersionPublic(
                name=name, version=job.version or "", kind=str(job.params.get("detector")),
                state="candidate", metrics=job.metrics), ""),
            VersionCard("In use now", None if in_use else active,
                        "This version is in use." if in_use else
                        f"No version of {name} is in use yet."),
        ]),
        ft.Row(spacing=16, controls=[
            *([] if in_use else [ft.FilledButton(
                "Use this model", icon=ft.Icons.ROCKET_LAUNCH, height=64,
                disabled=bool(state.busy), on_click=use, style=BUTTON)]),
            ft.OutlinedButton("Teach again", icon=ft.Icons.REFRESH, height=64, on_click=again,
                              style=BUTTON),
            ft.OutlinedButton("All models", icon=ft.Icons.MODEL_TRAINING, height=64,
                              on_click=lambda e: state.go("/models"), style=BUTTON),
        ]),
    ])


@ft.component
def TeachView(state: AppState, picker: ft.FilePicker):
    job = state.job
    if job is None:
        body = PhotoForm(state, picker)
    elif state.teaching:
        body = Progress(state, job)
    else:
        body = Outcome(state, job)
    return ft.Column(expand=True, spacing=14, scroll=ft.ScrollMode.AUTO, controls=[
        ft.Text("Teach this station", size=30, weight=ft.FontWeight.BOLD),
        ft.Text(f"Station {state.settings.station or '-'} · photograph good parts; kensa "
                "learns what they look like and flags what differs.", size=16,
                color=ft.Colors.ON_SURFACE_VARIANT),
        body,
    ])
