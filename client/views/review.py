"""Review: the photo with its evidence, big OK / Defect buttons, label chips, brush and eraser
to correct the defect mask on the photo, Skip; keys on a desktop (O, D, S, 1-9, M, B, E)."""

from __future__ import annotations

import flet as ft

from kensa.client.components.api_image import ApiImage
from kensa.client.components.mask_editor import MaskEditor, MaskTools
from kensa.client.components.overlay_viewer import OverlayViewer
from kensa.client.components.palette import VERDICTS, pretty
from kensa.client.reviewing import REASONS
from kensa.client.state import AppState, short_id
from kensa.client.views.result import when
from kensa.contract.constants import LABEL_COLORS, label_hex

BIG = 24
THUMB = 56  # height of a proposal's thumbnail
THUMBS = 8  # thumbnails shown on the pseudo-label card
KEYS_HELP = ("Keys: O = OK · D = Defect · S = Skip · 1-9 = labels · M = mask brush on/off · "
             "B = brush · E = eraser")


def review_labels(state: AppState) -> list[str]:
    """The label chips: the known families, the machine's labels and the ones chosen."""
    item = state.review_item
    machine = {f.label for f in item.inspection.findings if f.label} if item else set()
    return sorted(set(LABEL_COLORS) | machine | set(state.review_labels))


async def review_key(state: AppState, key: str) -> bool:
    """A desktop keyboard shortcut on the Review screen; True when it did something."""
    if state.busy or state.review_item is None:
        return False
    key = key.strip().upper() or " "
    if key == "O":
        return await state.decide("ok")
    if key == "D":
        return await state.decide("defect")
    if key in ("S", " "):
        state.skip_review()
        return True
    if key == "M":
        if state.review_mask is None:
            return await state.start_mask()
        state.stop_mask()
        return True
    if key in ("B", "E") and state.review_mask is not None:
        state.set_mask_tool("brush" if key == "B" else "eraser")
        return True
    if key.isdigit() and key != "0":
        labels = review_labels(state)
        index = int(key) - 1
        if index < len(labels):
            state.toggle_review_label(labels[index])
            return True
    return False


def pseudo_summary(state: AppState) -> str:
    """The proposals in words: how many, and what they would record."""
    pseudo = state.pseudo
    if pseudo is None or not pseudo.items:
        return ""
    kinds: dict[str, int] = {}
    for p in pseudo.items:
        words = ("OK" if p.decision == "ok"
                 else "defect: " + ", ".join(pretty(label) for label in p.labels))
        kinds[words] = kinds.get(words, 0) + 1
    parts = " · ".join(f"{n} × {words}" for words, n in sorted(kinds.items()))
    more = f" (of {pseudo.total})" if pseudo.total > len(pseudo.items) else ""
    return (f"{len(pseudo.items)}{more} proposed labels where the classifier and the segmenter "
            f"agree (confidence ≥ {pseudo.min_confidence:.0%}): {parts}")


@ft.component
def PseudoLabels(state: AppState):
    """The bulk confirm of proposed labels (shown only when there are proposals)."""
    words = pseudo_summary(state)
    if not words:
        return ft.Container()

    async def confirm():
        await state.confirm_pseudo_labels()

    items = state.pseudo.items
    thumbs = [ft.Container(
        height=THUMB,
        width=THUMB * min(8.0, (p.inspection.width or 4) / (p.inspection.height or 3)),
        border_radius=6, bgcolor=ft.Colors.BLACK, clip_behavior=ft.ClipBehavior.HARD_EDGE,
        tooltip=", ".join(pretty(label) for label in p.labels) if p.labels else "OK",
        content=ApiImage(state, state.api.image_path(p.inspection.id, ("masks",)),
                         fit=ft.BoxFit.CONTAIN))
        for p in items[:THUMBS]]
    if len(items) > THUMBS:
        thumbs.append(ft.Text(f"+{len(items) - THUMBS} more", size=15))
    return ft.Container(
        padding=12, border_radius=12, bgcolor=ft.Colors.SECONDARY_CONTAINER,
        content=ft.Column(spacing=8, controls=[
            ft.Row(vertical_alignment=ft.CrossAxisAlignment.CENTER, controls=[
                ft.Icon(ft.Icons.AUTO_AWESOME, size=28),
                ft.Text(words, size=16, expand=True),
                ft.FilledButton(f"Confirm all {len(items)}", icon=ft.Icons.DONE_ALL,
                                height=56, disabled=bool(state.busy), on_click=confirm,
                                tooltip="record them as your reviews"),
            ]),
            ft.Row(wrap=True, spacing=8, run_spacing=8, controls=thumbs),
        ]))


