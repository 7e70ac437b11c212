"""The demo booth's sample strips: listed, served as PNG and JPEG thumbnail, 404 otherwise."""

from __future__ import annotations

import io

import numpy as np
import pytest
from backend_testing import Service
from PIL import Image

from kensa.backend.services.samples import SAMPLE_SEED, demo_samples
from kensa.contract.schemas import SamplePublic
from kensa.models.data.synthetic import DEFECT_CLASSES, SteelStripGenerator

pytestmark = pytest.mark.anyio


async def test_samples_are_listed_and_served(sqlite_service: Service) -> None:
    client = sqlite_service.client
    listing = await client.get("/api/v1/samples")
    assert listing.status_code == 200
    samples = [SamplePublic.model_validate(item) for item in listing.json()]
    assert [s.name for s in samples] == ["good", *DEFECT_CLASSES]
    assert [s.title for s in samples] == ["Good strip", "Pitted surface", "Crazing",
                                          "Scratches", "Patches"]

    generator = SteelStripGenerator(seed=SAMPLE_SEED)
    expected = {"good": generator.good(0).image,
                **{label: generator.defective(i, labels=(label,)).image
                   for i, label in enumerate(DEFECT_CLASSES)}}
    for sample in samples:
        assert sample.image_url == f"/api/v1/samples/{sample.name}"
        full = await client.get(sample.image_url)
        assert full.status_code == 200 and full.headers["content-type"] == "image/png"
        picture = Image.open(io.BytesIO(full.content))
        assert picture.format == "PNG"
        height, width = expected[sample.name].shape[:2]
        assert picture.size == (width, height)
        assert np.array_equal(np.asarray(picture.convert("RGB")), expected[sample.name])

        thumb = await client.get(sample.thumbnail_url)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        small = Image.open(io.BytesIO(thumb.content))
        assert small.format == "JPEG" and small.size == (width // 3, height // 3)

    assert demo_samples() is demo_samples()  # generated once, then cached


async def test_unknown_sample_is_404(sqlite_service: Service) -> None:
    for path in ("/api/v1/samples/nonesuch", "/api/v1/samples/nonesuch/thumbnail"):
        response = await sqlite_service.client.get(path)
        assert response.status_code == 404
        assert "no sample 'nonesuch'" in response.json()["detail"]
