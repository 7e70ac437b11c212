"""Accounts, roles, station keys, tokens, the audit trail, idempotent uploads and the browser
protections, all through real HTTP against the app with its lifespan running."""

from __future__ import annotations

import asyncio
import os
import stat
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from backend_testing import ADMIN_PASSWORD, Service, encode, make_settings, running_service

from kensa.backend.core.security import RANK
from kensa.backend.main import RouteRule, route_rules
from kensa.backend.services.accounts import INITIAL_PASSWORD_FILE

pytestmark = pytest.mark.anyio
BASE = "http://localhost"
PASSWORD = "correct horse battery"


def client_for(svc: Service, token: str | None = None, **headers: str) -> httpx.AsyncClient:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url=BASE,
                             headers=headers, timeout=120)


async def token_for(svc: Service, username: str, password: str = PASSWORD) -> str:
    response = await svc.client.post("/api/v1/auth/token",
                                     data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


async def add_user(svc: Service, username: str, role: str) -> str:
    response = await svc.client.post("/api/v1/users", json={
        "username": username, "password": PASSWORD, "role": role})
    assert response.status_code == 201, response.text
    return await token_for(svc, username)


async def add_station_key(svc: Service, station: str = "line-1") -> tuple[int, str]:
    response = await svc.client.post("/api/v1/station-keys",
                                     json={"name": f"cam {station}", "station": station})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["key"] and body["station"] == station
    return body["id"], body["key"]


def audit_count(svc: Service) -> int:
    return svc.count("audit_event")


@dataclass
class Callers:
    tokens: dict[str, str | None]  # role -> bearer secret (None: anonymous)


@pytest.fixture
async def callers(sqlite_service: Service) -> Callers:
    svc = sqlite_service
    _, key = await add_station_key(svc)
    return Callers(tokens={
        "anonymous": None, "station": key,
        "operator": await add_user(svc, "olga", "operator"),
        "manager": await add_user(svc, "max", "manager"),
        "admin": await token_for(svc, "admin", ADMIN_PASSWORD),
    })


# -- every route, every role ----------------------------------------------------------------------
def allowed(route: RouteRule, role: str) -> bool:
    requirement = route.requirement
    assert requirement is not None, f"{route.path} declares no role"
    if requirement.role is None:
        return True
    if role == "anonymous":
        return False
    if role == "station":
        return requirement.station
    return RANK[role] >= RANK[requirement.role]


@pytest.mark.parametrize("role", ["anonymous", "station", "operator", "manager", "admin"])
async def test_every_route_enforces_its_declared_role(sqlite_service: Service, callers: Callers,
                                                     strips, role: str) -> None:
    svc = sqlite_service
    photo = encode(strips.good(1).image)
    record = (await svc.upload(photo, station="line-1")).json()
    finding = (await svc.upload(encode(strips.defective(2).image), station="line-1")).json()
    params = {"inspection_id": record["id"], "finding_id": "1", "name": "patchcore",
              "username": "nobody-here", "key_id": "999999", "n": "0",
              "dataset": "no-such-dataset", "job_id": str(uuid.uuid4()),
              "version": "no-such-version", "path": "no-such-resource",
              "review_id": "1"}
    routes = route_rules(svc.app)
    assert len(routes) >= 20
    token = callers.tokens[role]
    checked = 0
    for route in routes:
        for method in sorted(route.methods):
            template = route.path.replace("{path:path}", "{path}")
            path = template.format(**params)
            if "{finding_id}" in route.path:
                path = template.format(**{**params, "inspection_id": finding["id"]})
            kwargs: dict = {}
            secret = token
            if (method, route.path) == ("POST", "/api/v1/inspections"):
                kwargs = {"files": {"image": ("s.png", photo, "image/png")}}
            elif (method, route.path) == ("POST", "/api/v1/auth/token"):
                kwargs = {"data": {"username": "admin", "password": ADMIN_PASSWORD}}
            elif (method, route.path) == ("POST", "/api/v1/auth/logout") and token:
                who = {"operator": "olga", "manager": "max"}.get(role)
                secret = await token_for(svc, who) if who else (
                    await token_for(svc, "admin", ADMIN_PASSWORD) if role == "admin" else token)
            elif (method, route.path) == ("POST", "/api/v1/users"):
                kwargs = {"json": {"username": f"u-{uuid.uuid4().hex[:8]}",
                                   "password": PASSWORD, "role": "operator"}}
            elif (method, route.path) == ("PATCH", "/api/v1/users/{username}"):
                kwargs = {"json": {"disabled": False}}
            elif (method, route.path) == ("POST", "/api/v1/station-keys"):
                kwargs = {"json": {"name": "k", "station": "line-9"}}
            elif (method, route.path) == ("POST",
                                          "/api/v1/inspections/{inspection_id}/review"):
                kwargs = {"json": {"decision": "ok"}}
            elif (method, route.path) == ("PATCH", "/api/v1/detectors/{name}"):
                kwargs = {"json": {"threshold": 1e9}}
            async with client_for(svc, secret) as http:
                response = await http.request(method, path, **kwargs)
            where = f"{role} {method} {route.path}: {response.status_code} {response.text[:200]}"
            if allowed(route, role):
                assert response.status_code not in (401, 403), where
            elif role == "anonymous":
                assert response.status_code == 401, where
                assert response.headers["www-authenticate"] == "Bearer"
            else:
                assert response.status_code == 403, where
                assert "role" in response.json()["detail"] or "station key" in \
                    response.json()["detail"]
            checked += 1
    assert checked >= len(routes)


def test_every_route_declares_a_role(tmp_path: Path, model_dir: Path) -> None:
    from kensa.backend.main import create_app

    app = create_app(make_settings(tmp_path, model_dir))
    rules = route_rules(app)
    assert {"/api/v1/inspections", "/api/v1/users", "/healthz"} <= {r.path for r in rules}
    assert all(rule.requirement is not None for rule in rules)

    @app.get("/api/v1/undeclared")
    async def undeclared() -> dict:
        return {}

    assert [r.path for r in route_rules(app) if r.requirement is None] == ["/api/v1/undeclared"]


async def test_open_paths_stay_open(sqlite_service: Service) -> None:
    async with client_for(sqlite_service) as anon:
        for path in ("/healthz", "/readyz", "/api/v1/openapi.json", "/api/v1/docs"):
            assert (await anon.get(path)).status_code == 200, path
        me = await anon.get("/api/v1/auth/me")
        assert me.status_code == 401 and me.headers["www-authenticate"] == "Bearer"


# -- roles' limits and station keys ---------------------------------------------------------------
async def test_operator_sees_recent_history_only(sqlite_service: Service, callers: Callers
                                                 ) -> None:
    async with client_for(sqlite_service, callers.tokens["operator"]) as http:
        assert (await http.get("/api/v1/inspections", params={"station": "a"})).status_code \
            == 200
        for params in ({"verdict": "defect"}, {"start": "2026-01-01"}, {"label": "x"},
                       {"include_deleted": "true"}, {"limit": 500}, {"offset": 50},
                       {"operator": "op1"}, {"cursor": "x"}):
            response = await http.get("/api/v1/inspections", params=params)
            assert response.status_code == 403, params
            assert "manager" in response.json()["detail"]
        assert (await http.get("/api/v1/stats")).status_code == 403
    async with client_for(sqlite_service, callers.tokens["manager"]) as http:
        assert (await http.get("/api/v1/inspections", params={"verdict": "defect",
                                                                "limit": 500})).status_code == 200


async def test_station_key_is_scoped_to_its_station(sqlite_service: Service, strips) -> None:
    svc = sqlite_service
    key_id, key = await add_station_key(svc, "line-1")
    other = (await svc.upload(encode(strips.good(3).image), station="line-2")).json()
    async with client_for(svc, key) as cam:
        me = (await cam.get("/api/v1/auth/me")).json()
        assert me["role"] == "station" and me["station"] == "line-1"
        created = await cam.post("/api/v1/inspections", data={"station": "line-2"},
                                 files={"image": ("s.png", encode(strips.good(4).image),
                                                  "image/png")})
        assert created.status_code == 201 and created.json()["station"] == "line-1"
        mine = created.json()
        assert (await cam.get(f"/api/v1/inspections/{mine['id']}")).status_code == 200
        assert (await cam.get(mine["image_url"])).status_code == 200
        assert (await cam.get(mine["overlay_url"])).status_code == 200
        for path in (f"/api/v1/inspections/{other['id']}", other["image_url"],
                     other["overlay_url"]):
            assert (await cam.get(path)).status_code == 404, path
        assert (await cam.get("/api/v1/inspections")).status_code == 403
        assert (await cam.delete(f"/api/v1/inspections/{mine['id']}")).status_code == 403
        assert (await cam.get("/api/v1/users")).status_code == 403
    assert (await svc.client.delete(f"/api/v1/station-keys/{key_id}")).status_code == 204
    async with client_for(svc, key) as cam:
        assert (await cam.get("/api/v1/auth/me")).status_code == 401
    listed = (await svc.client.get("/api/v1/station-keys")).json()
    assert all("key" not in k or k["key"] is None for k in listed)


# -- tokens ---------------------------------------------------------------------------------------
async def test_sign_in_answer_and_logout(sqlite_service: Service) -> None:
    svc = sqlite_service
    response = await svc.client.post("/api/v1/auth/token",
                                     data={"username": "admin", "password": ADMIN_PASSWORD})
    body = response.json()
    assert body["token_type"] == "bearer" and body["role"] == "admin" and body["expires_at"]
    async with client_for(svc, body["access_token"]) as http:
        assert (await http.get("/api/v1/auth/me")).json()["username"] == "admin"
        assert (await http.post("/api/v1/auth/logout")).status_code == 204
        assert (await http.get("/api/v1/auth/me")).status_code == 401
    assert (await svc.client.get("/api/v1/auth/me")).status_code == 200  # other tokens live
    wrong = await svc.client.post("/api/v1/auth/token",
                                  data={"username": "admin", "password": "nope"})
    assert wrong.status_code == 401


async def test_tokens_expire(tmp_path: Path, model_dir: Path) -> None:
    settings = make_settings(tmp_path, model_dir, token_ttl_hours=1.0 / 3600)  # one second
    async with running_service(settings) as svc:
        token = await token_for(svc, "admin", ADMIN_PASSWORD)
        async with client_for(svc, token) as http:
            assert (await http.get("/api/v1/auth/me")).status_code == 200
            await asyncio.sleep(1.2)
            response = await http.get("/api/v1/auth/me")
            assert response.status_code == 401 and "expired" in response.json()["detail"]


@pytest.mark.parametrize("change", ["password", "disabled", "role", "removed"])
async def test_user_changes_revoke_all_their_tokens(sqlite_service: Service, change: str
                                                    ) -> None:
    svc = sqlite_service
    first = await add_user(svc, "vera", "manager")
    second = await token_for(svc, "vera")
    if change == "removed":
        assert (await svc.client.delete("/api/v1/users/vera")).status_code == 204
    else:
        body = {"password": {"password": "a new long password"}, "disabled": {"disabled": True},
                "role": {"role": "operator"}}[change]
        assert (await svc.client.patch("/api/v1/users/vera", json=body)).status_code == 200
    for token in (first, second):
        async with client_for(svc, token) as http:
            assert (await http.get("/api/v1/auth/me")).status_code == 401
    if change == "password":
        await token_for(svc, "vera", "a new long password")
    if change == "disabled":
        refused = await svc.client.post("/api/v1/auth/token",
                                        data={"username": "vera", "password": PASSWORD})
        assert refused.status_code == 401


async def test_failed_sign_ins_are_rate_limited(sqlite_service: Service) -> None:
    svc = sqlite_service
    for _ in range(5):
        response = await svc.client.post("/api/v1/auth/token",
                                         data={"username": "admin", "password": "guess"})
        assert response.status_code == 401
    limited = await svc.client.post("/api/v1/auth/token",
                                    data={"username": "admin", "password": ADMIN_PASSWORD})
    assert limited.status_code == 429
    assert 0 < int(limited.headers["retry-after"]) <= 60
    # per client address too: another username from the same address is refused as well
    other = await svc.client.post("/api/v1/auth/token",
                                  data={"username": "someone", "password": "guess"})
    assert other.status_code == 429


async def test_first_start_writes_a_random_admin_password(tmp_path: Path, model_dir: Path,
                                                          capsys) -> None:
    settings = make_settings(tmp_path, model_dir, admin_password=None)
    async with running_service(settings) as svc:
        path = settings.data_dir / INITIAL_PASSWORD_FILE
        password = path.read_text().strip()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert password in capsys.readouterr().out
        await token_for(svc, "admin", password)
        async with client_for(svc) as anon:
            assert (await anon.get("/api/v1/inspections")).status_code == 401


# -- audit trail ----------------------------------------------------------------------------------
async def test_every_change_is_audited_and_failures_are_not(service: Service, strips) -> None:
    svc = service
    record = (await svc.upload(encode(strips.good(5).image))).json()
    manager = await add_user(svc, "mia", "manager")
    async with client_for(svc, manager) as http:
        assert (await http.delete(f"/api/v1/inspections/{record['id']}")).status_code == 204
        assert (await http.post(f"/api/v1/inspections/{record['id']}/restore")
                ).status_code == 200
        assert (await http.patch("/api/v1/detectors/patchcore", json={"threshold": 2.5})
                ).status_code == 200
        history = (await http.get(f"/api/v1/inspections/{record['id']}/history")).json()
    assert [(e["action"], e["actor"]) for e in history] == [
        ("inspection.delete", "mia"), ("inspection.restore", "mia")]
    assert history[0]["before"] == {"deleted_at": None} and history[0]["after"]["deleted_at"]
    key_id, _ = await add_station_key(svc, "line-3")
    assert (await svc.client.patch("/api/v1/users/mia", json={"role": "operator"})
            ).status_code == 200
    assert (await svc.client.delete(f"/api/v1/station-keys/{key_id}")).status_code == 204
    assert (await svc.client.delete("/api/v1/users/mia")).status_code == 204

    trail = (await svc.client.get("/api/v1/audit", params={"limit": 100})).json()
    actions = [e["action"] for e in reversed(trail["items"])]
    assert actions == ["user.create", "user.create", "inspection.delete", "inspection.restore",
                       "detector.threshold", "station_key.create", "user.update",
                       "station_key.delete", "user.delete"]
    threshold = next(e for e in trail["items"] if e["action"] == "detector.threshold")
    assert threshold["actor"] == "mia" and threshold["after"]["threshold"] == 2.5
    assert threshold["before"]["threshold"] != 2.5
    update = next(e for e in trail["items"] if e["action"] == "user.update")
    assert update["before"]["role"] == "manager" and update["after"]["role"] == "operator"
    assert "password_hash" not in str(trail)
    filtered = (await svc.client.get("/api/v1/audit", params={"actor": "mia"})).json()
    assert filtered["total"] == 3
    assert (await svc.client.get("/api/v1/audit", params={"action": "user.delete"})
            ).json()["total"] == 1
    assert (await svc.client.get("/api/v1/audit", params={"target": record["id"]})
            ).json()["total"] == 2

    before = audit_count(svc)
    failures = [
        svc.client.delete(f"/api/v1/inspections/{uuid.uuid4()}"),  # 404
        svc.client.patch("/api/v1/detectors/patchcore", json={"threshold": 1.0,
                                                             "label": "nonesuch"}),  # 422
        svc.client.patch("/api/v1/detectors/nonesuch", json={"threshold": 1.0}),  # 404
        svc.client.post("/api/v1/users", json={"username": "admin", "password": PASSWORD,
                                               "role": "admin"}),  # 409 exists
        svc.client.post("/api/v1/users", json={"username": "z", "password": PASSWORD,
                                               "role": "boss"}),  # 422 role
        svc.client.patch("/api/v1/users/admin", json={"role": "operator"}),  # 409 last admin
        svc.client.delete("/api/v1/users/admin"),  # 409 last admin
        svc.client.delete("/api/v1/station-keys/424242"),  # 404
    ]
    statuses = [(await request).status_code for request in failures]
    assert all(400 <= s < 500 for s in statuses), statuses
    assert audit_count(svc) == before


# -- idempotent uploads ---------------------------------------------------------------------------
async def test_idempotent_retry_returns_the_first_record(sqlite_service: Service, strips
                                                         ) -> None:
    svc = sqlite_service
    photo = encode(strips.good(6).image)
    headers = {"Idempotency-Key": "photo-0001"}
    files = {"image": ("s.png", photo, "image/png")}
    first = await svc.client.post("/api/v1/inspections", data={"station": "a"}, files=files,
                                  headers=headers)
    again = await svc.client.post("/api/v1/inspections", data={"station": "a"}, files=files,
                                  headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.json()["id"] == first.json()["id"]
    assert svc.count("inspection") == 1
    other = await svc.client.post("/api/v1/inspections", data={"station": "b"}, files=files,
                                  headers=headers)
    assert other.status_code == 422 and "different request body" in other.json()["detail"]
    assert svc.count("inspection") == 1
    # keys belong to the caller: another user's same key is a new upload
    async with client_for(svc, await add_user(svc, "ivan", "operator")) as http:
        theirs = await http.post("/api/v1/inspections", data={"station": "a"}, files=files,
                                 headers=headers)
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]


async def test_concurrent_duplicates_make_one_record(service: Service, strips) -> None:
    """On SQLite and PostgreSQL: the unique reservation lets one request through."""
    svc = service
    photo = encode(strips.defective(7).image)

    async def send() -> httpx.Response:
        return await svc.client.post("/api/v1/inspections", headers={"Idempotency-Key": "k-7"},
                                     files={"image": ("s.png", photo, "image/png")})

    responses = await asyncio.gather(*(send() for _ in range(4)))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {201, 409} and codes.count(201) >= 1, codes
    assert len({r.json()["id"] for r in responses if r.status_code == 201}) == 1
    assert svc.count("inspection") == 1 and svc.count("idempotency_key") == 1


async def test_failed_first_attempt_frees_the_key(sqlite_service: Service, strips) -> None:
    svc = sqlite_service
    headers = {"Idempotency-Key": "k-broken"}
    broken = await svc.client.post("/api/v1/inspections", headers=headers,
                                   files={"image": ("s.png", b"\x89PNG broken", "image/png")})
    assert broken.status_code in (415, 422)
    assert svc.count("idempotency_key") == 0 and svc.count("inspection") == 0
    fixed = await svc.client.post("/api/v1/inspections", headers=headers, files={
        "image": ("s.png", encode(strips.good(8).image), "image/png")})
    assert fixed.status_code == 201


# -- browsers -------------------------------------------------------------------------------------
@pytest.fixture
async def cors_service(tmp_path: Path, model_dir: Path) -> AsyncIterator[Service]:
    settings = make_settings(tmp_path, model_dir, cors_origins=["http://tablet.plant"])
    async with running_service(settings) as svc:
        yield svc


async def test_cross_origin_post_is_refused(cors_service: Service, strips) -> None:
    svc = cors_service
    files = {"image": ("s.png", encode(strips.good(9).image), "image/png")}
    evil = await svc.client.post("/api/v1/inspections", files=files,
                                 headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403 and "evil.example" in evil.json()["detail"]
    assert svc.count("inspection") == 0
    own = await svc.client.post("/api/v1/inspections", files=files, headers={"Origin": BASE})
    assert own.status_code == 201
    listed = await svc.client.post("/api/v1/inspections", files=files,
                                   headers={"Origin": "http://tablet.plant"})
    assert listed.status_code == 201
    assert listed.headers["access-control-allow-origin"] == "http://tablet.plant"
    preflight = await svc.client.options("/api/v1/inspections", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers
    assert svc.count("inspection") == 2


async def test_cors_is_closed_by_default(sqlite_service: Service) -> None:
    response = await sqlite_service.client.get("/api/v1/inspections",
                                               headers={"Origin": "http://tablet.plant"})
    assert "access-control-allow-origin" not in response.headers


async def test_security_headers(sqlite_service: Service) -> None:
    async with client_for(sqlite_service) as anon:
        for path in ("/api/v1/inspections", "/healthz", "/api/v1/docs"):
            response = await anon.get(path)
            assert response.headers["x-content-type-options"] == "nosniff", path
            assert response.headers["x-frame-options"] == "DENY", path
            assert response.headers["referrer-policy"] == "no-referrer", path
        api = await anon.get("/api/v1/inspections")
        assert "frame-ancestors 'none'" in api.headers["content-security-policy"]
        assert "content-security-policy" not in (await anon.get("/api/v1/docs")).headers


# -- the command line -----------------------------------------------------------------------------
def test_users_command_manages_accounts(tmp_path: Path, monkeypatch, capsys) -> None:
    import io

    from kensa.cli import main as kensa

    where = ["--data-dir", str(tmp_path / "data")]

    def run(*argv: str, stdin: str = "") -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        return kensa(["users", *argv, *where])

    assert run("add", "kim", "--role", "manager", "--password-stdin", stdin=PASSWORD + "\n") == 0
    assert run("add", "kim", "--password-stdin", stdin=PASSWORD + "\n") == 1
    assert "exists" in capsys.readouterr().err
    assert run("add", "short", "--password-stdin", stdin="abc\n") == 1
    assert run("list") == 0
    assert "kim\tmanager" in capsys.readouterr().out
    assert run("passwd", "kim", "--password-stdin", stdin="another long one\n") == 0
    assert run("remove", "kim") == 0
    assert run("remove", "kim") == 1
    capsys.readouterr()
    assert run("list") == 0
    assert "kim" not in capsys.readouterr().out
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{(tmp_path / 'data' / 'kensa.db').resolve()}")
    with engine.connect() as conn:
        actions = conn.execute(sa.text("select actor, action from audit_event order by id")
                               ).all()
    engine.dispose()
    assert [tuple(a) for a in actions] == [("cli", "user.create"), ("cli", "user.update"),
                                           ("cli", "user.delete")]
