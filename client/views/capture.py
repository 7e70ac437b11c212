"""Capture: take a photo or pick a file, preview, send; the offline queue."""

from __future__ import annotations

from pathlib import Path

import flet as ft

from kensa.client.state import AppState

BIG = 20


async def pick_photo(picker: ft.FilePicker, camera: bool) -> tuple[str, bytes] | None:
    """Open the picker (on a tablet browser 'image' offers the camera). None when cancelled."""
    picked = await pick_photos(picker, camera)
    return picked[0] if picked else None


async def pick_photos(picker: ft.FilePicker, camera: bool,
                      multiple: bool = False) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of the photos taken or chosen ([] when cancelled)."""
    files = await picker.pick_files(
        dialog_title="Take or choose a photo" if camera else "Choose photos",
        file_type=ft.FilePickerFileType.IMAGE if camera else ft.FilePickerFileType.CUSTOM,
        allowed_extensions=None if camera else ["jpg", "jpeg", "png", "bmp", "tif", "tiff"],
        allow_multiple=multiple,
        with_data=True,
        cancel_upload_on_window_blur=False,
    )
    out = []
    for chosen in files or []:
        data = chosen.bytes
        if data is None and chosen.path:
            data = Path(chosen.path).read_bytes()
        if data:
            out.append((chosen.name, data))
    return out


@ft.component
def QueuePanel(state: AppState):
    if not state.queue:
        return ft.Container()
    rows = []
    for item in state.queue:
        status = f"refused: {item.error}" if item.error else "waiting for the server"
        rows.append(
            ft.Row(
                controls=[
                    ft.Icon(ft.Icons.SCHEDULE if not item.error else ft.Icons.WARNING,
                            color=ft.Colors.AMBER_800),
                    ft.Text(f"{item.filename} ({item.queued_at[:16].replace('T', ' ')}), "
                            f"{status}", size=16, expand=True),
                    *(
                        [
                            ft.TextButton("Try again",
                                          on_click=lambda e, i=item.id: state.retry_queued(i)),
                            ft.TextButton("Discard",
                                          on_click=lambda e, i=item.id: state.discard_queued(i)),
                        ]
                        if item.error
                        else []
                    ),
                ]
            )
        )
    return ft.Container(
        bgcolor=ft.Colors.AMBER_50,
        border=ft.Border.all(1, ft.Colors.AMBER_700),
        border_radius=12,
        padding=16,
        content=ft.Column(
            spacing=8,
            controls=[
                ft.Row(
                    controls=[
                        ft.Text(f"{len(state.queue)} photo{'s' if len(state.queue) != 1 else ''} "
                                "saved on this device, not sent yet",
                                size=18, weight=ft.FontWeight.BOLD, color=ft.Colors.BLACK,
                                expand=True),
                        ft.FilledButton("Send now", icon=ft.Icons.CLOUD_UPLOAD, height=48,
                                        on_click=state.flush_queue),
                    ]
                ),
                *rows,
            ],
        ),
    )


@ft.component
def CaptureView(state: AppState, picker: ft.FilePicker):
    async def take(camera: bool):
        picked = await pick_photo(picker, camera)
        if picked:
            state.set_photo(*picked)

    async def take_photo():
        await take(True)

    async def choose_file():
        await take(False)

    async def send():
        await state.send_photo()

    busy = bool(state.busy)
    preview: ft.Control
    if state.photo is not None:
        preview = ft.Image(src=state.photo.data, fit=ft.BoxFit.CONTAIN,
                           semantics_label="photo preview")
    else:
        preview = ft.Column(
            alignment=ft.MainAxisAlignment.CENTER,
            horizontal_alignment=ft.CrossAxisAlignment.CENTER,
            controls=[
                ft.Icon(ft.Icons.PHOTO_CAMERA, size=72, color=ft.Colors.ON_SURFACE_VARIANT),
                ft.Text("No photo yet. Take one or choose a file.", size=BIG,
                        color=ft.Colors.ON_SURFACE_VARIANT),
            ],
        )
    return ft.Column(
        expand=True,
        spacing=16,
        scroll=ft.ScrollMode.AUTO,
        controls=[
            ft.Text("New inspection", size=30, weight=ft.FontWeight.BOLD),
            ft.Text(f"Station {state.settings.station or '-'} · operator "
                    f"{state.operator_name or '-'}", size=16,
                    color=ft.Colors.ON_SURFACE_VARIANT),
            QueuePanel(state),
            ft.Row(
                wrap=True,
                spacing=16,
                controls=[
                    ft.FilledButton("Take photo", icon=ft.Icons.PHOTO_CAMERA, height=64,
                                    disabled=busy, on_click=take_photo,
                                    style=ft.ButtonStyle(text_style=ft.TextStyle(size=BIG))),
                    ft.OutlinedButton("Choose file", icon=ft.Icons.FOLDER_OPEN, height=64,
                                      disabled=busy, on_click=choose_file,
                                      style=ft.ButtonStyle(text_style=ft.TextStyle(size=BIG))),
                ],
            ),
            ft.Container(
                height=240,
                border_radius=12,
                bgcolor=ft.Colors.SURFACE_CONTAINER_HIGHEST,
                alignment=ft.Alignment.CENTER,
                padding=8,
                content=preview,
            ),
            ft.Row(
                spacing=16,
                vertical_alignment=ft.CrossAxisAlignment.CENTER,
                controls=[
                    ft.FilledButton(
                        "Send for inspection", icon=ft.Icons.SEND, height=64,
                        disabled=busy or state.photo is None,
                        on_click=send,
                        style=ft.ButtonStyle(text_style=ft.TextStyle(size=BIG)),
                    ),
                    *([ft.ProgressRing(width=40, height=40),
                       ft.Text(state.busy, size=BIG)] if busy else []),
                ],
            ),
        ],
    )
