"""kensa.client.teaching against the real backend app: teach a station (photos into its good set,
a real train job in a worker process, progress followed), use the model, the Models list with
activate / roll back / shadow, "add to good set" from history, and what an operator may not."""

from __future__ import annotations

import pytest
from client_testing import STRIP_SIZE, png

from kensa.client.state import Photo
from kensa.client.teaching import good_set_name
from kensa.contract.client import ApiClient
from kensa.models.data.synthetic import SteelStripGenerator

pytestmark = pytest.mark.anyio


def good_photos(n: int, seed: int = 21) -> list[Photo]:
    gen = SteelStripGenerator(size=STRIP_SIZE, seed=seed)
    return [Photo(f"good{i}.png", png(gen.good(i).image)) for i in range(n)]


async def test_teach_use_rollback_shadow_and_good_set(backend, make_state, strips):
    state = await make_state(backend.api)
    await state.load_teach()
    assert "patchcore" in state.teach.kinds and state.teach.kind == "patchcore"
    assert all(k not in state.teach.kinds for k in ("segmenter", "classifier_lite2"))
    assert state.good_set is None  # nothing made before teaching starts
    assert await state.start_teaching() is None and "photos" in state.error

    state.add_teach_photos(good_photos(7))
    state.select_teach_photo(2)
    state.remove_teach_photo(2)
    replacement = good_photos(1, seed=99)[0]
    state.replace_teach_photo(0, replacement)
    assert len(state.teach.photos) == 6 and state.teach.photos[0] == replacement
    assert state.instance_name() == "line-7-patchcore"

    job = await state.start_teaching()
    assert job is not None and job.status == "succeeded", job and job.message
    assert job.progress == 1.0 and job.version and job.metrics["n_holdout_good"] >= 1
    assert state.teach.photos == () and state.good_set.counts == {"good": 6}
    dataset = await backend.api.get_dataset(good_set_name("line-7"))
    assert dataset.counts == {"good": 6} and dataset.station == "line-7"
    [first] = state.teach_versions
    assert (first.version, first.state, first.created_by) == (job.version, "candidate", "admin")

    assert await state.use_taught_model()
    assert [v.state for v in state.teach_versions] == ["active"]
    record = await backend.api.create_inspection(strips["good"], "g.png")
    assert {"name": "line-7-patchcore", "version": job.version} in [
        d.model_dump() for d in record.detectors]

    # A second version from the same good set, plus a photo added from history.
    assert await state.add_to_good_set(record)
    assert state.good_set.counts == {"good": 7} and "good set of line-7" in state.notice
    state.teach_again()
    second = await state.start_teaching()
    assert second is not None and second.status == "succeeded"
    assert second.version != job.version

    await state.load_models()
    model = next(m for m in state.models if m.name == "line-7-patchcore")
    assert [v.version for v in model.versions] == [job.version, second.version]
    assert model.active.version == job.version and model.loaded == job.version
    assert await state.shadow_version(model.name, second.version)
    model = next(m for m in state.models if m.name == "line-7-patchcore")
    shadow = model.versions[1]
    assert shadow.state == "shadow" and shadow.shadow_agreement is not None
    assert await state.activate_version(model.name, second.version)
    assert await state.activate_version(model.name, job.version)  # roll back
    served = {d.name: d.version for d in await backend.api.detectors()}
    assert served["line-7-patchcore"] == job.version
    assert not await state.activate_version(model.name, "no-such-version")
    assert "no-such-version" in state.error


async def test_an_operator_may_not_teach(backend, make_state, operator_token, api_for,
                                         strips):
    api: ApiClient = api_for(operator_token)
    state = await make_state(api)
    assert state.role == "operator"
    assert not state.may_open("/teach") and not state.may_open("/models")
    record = await backend.api.create_inspection(strips["good"], "g.png", station="line-7")
    assert not await state.add_to_good_set(record)
    assert state.error
    names = [d.name for d in await backend.api.datasets()]
    assert good_set_name("line-7") not in names  # nothing written
