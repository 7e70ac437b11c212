"""The tablet client: entry point (``make_main``), routes and the page frame.

Routes: /capture, /result, /history, /detail, /review, /charts, /teach, /models, /demo, /settings,
each shown only to the roles that may use it, and the sign-in screen in place of all of them
until someone signs in. The same ``main`` runs inside the server (web client at "/") and as a
desktop/tablet app (``kensa client``).
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
from kensa.client.state import SIGN_IN, AppState, ClientSettings, Session
from kensa.client.views.capture import CaptureView
from kensa.client.views.charts import ChartsView
from kensa.client.views.demo import DemoView
from kensa.client.views.detail import DetailView
from kensa.client.views.history import HistoryView
from kensa.client.views.models import ModelsView
from kensa.client.views.result import ResultView
from kensa.client.views.review import ReviewView, review_key
from kensa.client.views.settings import SettingsView
from kensa.client.views.sign_in import SignInView
from kensa.client.views.teach import TeachView
from kensa.contract.client import ApiClient

log = logging.getLogger(__name__)

PREFS_KEY = "kensa.client.settings"
SESSION_KEY = "kensa.client.session"  # the token, kept on the device until it expires
QUEUE_RETRY_SECONDS = 20
# (route, label, icon); which of them a role sees is the state's rule (``AppState.may_open``)
NAV = (
    ("/capture", "Capture", ft.Icons.PHOTO_CAMERA),
    ("/history", "History", ft.Icons.HISTORY),
    ("/review", "Review", ft.Icons.RATE_REVIEW),
    ("/charts", "Charts", ft.Icons.BAR_CHART),
    ("/teach", "Teach", ft.Icons.SCHOOL),
    ("/models", "Models", ft.Icons.MODEL_TRAINING),
    ("/demo", "Demo booth", ft.Icons.SLIDESHOW),
    ("/settings", "Settings", ft.Icons.SETTINGS),
)
SECTION = {"/result": "/capture", "/detail": "/history"}
THEME_MODES = {"light": ft.ThemeMode.LIGHT, "dark": ft.ThemeMode.DARK,
               "system": ft.ThemeMode.SYSTEM}


def nav_items(state: AppState) -> list[tuple[str, str, ft.IconData]]:
    return [item for item in NAV if state.may_open(item[0])]


def nav_icon(state: AppState, route: str, icon: ft.IconData) -> ft.Icon:
    """The destination's icon; Review's carries the count of open reviews."""
    count = state.review_open if route == "/review" else 0
    return ft.Icon(icon, badge=str(count) if count else None)


@ft.component
def SignedIn(state: AppState, compact: bool = False):
    """The signed-in user and role, under the logo (or above the screen in portrait)."""
    session = state.session
    if session is None:
        return ft.Container()
    role = ft.Container(
        bgcolor=ft.Colors.PRIMARY_CONTAINER, border_radius=8,
        padding=ft.Padding.symmetric(horizontal=8, vertical=2),
        content=ft.Text(session.role, size=14, weight=ft.FontWeight.BOLD,
                        color=ft.Colors.ON_PRIMARY_CONTAINER))
    name = ft.Text(session.username, size=15, max_lines=1, overflow=ft.TextOverflow.ELLIPSIS,
                   text_align=ft.TextAlign.CENTER)
    if compact:
        return ft.Row(spacing=8, controls=[ft.Icon(ft.Icons.ACCOUNT_CIRCLE), name, role])
    return ft.Column(spacing=4, width=92,
                     horizontal_alignment=ft.CrossAxisAlignment.CENTER,
                     controls=[name, role])


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
    if route == "/review":
        return ReviewView(state)
    if route == "/teach":
        return TeachView(state, picker)
    if route == "/models":
        return ModelsView(state)
    if route == "/demo":
        return DemoView(state, picker)
    if route == "/settings":
        return SettingsView(state, save_settings, web, key=f"settings-{state.settings_version}")
    return CaptureView(state, picker)


@ft.component
def App(state: AppState, picker: ft.FilePicker, save_settings, save_session, use_server,
        web: bool):
    page = ft.context.page
    size, set_size = ft.use_state((page.width or 1280, page.height or 800))
    page.on_resize = lambda e: set_size((e.width, e.height))

    async def persist_session():
        await save_session(state.session)

    ft.use_effect(persist_session, dependencies=[state.session])

    async def load_for_route():
        if not state.signed_in:
            return
        if state.route == "/history":
            await state.load_history()
        elif state.route == "/charts":
            await state.load_stats()
        elif state.route == "/capture":
            state.refresh_queue()
        elif state.route == "/demo":
            await state.load_samples()
        elif state.route == "/review":
            await state.load_reviews()
        elif state.route == "/teach":
            await state.load_teach()
        elif state.route == "/models":
            await state.load_models()

    ft.use_effect(load_for_route, dependencies=[state.route, state.signed_in])

    async def count_reviews():
        if state.signed_in and state.route != "/review":  # the screen loads its own
            await state.refresh_review_count()

    ft.use_effect(count_reviews, dependencies=[state.route, state.signed_in])

    async def shortcut(e: ft.KeyboardEvent):
        if state.signed_in and state.route == "/review" and not (e.ctrl or e.alt or e.meta):
            await review_key(state, e.key)

    page.on_keyboard_event = shortcut

    async def retry_queue_forever():
        while True:
            await asyncio.sleep(QUEUE_RETRY_SECONDS)
            if state.queue and not state.busy and state.signed_in:
                with contextlib.suppress(Exception):
                    await state.flush_queue()
            if state.signed_in and state.online:
                with contextlib.suppress(Exception):
                    await state.refresh_review_count()

    ft.use_effect(retry_queue_forever, dependencies=[], cleanup=lambda: None)

    def apply_theme():
        page.theme_mode = THEME_MODES.get(state.settings.theme, ft.ThemeMode.LIGHT)
        page.update()

    ft.use_effect(apply_theme, dependencies=[state.settings.theme])

    if not state.signed_in:
        return [ft.View(route=SIGN_IN, padding=20, controls=[
            SignInView(state, web, use_server, key=f"sign-in-{state.api.base_url}")])]
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
            destinations=[ft.NavigationBarDestination(icon=nav_icon(state, route, icon),
                                                      label=label)
                          for route, label, icon in items],
        )
        top = ft.Container(padding=ft.Padding.only(left=20, top=10, right=20),
                           content=SignedIn(state, compact=True))
        return [ft.View(route=state.route, padding=0, spacing=0, controls=[top, content],
                        navigation_bar=bar)]
    rail = ft.NavigationRail(
        selected_index=index,
        on_change=navigate,
        label_type=ft.NavigationRailLabelType.ALL,
        min_width=96,
        group_alignment=-0.9,
        leading=ft.Container(padding=ft.Padding.only(top=8, bottom=12), content=ft.Column(
            spacing=6, horizontal_alignment=ft.CrossAxisAlignment.CENTER, controls=[
                ft.Text("kensa", size=24, weight=ft.FontWeight.BOLD, color=ft.Colors.PRIMARY),
                SignedIn(state),
            ])),
        destinations=[ft.NavigationRailDestination(icon=nav_icon(state, route, icon),
                                                   label=label)
                      for route, label, icon in items],
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
    ``token`` is a preset session for every browser (the server's ``client_token``, a kiosk
    mechanism): a session starts signed in as its user when it has no token of its own.
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
            api=ApiClient(server, public_url=public_url if web else None),
            queue_store=PhotoQueue(queue_dir),
            settings=settings,
        )
        state.route = page.route if page.route in {r for r, *_ in NAV} else "/capture"
        state.refresh_queue()
        stored_session = await read_session(prefs)
        if stored_session and (web or stored_session.server == state.api.base_url):
            await state.resume(stored_session)
            if not state.signed_in:
                await prefs.remove(SESSION_KEY)
        elif token:
            await state.resume(Session(token=token, username="", role=""))
            state.clear_messages()
        if state.signed_in and not state.may_open(state.route):
            state.route = "/capture"  # else the route asked for opens after signing in

        async def use_server(url: str) -> None:
            """Talk to another server (desktop app): a token belongs to the server it came
            from, so whoever was signed in is signed out here."""
            if web or url.rstrip("/") == state.api.base_url:
                return
            old = state.api
            state.api = ApiClient(url)
            if state.signed_in:
                state.session_ended("The server address changed: sign in to that server.")
            await old.aclose()

        async def save_settings(new: ClientSettings) -> None:
            await use_server(new.server_url)
            await prefs.set(PREFS_KEY, json.dumps(asdict(new)))

        async def save_session(session: Session | None) -> None:
            try:
                if session is None:
                    await prefs.remove(SESSION_KEY)
                else:
                    await prefs.set(SESSION_KEY, json.dumps(asdict(session)))
            except Exception as exc:  # a device that cannot store it asks again next time
                log.warning("could not store the session: %s", exc)

        async def closed(e=None) -> None:
            state.job = None  # stops following a train job for a page that is gone
            await state.api.aclose()

        page.on_close = closed
        page.render_views(App, state, picker, save_settings, save_session, use_server, web)

    return main


async def read_session(prefs: ft.SharedPreferences) -> Session | None:
    """The session kept on this device (None: none, unreadable or expired)."""
    try:
        stored = await prefs.get(SESSION_KEY)
        return Session.from_dict(json.loads(str(stored))) if stored else None
    except Exception as exc:  # unreadable prefs must not stop the app
        log.warning("could not read the stored session: %s", exc)
        return None


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
