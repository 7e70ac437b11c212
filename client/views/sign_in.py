"""Sign-in: big fields and button, the server address in view, errors in plain words."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import flet as ft

from kensa.client.state import AppState

FIELD = {"text_size": 22, "height": 72, "content_padding": ft.Padding.symmetric(
    horizontal=16, vertical=18)}


@ft.component
def SignInView(state: AppState, web: bool, use_server: Callable[[str], Awaitable[Any]]):
    """``use_server`` switches to another server address first (the desktop app; the web
    client always signs in to the server that served it)."""
    server, set_server = ft.use_state(state.api.base_url if not web
                                      else state.settings.server_url)
    username, set_username = ft.use_state("")
    password, set_password = ft.use_state("")

    async def sign_in():
        if state.busy:
            return
        if not web and server.strip().rstrip("/") != state.api.base_url:
            await use_server(server.strip())
        await state.sign_in(username, password)
        if state.online:  # refused or signed in: type it again / forget it; unreachable: keep
            set_password("")

    problem = state.error
    address = (ft.TextField(label="Server address", value=server, **FIELD,
                            on_change=lambda e: set_server(e.control.value))
               if not web else
               ft.Row(spacing=8, controls=[
                   ft.Icon(ft.Icons.DNS_OUTLINED, color=ft.Colors.ON_SURFACE_VARIANT),
                   ft.Text(f"Server: {server}", size=18, color=ft.Colors.ON_SURFACE_VARIANT),
               ]))
    card = ft.Container(
        width=560,
        padding=36,
        border_radius=20,
        bgcolor=ft.Colors.SURFACE_CONTAINER,
        content=ft.Column(
            tight=True,
            spacing=20,
            horizontal_alignment=ft.CrossAxisAlignment.STRETCH,
            controls=[
                ft.Text("kensa", size=40, weight=ft.FontWeight.BOLD, color=ft.Colors.PRIMARY),
                ft.Text("Sign in", size=30, weight=ft.FontWeight.BOLD),
                address,
                ft.TextField(label="User name", value=username, autofocus=True, **FIELD,
                             prefix_icon=ft.Icons.PERSON_OUTLINE,
                             on_change=lambda e: set_username(e.control.value)),
                ft.TextField(label="Password", value=password, password=True,
                             can_reveal_password=True, **FIELD,
                             prefix_icon=ft.Icons.LOCK_OUTLINE,
                             on_change=lambda e: set_password(e.control.value),
                             on_submit=sign_in),
                *([ft.Container(
                    bgcolor=ft.Colors.RED_100, border_radius=10, padding=14,
                    content=ft.Row(controls=[
                        ft.Icon(ft.Icons.ERROR_OUTLINE, color=ft.Colors.RED_900),
                        ft.Text(problem, size=19, color=ft.Colors.RED_900, expand=True),
                    ]))] if problem else []),
                *([ft.Container(
                    bgcolor=ft.Colors.GREEN_100, border_radius=10, padding=14,
                    content=ft.Text(state.notice, size=19, color=ft.Colors.BLACK))]
                  if state.notice and not problem else []),
                ft.FilledButton(
                    "Signing in…" if state.busy else "Sign in", icon=ft.Icons.LOGIN,
                    height=68, disabled=bool(state.busy), on_click=sign_in,
                    style=ft.ButtonStyle(text_style=ft.TextStyle(size=22))),
            ],
        ),
    )
    return ft.Container(expand=True, alignment=ft.Alignment.CENTER,
                        content=ft.Column(scroll=ft.ScrollMode.AUTO, controls=[card],
                                          horizontal_alignment=ft.CrossAxisAlignment.CENTER,
                                          alignment=ft.MainAxisAlignment.CENTER))
