"""The verdict in colour and in words."""

from __future__ import annotations

import flet as ft

from kensa.client.components.palette import VERDICTS


@ft.component
def VerdictBadge(verdict: str, size: int = 22):
    bg, icon, words = VERDICTS.get(verdict, ("#546E7A", ft.Icons.HELP_OUTLINE, str(verdict)))
    return ft.Container(
        bgcolor=bg,
        border_radius=size,
        padding=ft.Padding.symmetric(horizontal=size * 0.8, vertical=size * 0.35),
        content=ft.Row(
            tight=True,
            spacing=size * 0.4,
            controls=[
                ft.Icon(icon, color=ft.Colors.WHITE, size=size * 1.2),
                ft.Text(words, color=ft.Colors.WHITE, size=size, weight=ft.FontWeight.BOLD),
            ],
        ),
    )
