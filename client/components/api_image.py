"""An inspection photo or overlay: by URL in the web client, by bytes elsewhere."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flet as ft

from kensa.client.api import ApiError
from kensa.client.state import AppState


@ft.component
def ApiImage(state: AppState, inspection_id: int | str, layers: Sequence[str] = (),
             **image: Any):
    api = state.api
    data, set_data = ft.use_state(None)

    async def load():
        if api.inline_images:
            try:
                set_data(await api.image_bytes(inspection_id, layers))
            except ApiError:
                set_data(b"")

    ft.use_effect(load, dependencies=[inspection_id, ",".join(layers), api.base_url])
    if not api.inline_images:
        return ft.Image(src=api.image_src(inspection_id, layers), gapless_playback=True, **image)
    if data is None:
        return ft.Container(alignment=ft.Alignment.CENTER, content=ft.ProgressRing())
    if not data:
        return ft.Text("The picture could not be loaded.", color=ft.Colors.WHITE)
    return ft.Image(src=data, gapless_playback=True, **image)
