"""kensa.client.reviewing against the real backend app with every inspection queued for review:
the badge count, oldest first, skip, labels, keyboard shortcuts, a mask, and that the machine's
verdict stays as it was."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from client_testing import running_backend
from PIL import Image

from kensa.client.views.review import review_key, review_labels
from kensa.contract.client import ApiClient

pytestmark = pytest.mark.anyio
@pytest.fixture
async def queued_api(tmp_path: Path, patchcore_dir: Path) -> AsyncIterator[ApiClient]:
    """The real app with a random share of 1 (every inspection reaches the review queue);
    the admin's API client."""
    async with running_backend(tmp_path, patchcore_dir, review_random_share=1.0) as running:
        yield running.api


def mask_png(width: int, height: int) -> bytes:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 4: height // 2, width // 4: width // 2] = 255
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_review_queue_on_the_tablet(queued_api, make_state, strips):
    api = queued_api
    made = [await api.create_inspection(strips[name], f"{name}.png", station="line-7")
            for name in ("good", "scratches", "patches")]
    state = await make_state(api)
    await state.refresh_review_count()
    assert state.review_open == 3

    await state.load_reviews()
    assert state.review_total == 3 and state.review_item.inspection.id == made[0].id
    assert state.current.id == made[0].id  # the photo and its evidence are shown

    assert await review_key(state, "s")  # skip: the next one, the skipped one goes last
    item = state.review_item
    assert item.inspection.id == made[1].id
    labels = review_labels(state)
    assert "scratches" in labels
    index = labels.index("scratches")
    if "scratches" in state.review_labels:
        state.toggle_review_label("scratches")
    assert await review_key(state, str(index + 1))  # 1-9 toggle the label chips
    assert "scratches" in state.review_labels
    assert await review_key(state, "d")
    assert state.review_open == 2 and "marked defect" in state.notice

    assert state.review_item.inspection.id == made[2].id  # the skipped one waits
    state.toggle_review_label("patches")
    assert await review_key(state, "o")  # ok: labels are not sent

    last = state.review_item
    assert last.inspection.id == made[0].id
    record = last.inspection
    assert await state.decide("defect", mask=mask_png(record.width, record.height))
    assert state.review_item is None and state.review_total == 0 and state.review_open == 0
    assert state.current is None

    stored = {r.id: await api.get_inspection(r.id) for r in made}
    for before in made:
        after = stored[before.id]
        assert (after.verdict, after.anomaly_score) == (before.verdict, before.anomaly_score)
        assert after.review_status == "done"
    assert stored[made[1].id].review.decision == "defect"
    assert "scratches" in stored[made[1].id].review.labels
    assert (stored[made[2].id].review.decision, stored[made[2].id].review.labels) == ("ok", [])
    assert stored[made[0].id].review.mask_url
    assert (await api.reviews("open")).open == 0


async def test_a_refused_review_keeps_the_entry(queued_api, make_state, strips):
    api = queued_api
    record = await api.create_inspection(strips["good"], "g.png", station="line-7")
    state = await make_state(api)
    await state.load_reviews()
    assert not await state.decide("defect", mask=mask_png(record.width + 3, record.height))
    assert state.error.startswith("The review was not saved")
    assert state.review_item.inspection.id == record.id and state.review_open == 1
    assert (await api.get_inspection(record.id)).review is None  # nothing written
