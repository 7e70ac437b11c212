"""Fixtures for the client tests: the REAL backend app (lifespan running) behind
httpx.ASGITransport, with a small PatchCore fitted once per session on synthetic strips."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from client_testing import (
    BASE,
    OPERATOR_PASSWORD,
    STRIP_SIZE,
    Backend,
    png,
    running_backend,
)

from kensa.client.offline_queue import PhotoQueue
from kensa.client.state import AppState, ClientSettings, Session
from kensa.contract.client import ApiClient
from kensa.models import artifacts
from kensa.models.data.synthetic import SteelStripGenerator
from kensa.models.registry import create_detector, get_spec


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def patchcore_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real PatchCore (quick settings) fitted on 12 good strips, saved once."""
    directory = tmp_path_factory.mktemp("client-models") / "patchcore"
    detector = create_detector("patchcore", **get_spec("patchcore").quick)
    detector.fit(SteelStripGenerator(size=STRIP_SIZE, seed=0).samples(12, 0))
    artifacts.save(detector, directory)
    return directory.parent


@pytest.fixture(scope="session")
def strips() -> dict[str, bytes]:
    gen = SteelStripGenerator(size=STRIP_SIZE, seed=5)
    return {
        "good": png(gen.good(0).image),
        "good2": png(gen.good(1).image),
        "scratches": png(gen.defective(0, labels=("scratches",)).image),
        "patches": png(gen.defective(1, labels=("patches",)).image),
    }


@pytest.fixture
async def backend(tmp_path: Path, patchcore_dir: Path) -> AsyncIterator[Backend]:
    async with running_backend(tmp_path, patchcore_dir) as running:
        yield running


@pytest.fixture
def make_state(tmp_path: Path):
    """A signed-in state: the session (and so the role) is whoever ``api``'s token belongs to;
    a state for an API without a token (a server that cannot be reached) is signed in as a
    stored session would be."""

    async def make(api: ApiClient) -> AppState:
        state = AppState(api=api, queue_store=PhotoQueue(tmp_path / "queue"),
                         settings=ClientSettings(station="line-7", operator="kim"))
        stored = Session(token=api.token or "offline-token", username="kim", role="manager")
        assert await state.resume(stored)
        return state

    return make


@pytest.fixture
async def api_for(backend: Backend):
    """New API clients of the test backend (no token unless given: the test signs in)."""
    made: list[ApiClient] = []

    def make(token: str | None = None) -> ApiClient:
        made.append(ApiClient(BASE, transport=backend.transport, public_url="", token=token))
        return made[-1]

    yield make
    for api in made:
        await api.aclose()


@pytest.fixture
async def operator_token(backend: Backend) -> str:
    """An operator account made through the API by the admin; its token."""
    admin = {"Authorization": f"Bearer {backend.api.token}"}
    async with httpx.AsyncClient(transport=backend.transport, base_url=BASE) as raw:
        created = await raw.post("/api/v1/users", headers=admin, json={
            "username": "olga", "password": OPERATOR_PASSWORD, "role": "operator"})
        assert created.status_code == 201, created.text
        signed = await raw.post("/api/v1/auth/token", data={
            "username": "olga", "password": OPERATOR_PASSWORD})
    return signed.json()["access_token"]
