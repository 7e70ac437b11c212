"""A picture the API serves (photo, overlay, sample): from bytes fetched through the API client
whenever a token is used or the page is on another origin, else by URL."""

from __future__ import annotations

from typing import Any

import flet as ft

from kensa.client.state import AppState
from kensa.contract.client import ApiError


@ft.component
def ApiImage(state: AppState, path: str, **image: Any):
    """``path`` is an API path such as ``api.image_path(...)`` or a sample's ``thumbnail_url``."""
    api = state.api
    data, set_data = ft.use_state(None)

    async def load():
        if api.inline_images:
            try:
                set_data(await api.fetch_bytes(path))
            except ApiError as exc:
                set_data(b"")
                if exc.status == 401 and state.signed_in:
                    state.session_ended()

    ft.use_effect(load, dependencies=[path, api.base_url])
    if not api.inline_images:
        return ft.Image(src=api.src(path), gapless_playback=True, **image)
    if data is None:
        return ft.Container(alignment=ft.Alignment.CENTER, content=ft.ProgressRing())
    if not data:
        return ft.Text("The picture could not be loaded.", color=ft.Colors.WHITE)
    return ft.Image(src=data, gapless_playback=True, **image)
