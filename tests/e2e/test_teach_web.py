"""Teach a station from the tablet in headless Chromium against a real `kensa serve`: good strips
uploaded through the page, the training watched, the version put to use, a good and a
defective strip inspected with it, the Models screen, "add to good set" from the history.
What the page shows is checked against what the backend stored. Screenshots go to
docs/screenshots/ (20-26).
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
from e2e_testing import ADMIN_PASSWORD
from test_web_client import VERDICT_TEXT, api, open_client, shot, sign_in, text

pytestmark = pytest.mark.e2e

N_GOOD = 20
STATION = "line-1"  # the web client's default station setting
MODEL = f"{STATION}-patchcore"  # the Teach screen's default model name for it
PERCENT = re.compile(r"^\d{1,3}%$")


@pytest.fixture(scope="module")
def good_strips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Synthetic good strips as PNG files (another seed than the demo detector's)."""
    from PIL import Image

    from kensa.models.data.synthetic import SteelStripGenerator

    folder = tmp_path_factory.mktemp("teach-strips")
    generator = SteelStripGenerator(seed=31)
    paths = []
    for i in range(N_GOOD):
        buffer = io.BytesIO()
        Image.fromarray(generator.good(i).image).save(buffer, format="PNG")
        paths.append(folder / f"good-{i:02d}.png")
        paths[-1].write_bytes(buffer.getvalue())
    return paths


def nav(page, name: str) -> None:
    """A destination of the navigation rail (named "<label> Tab i of n", a badge's count
    beside the label)."""
    named = re.compile(rf"^(\d+\s+)?{name}(\s+\d+)?\s+Tab \d")
    page.get_by_role("button", name=named).first.click()


def press(page, name: str) -> None:
    button = page.get_by_role("button", name=name).first
    button.wait_for(timeout=60_000)
    button.click()


def click_at(page, label: str) -> None:
    """Tap the middle of a node that has no tap action of its own (Flutter hit-tests it)."""
    box = page.get_by_label(label).first.bounding_box()
    assert box, label
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def inspect(page, path: Path) -> None:
    nav(page, "Capture")
    text(page, "New inspection")
    with page.expect_file_chooser() as chooser:
        press(page, "Choose file")
    chooser.value.set_files(str(path))
    page.wait_for_function(
        "() => [...document.querySelectorAll('flt-semantics[role=button]')]"
        ".some(b => b.textContent.includes('Send for inspection') && "
        "b.getAttribute('aria-disabled') !== 'true')", timeout=60_000)
    press(page, "Send for inspection")
    text(page, VERDICT_TEXT, timeout=180_000)


def latest(client) -> dict:
    return client.get("/inspections", params={"limit": 1}).json()["items"][0]


