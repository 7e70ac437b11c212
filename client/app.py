"""The tablet client: entry point (``make_main``), routes and the page frame.

Routes: /capture, /result, /history, /detail, /charts, /demo, /settings. The same ``main`` runs
inside the server (web client at "/") and as a desktop/tablet app (``kensa client``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import flet as ft

from kensa.client.offline_queue import PhotoQueue
from kensa.client.state import AppState, ClientSettings
from kensa.client.views.capture import CaptureView
from kensa.client.views.charts import ChartsView
from kensa.client.views.demo import DemoView
from kensa.client.views.detail import DetailView
from kensa.client.views.history import HistoryView
from kensa.client.views.result import ResultView
from kensa.client.views.settings import SettingsView
from kensa.contract.client import ApiClient

log = logging.getLogger(__name__)

PREFS_KEY = "kensa.client.settings"
QUEUE_RETRY_SECONDS = 20
# (route, label, icon, manager only)
NAV = (
    ("/capture", "Capture", ft.Icons.PHOTO_CAMERA, False),
    ("/history", "History", ft.Icons.HISTORY, False),
    ("/charts", "Charts", ft.Icons.BAR_CHART, True),
    ("/demo", "Demo booth", ft.Icons.SLIDESHOW, False),
    ("/settings", "Settings", ft.Icons.SETTINGS, False),
)
SECTION = {"/result": "/capture", "/detail": "/history"}
THEME_MODES = {"light": ft.ThemeMode.LIGHT, "dark": ft.ThemeMode.DARK,
               "system": ft.ThemeMode.SYSTEM}


def nav_items(state: AppState) -> list[tuple[str, str, ft.IconData, bool]]:
    return [item for item in NAV if state.is_manager or not item[3]]


@ft.component
def MessageBar(state: AppState):
    """Offline state, the last error and the last good news, in plain words."""
    bars = []
    if not state.online:
        bars.append((f"The server at {state.api.base_url} cannot be reached right now. Photos are "
                     "kept on this device.",
                     ft.Colors.AMBER_100, ft.Icons.CLOUD_OFF, None))
    if state.error:
        bars.append((state.error, ft.Colors.RED_100, ft.Icons.ERROR_OUTLINE, "error"))
    if state.notice:
        bars.append((state.notice, ft.Colors.GREEN_100, ft.Icons.INFO_OUTLINE, "notice"))

    def dismiss(which: str):
        def handler():
            setattr(state, which, "")
        return handler

    return ft.Column(
        spacing=6,
        controls=[
            ft.Container(
                bgcolor=color,
                border_radius=10,
                padding=ft.Padding.symmetric(horizontal=14, vertical=6),
                content=ft.Row(
                    vertical_alignment=ft.CrossAxisAlignment.CENTER,
                    controls=[
                        ft.Icon(icon, color=ft.Colors.BLACK),
                        ft.Text(text, size=17, color=ft.Colors.BLACK, expand=True),
                        *([ft.TextButton("Dismiss", on_click=dismiss(which),
                                         style=ft.ButtonStyle(color=ft.Colors.BLACK))]
                          if which else []),
                    ],
                ),
            )
            for text, color, icon, which in bars
        ],
    )


@ft.component
def Screen(state: AppState, picker: ft.FilePicker, save_settings, web: bool):
    route = state.route
    if route == "/result":
        return ResultView(state)
    if route == "/history":
        return HistoryView(state)
    if route == "/detail":
        return DetailView(state)
    if route == "/charts":
        return ChartsView(state)
    if route == "/demo":
        return DemoView(state, picker)
    if route == "/settings":
        return SettingsView(state, save_settings, web, key=f"settings-{state.settings_version}")
    return CaptureView(state, picker)


@ft.component
def App(state: AppState, picker: ft.FilePicker, save_settings, web: bool):
    page = ft.context.page
    size, set_size = ft.use_state((page.width or 1280, page.height or 800))
    page.on_resize = lambda e: set_size((e.width, e.height))

    async def load_for_route():
        if state.route == "/history":
            await state.load_history()
        elif state.route == "/charts":
            await state.load_stats()
        elif state.route == "/capture":
            state.refresh_queue()
        elif state.route == "/demo":
            await state.load_samples()

    ft.use_effect(load_for_route, dependencies=[state.route])

    async def retry_queue_forever():
        while True:
            await asyncio.sleep(QUEUE_RETRY_SECONDS)
            if state.queue and not state.busy:
                with contextlib.suppress(Exception):
                    await state.flush_queue()

    ft.use_effect(retry_queue_forever, dependencies=[], cleanup=lambda: None)

    def apply_theme():
        page.theme_mode = THEME_MODES.get(state.settings.theme, ft.ThemeMode.LIGHT)
        page.update()

    ft.use_effect(apply_theme, dependencies=[state.settings.theme])

    items = nav_items(state)
    routes = [item[0] for item in items]
    section = SECTION.get(state.route, state.route)
    index = routes.index(section) if section in routes else 0

    def navigate(e: ft.Event) -> None:
        state.go(routes[int(e.control.selected_index)])

    content = ft.Container(
        expand=True,
        padding=ft.Padding.symmetric(horizontal=20, vertical=14),
        content=ft.Column(
            expand=True,
            spacing=10,
            controls=[MessageBar(state), Screen(state, picker, save_settings, web)],
        ),
    )
    kiosk = state.route == "/demo"
    portrait = size[0] < size[1]
    if kiosk:
        body = ft.Stack(expand=True, controls=[
            content,
            ft.Container(right=12, top=8, content=ft.TextButton(
                "Exit demo", icon=ft.Icons.CLOSE, on_click=lambda e: state.go("/capture"))),
        ])
        return [ft.View(route="/demo", padding=0, controls=[body])]
    if portrait:
        bar = ft.NavigationBar(
            selected_index=index,
            on_change=navigate,
            destinations=[ft.NavigationBarDestination(icon=icon, label=label)
                          for _, label, icon, _ in items],
        )
        return [ft.View(route=state.route, padding=0, controls=[content], navigation_bar=bar)]
    rail = ft.NavigationRail(
        selected_index=index,
        on_change=navigate,
        label_type=ft.NavigationRailLabelType.ALL,
        min_width=96,
        group_alignment=-0.9,
        leading=ft.Container(padding=ft.Padding.only(top=8, bottom=12), content=ft.Text(
            "kensa", size=24, weight=ft.FontWeight.BOLD, color=ft.Colors.PRIMARY)),
        destinations=[ft.NavigationRailDestination(icon=icon, label=label)
                      for _, label, icon, _ in items],
    )
    return [ft.View(route=state.route, padding=0, controls=[
        ft.Row(expand=True, spacing=0, vertical_alignment=ft.CrossAxisAlignment.STRETCH,
               controls=[rail, ft.VerticalDivider(width=1), content]),
    ])]


def make_main(
    api_url: str | Callable[[], str],
    *,
    public_url: str | None = None,
    queue_dir: str | Path,
    web: bool,
    server_override: str | None = None,
    token: str | None = None,
):
    """Build the Flet ``main(page)``.

    ``api_url`` is where the Python side reaches the API (a callable is resolved per session).
    ``public_url`` is put in front of image paths for the renderer ("" = same origin).
    In the desktop app the stored server address wins unless ``server_override`` is given.
    ``token`` is the bearer token every session sends (temporary kiosk mechanism).
    """

    async def main(page: ft.Page) -> None:
        page.title = "kensa inspection"
        page.theme = tablet_theme()
        page.dark_theme = tablet_theme()
        page.theme_mode = ft.ThemeMode.LIGHT
        prefs = ft.SharedPreferences()
        picker = ft.FilePicker()
        settings = ClientSettings()
        try:
            stored = await prefs.get(PREFS_KEY)
            if stored:
                settings = ClientSettings.from_dict(json.loads(str(stored)))
        except Exception as exc:  # unreadable prefs must not stop the app
            log.warning("could not read stored settings: %s", exc)
        base = api_url() if callable(api_url) else api_url
        if web:
            server = base
            shown = http_origin(page.url) if page.url else base
        else:
            server = server_override or (settings.server_url if stored_server(settings)
                                         else base)
            shown = server
        settings = ClientSettings.from_dict({**asdict(settings), "server_url": shown})
        state = AppState(
            api=ApiClient(server, public_url=public_url if web else None, token=token),
            queue_store=PhotoQueue(queue_dir),
            settings=settings,
        )
        start = page.route if page.route in {r for r, *_ in NAV} else "/capture"
        state.route = start if state.is_manager or start != "/charts" else "/capture"
        state.refresh_queue()

        async def save_settings(new: ClientSettings) -> None:
            if not web and new.server_url.rstrip("/") != state.api.base_url:
                old = state.api
                state.api = ApiClient(new.server_url, token=token)
                await old.aclose()
            await prefs.set(PREFS_KEY, json.dumps(asdict(new)))

        async def closed(e=None) -> None:
            await state.api.aclose()

        page.on_close = closed
        page.render_views(App, state, picker, save_settings, web)

    return main


def tablet_theme() -> ft.Theme:
    """Touch-sized controls (>= 48 px targets) even when the browser reports a desktop."""
    return ft.Theme(
        color_scheme_seed=ft.Colors.INDIGO,
        visual_density=ft.VisualDensity.STANDARD,
        chip_theme=ft.ChipTheme(padding=ft.Padding.symmetric(horizontal=6, vertical=8)),
    )


def stored_server(settings: ClientSettings) -> bool:
    return settings.server_url != ClientSettings().server_url


def http_origin(url: str) -> str:
    """The address a person types for this page: Flet web reports its websocket URL
    (``ws://host:port/...``), shown as ``http://host:port``."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))
