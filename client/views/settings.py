"""Settings: who is signed in (and sign out), server, station, operator, theme, demo idle time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import flet as ft

from kensa.client.state import AppState, ClientSettings


@ft.component
def SettingsView(state: AppState, on_save: Callable[[ClientSettings], Awaitable[Any]],
                 web: bool):
    s = state.settings
    server_url, set_server_url = ft.use_state(s.server_url)
    station, set_station = ft.use_state(s.station)
    operator, set_operator = ft.use_state(s.operator)
    idle, set_idle = ft.use_state(str(s.demo_idle_seconds))
    theme, set_theme = ft.use_state(s.theme)

    async def save():
        try:
            idle_seconds = max(5, int(idle or 90))
        except ValueError:
            state.error = "The demo reset time must be a whole number of seconds."
            return
        settings = state.update_settings(
            server_url=server_url.strip() or s.server_url, station=station.strip(),
            operator=operator.strip(), theme=theme, demo_idle_seconds=idle_seconds,
        )
        await on_save(settings)
        state.notice = "Settings saved."

    async def sign_out():
        await state.sign_out()

    session = state.session
    who = (f"Signed in as {session.username} ({session.role})" if session else "Not signed in")
    may = {"operator": "capture, recent results, demo booth",
           "manager": "also history filters, charts, delete",
           "admin": "everything a manager may, and accounts"}.get(state.role, "")

    def choice(value: str, current: str, setter: Callable[[str], None], text: str):
        return ft.Chip(label=ft.Text(text, size=16), selected=value == current,
                       on_select=lambda e: setter(value))

    return ft.Column(
        expand=True,
        spacing=16,
        scroll=ft.ScrollMode.AUTO,
        controls=[
            ft.Text("Settings", size=30, weight=ft.FontWeight.BOLD),
            ft.Container(
                width=640, padding=16, border_radius=12, bgcolor=ft.Colors.SURFACE_CONTAINER,
                content=ft.Row(vertical_alignment=ft.CrossAxisAlignment.CENTER, controls=[
                    ft.Icon(ft.Icons.ACCOUNT_CIRCLE, size=40, color=ft.Colors.PRIMARY),
                    ft.Column(spacing=2, expand=True, controls=[
                        ft.Text(who, size=20, weight=ft.FontWeight.BOLD),
                        ft.Text(f"The server decides the role: {may}." if may else "",
                                size=15, color=ft.Colors.ON_SURFACE_VARIANT),
                    ]),
                    ft.OutlinedButton("Sign out", icon=ft.Icons.LOGOUT, height=52,
                                      on_click=sign_out),
                ]),
            ),
            ft.TextField(label="Server address", value=server_url, read_only=web, width=640,
                         helper="This page is served by the server itself." if web
                         else "For example http://192.168.1.20:8000",
                         on_change=lambda e: set_server_url(e.control.value)),
            ft.TextField(label="Station", value=station, width=640,
                         on_change=lambda e: set_station(e.control.value)),
            ft.TextField(label="Operator", value=operator, width=640,
                         on_change=lambda e: set_operator(e.control.value)),
            ft.TextField(label="Demo booth resets after (seconds)", value=idle, width=640,
                         keyboard_type=ft.KeyboardType.NUMBER,
                         on_change=lambda e: set_idle(e.control.value)),
            ft.Text("Theme", size=18, weight=ft.FontWeight.BOLD),
            ft.Row(spacing=8, controls=[choice(v, theme, set_theme, v.capitalize())
                                        for v in ("light", "dark", "system")]),
            ft.Row(controls=[ft.FilledButton("Save", icon=ft.Icons.SAVE, height=56,
                                             on_click=save)]),
        ],
    )