@ft.component
def ReviewView(state: AppState):
    item = state.review_item

    async def refresh():
        await state.load_reviews()

    async def toggle_here():
        await state.set_review_here(not state.review_here)

    head = ft.Row(vertical_alignment=ft.CrossAxisAlignment.CENTER, controls=[
        ft.Text("Review", size=30, weight=ft.FontWeight.BOLD),
        ft.Text(f"{state.review_total} open", size=20, weight=ft.FontWeight.W_500),
        ft.Container(expand=True),
        ft.Chip(label=ft.Text(f"Only {state.settings.station}", size=16),
                selected=state.review_here, on_select=toggle_here),
        ft.IconButton(ft.Icons.REFRESH, tooltip="Refresh", icon_size=28, on_click=refresh),
    ])
    if item is None:
        return ft.Column(expand=True, spacing=16, controls=[
            head,
            PseudoLabels(state),
            ft.Icon(ft.Icons.TASK_ALT, size=72, color=ft.Colors.ON_SURFACE_VARIANT),
            ft.Text(state.busy or "Nothing to review. Uncertain inspections appear here.",
                    size=BIG),
        ])

    async def ok():
        await state.decide("ok")

    async def defect():
        await state.decide("defect")

    async def brush():
        await state.start_mask()

    record = item.inspection
    busy = bool(state.busy)
    _, _, machine_words = VERDICTS.get(record.verdict, ("", "", record.verdict))
    score = (f" · score {record.anomaly_score:.2f} of the threshold"
             if record.anomaly_score is not None else "")
    chips = [
        ft.Chip(label=ft.Text(f"{i + 1}  {pretty(label)}" if i < 9 else pretty(label),
                              size=17),
                selected=label in state.review_labels, height=52,
                leading=ft.Container(width=14, height=14, border_radius=7,
                                     bgcolor=label_hex(label)),
                on_select=lambda e, label=label: state.toggle_review_label(label))
        for i, label in enumerate(review_labels(state))
    ]
    big = ft.ButtonStyle(text_style=ft.TextStyle(size=BIG, weight=ft.FontWeight.BOLD))
    editing = state.review_mask is not None
    # no scrolling while painting: a drag on the photo is a stroke, not a scroll
    return ft.Column(expand=True, spacing=12, scroll=None if editing else ft.ScrollMode.AUTO,
                     controls=[
        head,
        PseudoLabels(state),
        ft.Text(f"{REASONS.get(item.reason, item.reason)} Machine: {machine_words}{score}.",
                size=17),
        ft.Text(f"#{short_id(record)} · {record.station or '-'} · {when(record)} UTC",
                size=15, color=ft.Colors.ON_SURFACE_VARIANT),
        *([MaskEditor(state, height=280), MaskTools(state),
           ft.Text("Drag on the photo to mark the defect; the mask goes with Defect.",
                   size=14, color=ft.Colors.ON_SURFACE_VARIANT)]
          if editing else
          [OverlayViewer(state, height=280),
           ft.OutlinedButton("Correct the mask", icon=ft.Icons.BRUSH, height=52,
                             disabled=busy, on_click=brush,
                             tooltip="paint or erase the defect on the photo")]),
        ft.Text("Defect labels (for a defect)", size=16, color=ft.Colors.ON_SURFACE_VARIANT),
        ft.Row(wrap=True, spacing=8, run_spacing=8, controls=chips),
        ft.Row(spacing=16, controls=[
            ft.FilledButton("OK", icon=ft.Icons.CHECK_CIRCLE, height=96, expand=True,
                            disabled=busy, on_click=ok, bgcolor="#2E7D32", color="white",
                            style=big),
            ft.FilledButton("Defect", icon=ft.Icons.ERROR, height=96, expand=True,
                            disabled=busy, on_click=defect, bgcolor="#C62828",
                            color="white", style=big),
            ft.OutlinedButton("Skip", icon=ft.Icons.SKIP_NEXT, height=96, width=180,
                              disabled=busy, on_click=lambda e: state.skip_review(),
                              style=ft.ButtonStyle(text_style=ft.TextStyle(size=BIG))),
        ]),
        ft.Text(KEYS_HELP, size=14, color=ft.Colors.ON_SURFACE_VARIANT),
    ])
