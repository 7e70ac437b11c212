"""Signing in on the tablet: the token and role come from the real backend; a 401 anywhere ends
the session; the navigation and the history follow the server's role."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from client_testing import ADMIN_PASSWORD, OPERATOR_PASSWORD, closed_port

from kensa.client.offline_queue import PhotoQueue
from kensa.client.state import SESSION_ENDED, AppState, HistoryFilter, Session
from kensa.contract.client import ApiClient, ApiError

pytestmark = pytest.mark.anyio


def fresh(api: ApiClient, tmp_path: Path) -> AppState:
    return AppState(api=api, queue_store=PhotoQueue(tmp_path / "queue"))


async def test_sign_in_keeps_the_servers_token_and_role(backend, api_for, tmp_path):
    api = api_for()
    state = fresh(api, tmp_path)
    assert not state.signed_in and state.routes == []  # every route shows the sign-in screen
    assert not state.may_open("/capture")

    assert await state.sign_in(" admin ", ADMIN_PASSWORD)
    assert state.session.username == "admin" and state.session.role == "admin"
    assert state.session.token == api.token and state.session.server == api.base_url
    assert datetime.fromisoformat(state.session.expires_at) > datetime.now(UTC)
    assert state.error == "" and state.busy == ""
    assert state.is_manager and state.routes == [
        "/capture", "/result", "/history", "/detail", "/review", "/charts", "/teach", "/models",
        "/demo", "/settings"]
    await state.load_history()  # the token works for the API
    assert state.error == "" and state.history_total == 0

    # The stored session, on a reloaded page: the server confirms who it is.
    again = fresh(api_for(), tmp_path)
    assert await again.resume(Session.from_dict(
        {"token": state.session.token, "username": "x", "role": "operator",
         "expires_at": state.session.expires_at}))
    assert (again.session.username, again.session.role) == ("admin", "admin")


async def test_wrong_password_then_rate_limited(backend, api_for, tmp_path):
    state = fresh(api_for(), tmp_path)
    assert not await state.sign_in("admin", "")
    assert state.error == "Enter your user name and password."
    for _ in range(5):
        assert not await state.sign_in("admin", "not-the-password")
        assert state.error == "Wrong user name or password."
        assert not state.signed_in and state.api.token is None
    assert not await state.sign_in("admin", ADMIN_PASSWORD)  # locked for a while, even right
    assert state.error.startswith("Too many failed sign-ins. Wait ")
    assert "seconds, then try again." in state.error
    assert not state.signed_in


async def test_unreachable_server_is_said_so(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}"
    async with ApiClient(url, timeout=5) as api:
        state = fresh(api, tmp_path)
        assert not await state.sign_in("admin", "whatever")
    assert state.error == (f"Cannot reach the server at {url}. Check the network and the "
                           "server address.")
    assert not state.online and not state.signed_in


async def test_a_401_from_any_call_returns_to_sign_in(backend, api_for, strips, tmp_path):
    api = api_for()
    state = fresh(api, tmp_path)
    assert await state.sign_in("admin", ADMIN_PASSWORD)
    await state.load_history()
    # The token dies on the server (signed out elsewhere): the next call ends the session here.
    async with ApiClient(api.base_url, transport=backend.transport, token=api.token) as other:
        await other.sign_out()
    state.route = "/history"
    state.set_photo("s.png", strips["good"])
    assert await state.send_photo() is None
    assert not state.signed_in and state.error == SESSION_ENDED
    assert state.api.token is None and state.history == []
    assert state.queue == [] and state.photo is not None  # not queued, kept for after sign-in

    # A stored session whose token is dead (or expired) does not come back either.
    dead = fresh(api_for(), tmp_path)
    assert not await dead.resume(Session(token="dead-token", username="admin", role="admin"))
    assert not dead.signed_in and dead.error == SESSION_ENDED
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    assert Session.from_dict({"token": "t", "username": "a", "role": "admin",
                              "expires_at": past}) is None
    assert Session.from_dict({"nonsense": 1}) is None


async def test_sign_out_revokes_the_token(backend, api_for, tmp_path):
    api = api_for()
    state = fresh(api, tmp_path)
    assert await state.sign_in("admin", ADMIN_PASSWORD)
    token = api.token
    await state.sign_out()
    assert not state.signed_in and state.notice == "Signed out." and api.token is None
    async with ApiClient(api.base_url, transport=backend.transport, token=token) as old:
        with pytest.raises(ApiError) as refused:
            await old.me()
    assert refused.value.status == 401


async def test_operator_sees_only_what_the_role_may_use(backend, api_for, strips, tmp_path,
                                                        operator_token):
    for name in ("good", "scratches", "patches"):
        await backend.api.create_inspection(strips[name], f"{name}.png", station="a")
    api = api_for()
    state = fresh(api, tmp_path)
    assert await state.sign_in("olga", OPERATOR_PASSWORD)
    assert state.role == "operator" and not state.is_manager
    assert state.routes == ["/capture", "/result", "/history", "/detail", "/demo", "/settings"]
    assert not state.may_open("/charts")
    state.go("/charts")
    assert state.route == "/capture"

    # Recent history, no filters (a filter set before would be refused by the server).
    state.filters = HistoryFilter(station="nowhere", has_defect=True)
    state.page_size = 2
    await state.load_history()
    assert state.error == "" and state.history_total == 3 and len(state.history) == 2
    assert not state.has_more  # older history is a manager's
    assert not await state.delete(state.history[0].id)
    assert "manager" in state.error
    assert (await backend.api.list_inspections()).total == 3

    # The demo booth works for an operator too (no charts: those are a manager's).
    record = await state.demo_send("sample.png", strips["scratches"])
    assert record is not None and record.operator == "olga"  # no Operator setting: the user
    await state.demo_show_history()
    assert state.demo_step == 4 and state.error == "" and state.stats is None
    assert state.history[0].id == record.id
