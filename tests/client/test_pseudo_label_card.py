"""The bulk confirm of pseudo-labels on the Review screen against the real backend app with a
real (untrained) classifier and segmenter that agree: the proposals are listed, confirmed in
one tap as the manager's reviews, and gone from the list afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from client_testing import png, running_backend

from kensa.client.views.review import pseudo_summary
from kensa.contract.client import ApiClient
from kensa.models import artifacts
from kensa.models.registry import create_detector
from tests.shapes import INPUT, LABELS, make_samples

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def agreeing_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier and a segmenter with every threshold open: both report every label."""
    folder = tmp_path_factory.mktemp("agreeing")
    classifier = create_detector("classifier_lite0", weights="none", labels=LABELS,
                                 input_size=INPUT, name="cls")
    classifier.post.heatmaps = False
    segmenter = create_detector("segmenter_lite0", weights="none", labels=LABELS,
                                input_size=INPUT, decoder_channels=(32, 16, 16, 8, 8),
                                name="seg")
    for detector in (classifier, segmenter):
        detector.set_threshold(1e-30)
        artifacts.save(detector, folder / detector.name)
    return folder


@pytest.fixture
async def api(tmp_path: Path, agreeing_models: Path) -> AsyncIterator[ApiClient]:
    async with running_backend(tmp_path, agreeing_models) as running:
        yield running.api


async def test_confirm_all_proposed_labels(api, make_state):
    images = [s.image.astype("uint8") for s in make_samples(3, seed=2)]
    made = [await api.create_inspection(png(image), f"{i}.png", station="line-7")
            for i, image in enumerate(images)]
    state = await make_state(api)
    await state.load_reviews()
    assert state.pseudo is not None and state.pseudo.items == []  # none at 90 % confidence

    state.pseudo_confidence = 0.0
    await state.load_reviews()
    assert {p.inspection.id for p in state.pseudo.items} == {r.id for r in made}
    words = pseudo_summary(state)
    assert words.startswith("3 proposed labels where the classifier and the segmenter agree")
    assert words.endswith("): 3 × defect: line, spot")

    assert await state.confirm_pseudo_labels()
    assert state.notice == "3 proposed labels confirmed." and state.pseudo.items == []
    assert pseudo_summary(state) == ""
    for record in made:
        stored = await api.get_inspection(record.id)
        assert stored.review.decision == "defect" and sorted(stored.review.labels) == sorted(LABELS)
        assert stored.review.by == "admin" and stored.review.mask_url
        assert stored.verdict == record.verdict
    assert state.review_open == 0  # the queued one among them is done too
    assert not await state.confirm_pseudo_labels()  # nothing left to confirm
