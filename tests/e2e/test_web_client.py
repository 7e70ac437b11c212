"""The real web client in headless Chromium against a real `kensa serve`.

Flet renders with Flutter (CanvasKit, a canvas): the test switches on Flutter's semantics tree
(the hidden "Enable accessibility" placeholder), after which every text and button is a DOM
node Playwright finds by text or role. Every page signs in on the sign-in screen (the server
runs without a kiosk token). Screenshots of each screen go to docs/screenshots/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from e2e_testing import ADMIN_PASSWORD, OPERATOR, REPO, Outage, free_port

pytestmark = pytest.mark.e2e

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
LANDSCAPE = {"width": 1280, "height": 800}
PORTRAIT = {"width": 800, "height": 1280}
VERDICT_TEXT = re.compile(r"^(OK: no defect found|Defect found|Needs review by a person)$")


def open_client(browser, url: str, viewport=LANDSCAPE, path: str = "/"):
    page = browser.new_context(viewport=viewport).new_page()  # its own device storage
    page.goto(f"{url}{path}")
    page.wait_for_selector("flt-semantics-placeholder", state="attached", timeout=120_000)
    page.evaluate("document.querySelector('flt-semantics-placeholder').click()")
    return page


def text(page, value, timeout: float = 60_000):
    locator = page.get_by_text(value).first
    try:
        locator.wait_for(timeout=timeout)
    except Exception:
        # What the page showed instead, for whoever reads the failure (CI keeps the file).
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "failure-last.png"))
        print("page text at failure:", page.evaluate("document.body.innerText")[:2000])
        raise
    return locator


def tap(page, name: str, role: str = "button"):
    page.get_by_role(role, name=name).first.click()


def shot(page, name: str, settle: float = 2.0) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    time.sleep(settle)  # images load after the text; Flutter's canvas gives no load event
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def api(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{url}/api/v1", timeout=120,
                        headers={"Authorization": f"Bearer {token}"})


def type_into(page, label: str, value: str) -> None:
    field = page.get_by_role("textbox", name=label).first
    field.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(value)


def sign_in(page, username: str, password: str, expect: str | re.Pattern = "New inspection",
            timeout: float = 120_000) -> None:
    """Type the user name and password on the sign-in screen and press Sign in."""
    text(page, "Sign in", timeout=timeout)
    type_into(page, "User name", username)
    type_into(page, "Password", password)
    tap(page, "Sign in")
    text(page, expect, timeout=timeout)


def test_capture_result_history_charts_demo(server_url, browser, strip_files, admin_token):
    def api_(url):
        return api(url, admin_token)

    with api_(server_url) as client:
        before = client.get("/inspections", params={"limit": 500}).json()
        seen = {r["id"] for r in before["items"]}
        # Earlier inspections from another station, so history and charts have something.
        for name in ("good", "patches"):
            with strip_files[name].open("rb") as fh:
                created = client.post("/inspections", files={"image": (f"{name}.png", fh)},
                                      data={"station": "line-2", "operator": "ann"})
            assert created.status_code == 201, created.text
            seen.add(created.json()["id"])

    # Sign in: the screen first, a wrong password, then the right one.
    page = open_client(browser, server_url)
    text(page, "Sign in", timeout=120_000)
    shot(page, "00-sign-in")
    text(page, f"Server: {server_url}")
    sign_in(page, "admin", "not-the-password", expect="Wrong user name or password.")
    shot(page, "00-sign-in-error")
    type_into(page, "Password", ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    text(page, "New inspection", timeout=120_000)
    text(page, "admin", timeout=10_000)  # the user and the role under the logo
    assert page.get_by_role("button", name="Charts").count() == 1  # an admin's navigation
    shot(page, "01-capture")

    # Capture: choose a file through the browser's file chooser, preview, send.
    with page.expect_file_chooser() as chooser:
        tap(page, "Choose file")
    chooser.value.set_files(str(strip_files["scratches"]))
    send = page.get_by_role("button", name="Send for inspection").first
    page.wait_for_function(
        "() => [...document.querySelectorAll('flt-semantics[role=button]')]"
        ".some(b => b.textContent.includes('Send for inspection') && "
        "b.getAttribute('aria-disabled') !== 'true')", timeout=60_000)
    shot(page, "02-preview")
    send.click()

    # Result: verdict in words, findings, overlay with layer switches.
    badge = text(page, VERDICT_TEXT, timeout=180_000)
    text(page, "Findings (")
    with api_(server_url) as client:
        listing = client.get("/inspections", params={"limit": 500}).json()
        assert listing["total"] == before["total"] + 3
        new = [r for r in listing["items"] if r["id"] not in seen]
        assert len(new) == 1
        record = new[0]
        assert record["station"] == "line-1", "recorded with the tablet's station setting"
    shown = badge.text_content() or ""
    expected = {"ok": "OK", "defect": "Defect found", "review": "Needs review"}[record["verdict"]]
    assert expected in shown
    heatmap = page.get_by_role("checkbox", name="Anomaly heatmap").first
    was = heatmap.get_attribute("aria-checked")
    heatmap.click()
    page.wait_for_function(
        "was => document.querySelector('flt-semantics[role=checkbox][aria-label=\"Anomaly "
        "heatmap\"]').getAttribute('aria-checked') !== was", arg=was, timeout=30_000)
    heatmap.click()  # and back on, for the screenshot
    shot(page, "03-result")

    # History: filter to photos with defects; the count shown must match the API's.
    tap(page, "History")
    text(page, "History")
    text(page, re.compile(r"\d+ images? · \d+% with defects"))
    shot(page, "04-history", settle=5)
    tap(page, "With defects", role="checkbox")
    with api_(server_url) as client:
        today = client.get("/inspections", params={"has_defect": "true", "limit": 1}).json()
    text(page, re.compile(rf"^{today['total']} images? · "))
    shot(page, "05-history-filtered")
    tap(page, "With defects", role="checkbox")  # back to all

    # Detail of the uploaded photo, delete, undo.
    text(page, f"#{record['id'][:8]}").click()
    text(page, f"Inspection #{record['id'][:8]}")
    text(page, "Captured")
    shot(page, "06-detail")
    tap(page, "Delete")
    text(page, "deleted.")
    with api_(server_url) as client:
        assert client.get(f"/inspections/{record['id']}").json()["deleted_at"] is not None
        assert record["id"] not in {r["id"] for r in client.get(
            "/inspections", params={"limit": 500}).json()["items"]}
    tap(page, "Undo")
    text(page, "Inspection restored.")
    with api_(server_url) as client:
        assert client.get(f"/inspections/{record['id']}").json()["deleted_at"] is None

    # Charts: stacked bars per day; tapping a label highlights it.
    tap(page, "Charts")
    text(page, "Share of photos with defects")
    shot(page, "07-charts")
    with api_(server_url) as client:
        totals = client.get("/stats", params={"bucket": "day"}).json()["totals"]
    label = sorted(totals["by_label"])[0]
    legend = f"{label.replace('_', ' ')} ({totals['by_label'][label]})"
    tap(page, legend, role="checkbox")
    text(page, f"{label.replace('_', ' ')}: {totals['by_label'][label]} of")
    shot(page, "08-charts-highlight")

    # Demo booth: pick a sample strip, watch, see the explanation, then the history.
    tap(page, "Demo booth")
    text(page, "How does the inspection work?")
    shot(page, "09-demo-1")
    page.get_by_text("Scratches", exact=True).first.click()
    text(page, "What was found and why", timeout=180_000)
    shot(page, "10-demo-3")
    tap(page, "See it in the history")
    text(page, re.compile(r"This week: \d+ photos"))
    shot(page, "11-demo-4")
    tap(page, "Exit demo")

    tap(page, "Settings")
    text(page, "Signed in as admin (admin)")
    shot(page, "12-settings")
    tap(page, "Dark", role="checkbox")
    tap(page, "Save")
    text(page, "Settings saved.")
    tap(page, "History")
    text(page, re.compile(r"\d+ images? · "))
    shot(page, "14-history-dark", settle=4)

    # Another tab of this browser (a new client session) is signed in by the token kept on
    # the device; signing out there ends it.
    again = page.context.new_page()
    again.goto(server_url)
    again.wait_for_selector("flt-semantics-placeholder", state="attached", timeout=120_000)
    again.evaluate("document.querySelector('flt-semantics-placeholder').click()")
    text(again, "New inspection", timeout=120_000)
    text(again, "operator admin")  # no Operator setting here: the signed-in user
    tap(again, "Settings")
    tap(again, "Sign out")
    text(again, "Signed out.")
    text(again, "Sign in")
    again.close()
    page.close()

    portrait = open_client(browser, server_url, PORTRAIT, "/history")
    sign_in(portrait, "admin", ADMIN_PASSWORD, expect=re.compile(r"\d+ images? · "))
    shot(portrait, "13-history-portrait", settle=6)
    portrait.close()


def test_operator_sees_what_an_operator_may(server_url, browser, admin_token):
    """An operator (made by the admin through the API) signs in: no Charts on the navigation,
    recent history without filters, the role shown."""
    username, password = OPERATOR
    with api(server_url, admin_token) as client:
        made = client.post("/users", json={"username": username, "password": password,
                                           "role": "operator"})
        assert made.status_code in (201, 409), made.text
    page = open_client(browser, server_url)
    sign_in(page, username, password)
    text(page, "operator", timeout=10_000)
    text(page, username, timeout=10_000)
    for name in ("Capture", "History", "Demo booth", "Settings"):
        assert page.get_by_role("button", name=name).count() >= 1, name
    assert page.get_by_role("button", name="Charts").count() == 0
    tap(page, "History")
    text(page, "Recent inspections")
    text(page, re.compile(r"\d+ images? · "))
    assert page.get_by_role("checkbox", name="With defects").count() == 0
    shot(page, "16-operator-nav", settle=4)
    tap(page, "Settings")
    text(page, f"Signed in as {username} (operator)")
    page.close()


def test_offline_photo_waits_on_the_device_then_is_sent(server_url, browser, strip_files,
                                                        tmp_path, admin_token):
    """`kensa client --web` with the network to its server cut: signing in says the server
    cannot be reached; signed in, a photo taken while the network is down is queued in a folder,
    visible; when the network is back "Send now" delivers it."""
    target = urlsplit(server_url)
    outage = Outage(target.hostname or "127.0.0.1", target.port or 80)
    port = free_port()
    queue_dir = tmp_path / "queue"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kensa.cli", "client", "--web", "--port", str(port),
         "--server", outage.url, "--queue-dir", str(queue_dir)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        client_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(client_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "kensa client --web did not start"
            time.sleep(0.5)
        with api(server_url, admin_token) as client:
            before = {r["id"] for r in client.get("/inspections",
                                                  params={"limit": 500}).json()["items"]}

        page = open_client(browser, client_url)
        text(page, "Sign in", timeout=120_000)
        assert page.get_by_role("textbox", name="Server address").count() == 1  # editable here
        sign_in(page, "admin", ADMIN_PASSWORD, expect="Cannot reach the server at")
        shot(page, "00-sign-in-unreachable")
        outage.restore()
        tap(page, "Sign in")
        text(page, "New inspection", timeout=120_000)

        outage.cut()
        with page.expect_file_chooser() as chooser:
            tap(page, "Choose file")
        chooser.value.set_files(str(strip_files["patches"]))
        page.wait_for_function(
            "() => [...document.querySelectorAll('flt-semantics[role=button]')]"
            ".some(b => b.textContent.includes('Send for inspection') && "
            "b.getAttribute('aria-disabled') !== 'true')", timeout=60_000)
        tap(page, "Send for inspection")
        text(page, "1 photo saved on this device, not sent yet")
        text(page, "cannot be reached right now")
        assert len(list(queue_dir.glob("*.json"))) == 1
        shot(page, "15-offline-queue")

        # The network is back: send the queue.
        outage.restore()
        tap(page, "Send now")
        text(page, "Sent 1 queued photo.", timeout=180_000)
        assert list(queue_dir.glob("*.json")) == []
        with api(server_url, admin_token) as client:
            items = client.get("/inspections", params={"limit": 500}).json()["items"]
        new = [r for r in items if r["id"] not in before]
        assert len(new) == 1 and new[0]["station"] == "line-1"
        page.close()
    finally:
        outage.cut()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
