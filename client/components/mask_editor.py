"""Brush and eraser on the photo of the Review screen: drag a finger or the mouse to mark (or
unmark) the defect. The stroke shows on a canvas while it is drawn; when the finger lifts it
joins the mask (``state.paint_mask``), shown in red over the photo."""

from __future__ import annotations

import flet as ft
import flet.canvas as cv

from kensa.client.components.api_image import ApiImage
from kensa.client.masking import BRUSH_SIZES, Point
from kensa.client.state import AppState

BRUSH_COLOR = "#FF1744"
ERASER_COLOR = "#FFFFFF"
PHOTO_LABEL = "photo to paint the defect mask on"


@ft.component
def MaskTools(state: AppState):
    """Brush / eraser, brush size, undo, clear, done."""
    draft = state.review_mask

    def tool(name: str, icon, words: str) -> ft.Control:
        return ft.Chip(label=ft.Text(words, size=17), leading=ft.Icon(icon), height=52,
                       selected=state.mask_tool == name, show_checkmark=False,
                       on_select=lambda e: state.set_mask_tool(name))

    sizes = [ft.Chip(label=ft.Text(size, size=17), height=52, selected=state.mask_size == size,
                     show_checkmark=False, tooltip=f"brush size {size}",
                     on_select=lambda e, size=size: state.set_mask_size(size))
             for size in BRUSH_SIZES]
    painted = draft.painted() if draft else 0
    return ft.Row(wrap=True, spacing=8, run_spacing=8,
                  vertical_alignment=ft.CrossAxisAlignment.CENTER, controls=[
        tool("brush", ft.Icons.BRUSH, "Brush"),
        tool("eraser", ft.Icons.AUTO_FIX_NORMAL, "Eraser"),
        *sizes,
        ft.IconButton(ft.Icons.UNDO, tooltip="Undo the last stroke", icon_size=28,
                      disabled=not (draft and draft.can_undo),
                      on_click=lambda e: state.undo_mask()),
        ft.TextButton("Clear mask", icon=ft.Icons.LAYERS_CLEAR,
                      on_click=lambda e: state.clear_mask()),
        ft.TextButton("Close brush", icon=ft.Icons.CLOSE, tooltip="forget the painted mask",
                      on_click=lambda e: state.stop_mask()),
        ft.Text(f"{painted:,} pixels marked" if painted else "Nothing marked yet", size=15,
                color=ft.Colors.ON_SURFACE_VARIANT),
    ])


@ft.component
def MaskEditor(state: AppState, height: float = 280):
    """The photo with the painted mask over it and a canvas that takes the strokes."""
    record, draft = state.current, state.review_mask
    if record is None or draft is None:
        return ft.Container()
    view = ft.use_ref((0.0, 0.0))  # the painting area's size, from the canvas
    points = ft.use_ref(())  # the stroke being drawn (every point, even between renders)
    stroke, set_stroke = ft.use_state(())  # what the canvas shows of it
    preview = ft.use_memo(lambda: draft.preview_png(), dependencies=[state.mask_version])

    def resized(e: cv.CanvasResizeEvent) -> None:
        view.current = (e.width, e.height)

    def add(point: Point, first: bool = False) -> None:
        points.current = (point,) if first else (*points.current, point)
        set_stroke(points.current)

    def start(e: ft.DragStartEvent) -> None:
        add((e.local_position.x, e.local_position.y), first=True)

    def move(e: ft.DragUpdateEvent) -> None:
        add((e.local_position.x, e.local_position.y))

    def end(e: ft.DragEndEvent) -> None:
        done: tuple[Point, ...] = (*points.current, (e.local_position.x, e.local_position.y))
        points.current = ()
        set_stroke(())
        state.paint_mask(done, view.current)

    def tap(e: ft.TapEvent) -> None:
        if e.local_position is not None:
            state.paint_mask([(e.local_position.x, e.local_position.y)], view.current)

    width_px, height_px = draft.size
    live = []
    if stroke:
        live.append(cv.Points(
            points=[ft.Offset(x, y) for x, y in stroke], point_mode=cv.PointMode.POLYGON,
            paint=ft.Paint(color=BRUSH_COLOR if state.mask_tool == "brush" else ERASER_COLOR,
                           stroke_width=2 * BRUSH_SIZES[state.mask_size],
                           stroke_cap=ft.StrokeCap.ROUND, stroke_join=ft.StrokeJoin.ROUND,
                           style=ft.PaintingStyle.STROKE)))
    wide = width_px / height_px > 2.5
    color = BRUSH_COLOR if state.mask_tool == "brush" else ERASER_COLOR
    # The frame shows the tool; the painting area inside it keeps the photo's shape.
    return ft.Container(
        border=ft.Border.all(3, color), border_radius=14, bgcolor=ft.Colors.BLACK,
        content=ft.Container(
            aspect_ratio=width_px / height_px if wide else None,
            height=None if wide else height,
            border_radius=11,
            clip_behavior=ft.ClipBehavior.HARD_EDGE,
            content=ft.GestureDetector(
                on_pan_start=start, on_pan_update=move, on_pan_end=end, on_tap=tap,
                drag_interval=30, mouse_cursor=ft.MouseCursor.PRECISE,
                content=ft.Stack(fit=ft.StackFit.EXPAND, controls=[
                    ApiImage(state, state.api.image_path(record.id), fit=ft.BoxFit.CONTAIN,
                             semantics_label=PHOTO_LABEL,
                             error_content=ft.Text("The picture could not be loaded.",
                                                   color=ft.Colors.WHITE)),
                    ft.Image(src=preview, fit=ft.BoxFit.CONTAIN, gapless_playback=True),
                    cv.Canvas(shapes=live, expand=True, on_resize=resized, resize_interval=50),
                ]),
            ),
        ),
    )
