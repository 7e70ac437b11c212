"""The brush and eraser of the Review screen: strokes in screen coordinates become a mask at
the photo's size (starting from the machine's masks), and a defect answer carries it to the real
backend, which stores it pixel for pixel."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from client_testing import running_backend
from PIL import Image

from kensa.client.masking import BRUSH_SIZES, MaskDraft, fit_scale, to_photo
from kensa.client.views.review import review_key
from kensa.contract.client import ApiClient

pytestmark = pytest.mark.anyio


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L")) > 0


def png_of(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
    return buffer.getvalue()


def test_screen_points_map_to_photo_pixels():
    # a 400x100 photo in a 800x400 area: scale 2, centred vertically (100 px above and below)
    assert fit_scale((800, 400), (400, 100)) == (2.0, 0.0, 100.0)
    assert to_photo((0, 100), (800, 400), (400, 100)) == (0.0, 0.0)
    assert to_photo((800, 300), (800, 400), (400, 100)) == (400.0, 100.0)
    assert to_photo((400, 200), (800, 400), (400, 100)) == (200.0, 50.0)


def test_brush_eraser_undo_clear():
    draft = MaskDraft(200, 50)
    assert draft.png() is None and not draft.edited and not draft.can_undo
    draft.stroke([(20, 25), (120, 25)], radius=5)
    marked = pixels(draft.png())
    assert marked.shape == (50, 200)
    assert marked[25, 20:121].all() and marked[20:31, 70].all()
    assert not marked[:18].any() and not marked[33:].any() and not marked[:, 130:].any()
    draft.stroke([(70, 25)], radius=8, erase=True)  # a dab of the eraser
    erased = pixels(draft.png())
    assert not erased[25, 64:77].any() and erased[25, 20:60].all()
    assert draft.undo() and (pixels(draft.png()) == marked).all()
    draft.clear()
    assert draft.png() is None and draft.painted() == 0
    assert draft.undo() and draft.painted() == marked.sum()

    preview = Image.open(io.BytesIO(draft.preview_png(side=100)))
    assert preview.mode == "RGBA" and preview.size == (100, 25)  # the photo's shape
    alpha = np.asarray(preview)[..., 3]
    assert alpha[12, 30] > 0 and alpha[0, 0] == 0


def test_starting_from_the_machines_masks():
    a = np.zeros((40, 100), bool)
    a[5:10, 5:20] = True
    b = np.zeros((40, 100), bool)
    b[30:35, 60:90] = True
    wrong_size = png_of(np.ones((10, 10), bool))
    draft = MaskDraft.from_pngs(100, 40, [png_of(a), png_of(b), wrong_size, b"not a png"])
    assert (pixels(draft.png()) == (a | b)).all() and not draft.edited


@pytest.fixture
async def queued_api(tmp_path: Path, patchcore_dir: Path) -> AsyncIterator[ApiClient]:
    async with running_backend(tmp_path, patchcore_dir, review_random_share=1.0) as running:
        yield running.api


async def test_a_painted_mask_goes_with_the_defect(queued_api, make_state, strips):
    api = queued_api
    made = [await api.create_inspection(strips[name], f"{name}.png", station="line-7")
            for name in ("patches", "good")]
    state = await make_state(api)
    await state.load_reviews()
    record = state.review_item.inspection
    assert record.id == made[0].id
    machine = [pixels(await api.fetch_bytes(f.mask_url)) for f in record.findings
               if f.mask_url]

    assert await review_key(state, "m")  # the brush, starting from the machine's masks
    draft = state.review_mask
    assert draft is not None and draft.size == (record.width, record.height)
    start = np.zeros((record.height, record.width), bool)
    for mask in machine:
        start |= mask
    assert draft.painted() == int(start.sum())

    # The painting area as the screen lays it out: the photo twice its size, centred.
    view = (record.width * 2.0, record.height * 2.0 + 40)
    y = record.height  # the middle row of the photo, on screen
    assert state.paint_mask([(20, y + 20), (record.width, y + 20)], view)
    assert await review_key(state, "e")
    assert state.mask_tool == "eraser"
    assert state.paint_mask([(record.width // 2, y + 20)], view)  # a dab of the eraser
    assert await review_key(state, "b") and state.mask_tool == "brush"
    sent = pixels(state.review_mask.png())
    row = record.height // 2
    radius = BRUSH_SIZES[state.mask_size] / 2  # screen radius / scale 2
    assert sent[row, 10:record.width // 4 - int(radius) - 1].all()  # the brush stroke
    assert not sent[row, record.width // 4 - 2:record.width // 4 + 3].any()  # erased

    state.toggle_review_label("patches")
    assert await state.decide("defect")
    assert "with a mask" in state.notice and state.review_mask is None
    assert state.review_item.inspection.id == made[1].id  # the next one, brush closed

    stored = await api.get_inspection(made[0].id)
    assert stored.review.decision == "defect" and "patches" in stored.review.labels
    assert stored.verdict == made[0].verdict  # the machine's verdict as it was
    kept = pixels(await api.fetch_bytes(stored.review.mask_url))
    assert (kept == sent).all()

    # The brush opened and closed again: an OK answer carries no mask.
    assert await state.start_mask()
    assert state.paint_mask([(20, y + 20), (60, y + 20)], view)
    state.stop_mask()
    assert state.review_mask is None
    assert await state.decide("ok")
    other = await api.get_inspection(made[1].id)
    assert other.review.decision == "ok" and other.review.mask_url is None
