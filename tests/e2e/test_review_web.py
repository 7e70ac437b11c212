"""Review on the tablet in headless Chromium against a real `kensa serve`: three queued
inspections answered (a key, the OK button, the Defect button with a label chip and a defect
mask painted with the mouse on the photo), then what the backend recorded: the human verdicts
beside the unchanged machine verdicts, and the painted mask's pixels.
Screenshots: docs/screenshots/27-31 (31: the agreement figures on Charts).
"""

from __future__ import annotations

import io
import re
import time
import uuid

import numpy as np
import pytest
from e2e_testing import ADMIN_PASSWORD
from PIL import Image
from test_teach_web import nav
from test_web_client import api, open_client, shot, sign_in, text

from kensa.client.components.mask_editor import PHOTO_LABEL
from kensa.client.masking import to_photo

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


def paint_stroke(page, record: dict) -> list[tuple[int, int]]:
    """Drag the mouse across the photo on the brush; the photo pixels the stroke went over."""
    photo = page.get_by_label(PHOTO_LABEL).first
    photo.wait_for(timeout=60_000)
    box = photo.bounding_box()
    assert box and box["width"] > 100, box
    y = box["y"] + box["height"] / 2
    x0, x1 = box["x"] + box["width"] * 0.2, box["x"] + box["width"] * 0.6
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move(x1, y, steps=25)
    page.mouse.up()
    view, size = (box["width"], box["height"]), (record["width"], record["height"])
    return [tuple(round(v) for v in to_photo((x - box["x"], y - box["y"]), view, size))
            for x in np.linspace(x0 + 5, x1 - 5, 20)]


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
            # Correct the machine's mask: the brush, then a stroke across the photo.
            page.get_by_role("button", name="Correct the mask").first.click()
            text(page, re.compile(r"Nothing marked yet|pixels marked"))
            before = page.evaluate("document.body.innerText")
            painted = paint_stroke(page, made[name])
            page.wait_for_function(
                "was => document.body.innerText.match(/[\\d,]+ pixels marked/) && "
                "document.body.innerText !== was", arg=before, timeout=30_000)
            shot(page, "29-review-mask")
            page.get_by_role("button", name="Defect", exact=True).first.click()
            answers[name] = ("defect", ["patches"])
        text(page, f"#{short} marked {'OK' if answers[name][0] == 'ok' else 'defect'}")
        if step == 2:
            shot(page, "30-review-done")
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
                assert after["review"]["mask_url"] is None
            assert after["review"]["by"] == "admin"
        # The mask painted through the page: at the photo's size, marked along the stroke.
        stored = client.get(f"/inspections/{made['patches']['id']}/review/mask")
        assert stored.status_code == 200, stored.text
        mask = np.asarray(Image.open(io.BytesIO(stored.content)).convert("L")) > 0
        assert mask.shape == (made["patches"]["height"], made["patches"]["width"])
        assert all(mask[y, x] for x, y in painted), painted
        assert mask.sum() < mask.size / 2  # a stroke, not the whole photo
        left = client.get("/reviews", params={"status": "open", "limit": 1}).json()["open"]
    assert left == opened - 3
    text(page, f"{left} open")

    # The Charts screen shows how often the machine and the reviewers agreed.
    nav(page, "Charts")
    text(page, "Machine vs person (reviewed inspections)")
    text(page, re.compile(r"^\d+ reviewed · agreed \d+%"))
    page.mouse.move(700, 500)
    page.mouse.wheel(0, 2000)
    shot(page, "31-charts-agreement")
    page.close()