def test_teach_use_inspect_models_good_set(server_url, browser, strip_files, good_strips,
                                           admin_token):
    with api(server_url, admin_token) as client:  # a server used before keeps its good set
        found = client.get(f"/datasets/{STATION}-good")
        held = found.json()["counts"].get("good", 0) if found.status_code == 200 else 0
        before = client.get(f"/detectors/{MODEL}/versions").json()
    page = open_client(browser, server_url)
    sign_in(page, "admin", ADMIN_PASSWORD)
    nav(page, "Teach")
    text(page, "Teach this station")
    text(page, "No photos yet.")
    if held:
        text(page, f"The good set of {STATION} already holds {held} photos")

    # Good photos through the page's file chooser; one removed again.
    with page.expect_file_chooser() as chooser:
        press(page, "Choose files")
    chooser.value.set_files([str(p) for p in good_strips])
    text(page, f"{N_GOOD} new photos")
    click_at(page, "good photo 3")
    text(page, "Photo 3:")
    shot(page, "20-teach-photos")
    press(page, "Remove")
    text(page, f"{N_GOOD - 1} new photos")
    assert page.get_by_role("textbox", name="Model name").count() == 1
    assert page.get_by_role("checkbox", name="patchcore").count() == 1  # the kind's chip

    # Start; watch the progress until the result.
    press(page, "Start teaching")
    page.get_by_label("training progress").first.wait_for(timeout=180_000)
    seen: list[int] = []
    shot_taken = False
    deadline = time.monotonic() + 600
    while not page.get_by_text("Training finished:").count():
        assert time.monotonic() < deadline, "the training did not finish"
        for node in page.get_by_text(PERCENT).all():
            value = (node.text_content() or "").strip().rstrip("%")
            if value.isdigit():
                seen.append(int(value))
        if seen and seen[-1] > 0 and not shot_taken:
            shot(page, "21-teach-progress", settle=0.5)
            shot_taken = True
        time.sleep(0.5)
    assert seen and seen == sorted(seen), seen
    text(page, "Held-out AUROC")
    text(page, "False alarms")
    if not any(v["state"] == "active" for v in before):
        text(page, f"No version of {MODEL} is in use yet.")
    shot(page, "22-teach-result")

    with api(server_url, admin_token) as client:
        job = client.get("/jobs").json()[0]
        assert job["status"] == "succeeded" and job["params"]["name"] == MODEL
        assert job["params"]["created_by"] == "admin"
        version = job["version"]
        assert job["metrics"]["n_holdout_good"] >= 1
        good_set = client.get(f"/datasets/{STATION}-good").json()
        assert good_set["counts"] == {"good": held + N_GOOD - 1}
        stored = client.get(f"/detectors/{MODEL}/versions").json()
        assert len(stored) == len(before) + 1
        assert (stored[-1]["version"], stored[-1]["state"]) == (version, "candidate")
    text(page, f"Training finished: {MODEL} {version}")

    press(page, "Use this model")
    text(page, "now inspects every new photo.")
    text(page, "This version is in use.")
    with api(server_url, admin_token) as client:
        stored = client.get(f"/detectors/{MODEL}/versions").json()
        assert [v["version"] for v in stored if v["state"] == "active"] == [version]
        served = {d["name"]: d["version"] for d in client.get("/detectors").json()}
        assert served[MODEL] == version
    shot(page, "23-teach-in-use")

    # The Models screen lists it as active.
    nav(page, "Models")
    text(page, "A new version inspects only after it is activated")
    text(page, f"runs {version}")
    page.get_by_text("Active", exact=True).first.wait_for(timeout=30_000)
    shot(page, "24-models")

    # Inspections now run the taught version: a good strip and a defective one.
    runs, scores = {}, {}
    # The taught version says ok to the good strip, and not ok (defect, or review when its
    # score falls in the band around the threshold) to the scratched one, scoring it higher.
    for name, path, verdicts in (("good", strip_files["good"], {"ok"}),
                                 ("scratches", strip_files["scratches"], {"defect", "review"})):
        inspect(page, path)
        with api(server_url, admin_token) as client:
            record = latest(client)
        assert {"name": MODEL, "version": version} in record["detectors"], record["detectors"]
        run = next(r for r in record["runs"] if r["detector"] == MODEL)
        assert run["verdict"] in verdicts, (name, run)
        runs[name], scores[name] = record, run["anomaly_score"]
        words = {"ok": "OK", "defect": "Defect found", "review": "Needs review"}
        assert words[record["verdict"]] in (text(page, VERDICT_TEXT).text_content() or "")
    assert scores["scratches"] > scores["good"], scores
    shot(page, "25-result-taught")

    # History -> detail of the good strip -> add it to the good set.
    good = runs["good"]
    nav(page, "History")
    text(page, f"#{good['id'][:8]}").click()
    text(page, f"Inspection #{good['id'][:8]}")
    press(page, "Add to good set")
    text(page, f"Added to the good set of {STATION} ({held + N_GOOD} good photos).")
    shot(page, "26-detail-good-set")
    with api(server_url, admin_token) as client:
        good_set = client.get(f"/datasets/{STATION}-good").json()
        assert good_set["counts"] == {"good": held + N_GOOD}
    page.close()
