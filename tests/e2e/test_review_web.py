"""Review on the tablet in headless Chromium against a real `kensa serve`: three queued
inspections answered (a key, the OK button, the Defect button with a label chip), then what
the backend recorded: the human verdicts beside the unchanged machine verdicts.
Screenshots: docs/screenshots/27-28.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
from e2e_testing import ADMIN_PASSWORD
from test_teach_web import nav
from test_web_client import api, open_client, shot, sign_in, text

pytestmark = pytest.mark.e2e


def show_one_of(page, wanted: dict[str, str], timeout: float = 120) -> str:
    """Skip entries that are not the test's until one of ``wanted`` (short id -> name) shows."""
    deadline = time.monotonic() + timeout
    while True:
        for short, name in wanted.items():
            if page.get_by_text(f"#{short} ·").count():
                return name
        assert time.monotonic() < deadline, "none of the test's inspections came up"
        page.get_by_role("button", name="Skip").first.click()
        time.sleep(1.5)


def test_review_three_inspections(server_url, browser, strip_files, admin_token):
    run = uuid.uuid4().hex[:6]
    made = {}
    with api(server_url, admin_token) as client:
        # The first inspection at a station is always the one nearest its threshold there:
        # each goes to the review queue.
        for name in ("good", "scratches", "patches"):
            with strip_files[name].open("rb") as fh:
                created = client.post("/inspections", files={"image": (f"{name}.png", fh)},
                                      data={"station": f"rv{run}-{name}"})
            assert created.status_code == 201, created.text
            made[name] = created.json()
            assert made[name]["review_status"] == "open", made[name]
        opened = client.get("/reviews", params={"status": "open", "limit": 1}).json()["open"]

    page = open_client(browser, server_url)
    sign_in(page, "admin", ADMIN_PASSWORD)
    nav(page, "Review")
    text(page, f"{opened} open")
    wanted = {r["id"][:8]: name for name, r in made.items()}
    answers = {}
    for step in range(3):
        name = show_one_of(page, wanted)
        short = made[name]["id"][:8]
        if step == 0:
            shot(page, "27-review")
        if name == "good":
            page.keyboard.press("o")  # the desktop shortcut
            answers[name] = ("ok", [])
        elif name == "scratches":
            page.get_by_role("button", name="OK", exact=True).first.click()
            answers[name] = ("ok", [])
        else:
            chip = page.get_by_role("checkbox", name=re.compile("patches")).first
            if chip.get_attribute("aria-checked") != "true":
                chip.click()
            page.wait_for_function(
                "() => [...document.querySelectorAll('flt-semantics[role=checkbox]')]"
                ".some(c => (c.getAttribute('aria-label') || c.textContent).includes('patches')"
                " && c.getAttribute('aria-checked') === 'true')", timeout=30_000)
            shot(page, "28-review-labels", settle=1)
            page.get_by_role("button", name="Defect", exact=True).first.click()
            answers[name] = ("defect", ["patches"])
        text(page, f"#{short} marked {'OK' if answers[name][0] == 'ok' else 'defect'}")
        del wanted[short]

    with api(server_url, admin_token) as client:
        for name, before in made.items():
            after = client.get(f"/inspections/{before['id']}").json()
            assert (after["verdict"], after["anomaly_score"]) == (before["verdict"],
                                                                  before["anomaly_score"])
            assert after["review_status"] == "done"
            decision, labels = answers[name]
            assert after["review"]["decision"] == decision, (name, after["review"])
            assert set(labels) <= set(after["review"]["labels"]), (name, after["review"])
            if decision == "ok":
                assert after["review"]["labels"] == []
            assert after["review"]["by"] == "admin"
        left = client.get("/reviews", params={"status": "open", "limit": 1}).json()["open"]
    assert left == opened - 3
    text(page, f"{left} open")
    page.close()
