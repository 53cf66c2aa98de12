"""The page in a real browser: Debian's Chromium, driven by Playwright, against a real server.

Playwright's own browser download needs the internet, so the test drives
/usr/bin/chromium (`make test` installs it where apt-get can). Set
SEQMNIST_SCREENSHOT=docs/serve.png to keep the screenshot the README shows.
"""

import base64
import json
import os
import signal
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from bad_images import png_bytes
from live_server import start, stop
from PIL import Image

from seqmnist.data import load_dataset

CHROMIUM = Path("/usr/bin/chromium")
PHONE = {"width": 360, "height": 740}
# A 7 in the pad's own coordinates (fractions of its side): the bar, then the stem.
SEVEN = [[(0.25, 0.22), (0.75, 0.22)], [(0.75, 0.22), (0.45, 0.85)]]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium and fonts-liberation "
            "(`make test` does, as root with apt-get)"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


@pytest.fixture
def server(mnist_run, untrained_run):
    """A trained LSTM beside an untrained GRU, as two cards side by side."""
    process, address = start(
        f"lstm={mnist_run}", f"gru-untrained={untrained_run('gru', cell='gru')}"
    )
    yield address
    status, errors = stop(process, signal.SIGINT)
    assert status == 0, errors


def watched(page) -> list[str]:
    """The page's console errors and uncaught exceptions, collected as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    return errors


def draw(page, strokes, touch=None) -> None:
    """Draw ``strokes`` on the pad with the mouse, or with a finger through ``touch`` (CDP)."""
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        points = [
            (box["x"] + (ax + (bx - ax) * t / 10) * box["width"],
             box["y"] + (ay + (by - ay) * t / 10) * box["height"])
            for (ax, ay), (bx, by) in zip(stroke, stroke[1:]) for t in range(11)
        ]  # fmt: skip
        if touch is None:
            page.mouse.move(*points[0])
            page.mouse.down()
            for point in points[1:]:
                page.mouse.move(*point)
            page.mouse.up()
        else:
            touch.send("Input.dispatchTouchEvent", {"type": "touchStart",
                       "touchPoints": [{"x": points[0][0], "y": points[0][1]}]})  # fmt: skip
            for x, y in points[1:]:
                touch.send("Input.dispatchTouchEvent",
                           {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})  # fmt: skip
            touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def api_label(address: str, png: bytes, run: str) -> str:
    request = urllib.request.Request(
        f"{address}api/predict?run={run}", data=png, headers={"Content-Type": "image/png"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)["label"]


def wait_for_label(page, run: str, label: str) -> None:
    page.wait_for_function(
        """([run, label]) => {
            const card = document.querySelector(`.run-card[data-run="${run}"]`);
            return card && card.dataset.state === "ready" && !card.hasAttribute("aria-busy")
                && card.querySelector(".label").textContent.trim() === label;
        }""",
        arg=[run, label],
        timeout=30_000,
    )


def pad_png(page) -> bytes:
    url = page.evaluate("document.querySelector('#pad').toDataURL('image/png')")
    return base64.b64decode(url.split(",", 1)[1])


@pytest.mark.slow
def test_draw_watch_it_read_and_upload(browser, server, mnist_dir, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors = watched(page)
    page.goto(server)
    page.wait_for_selector("main[data-runs='2']")
    assert page.locator(".run-card").count() == 2

    draw(page, SEVEN)
    drawing = pad_png(page)
    for run in ("lstm", "gru-untrained"):
        # The card shows the answer the API gives for the drawing the pad holds.
        wait_for_label(page, run, api_label(server, drawing, run))
        card = page.locator(f'.run-card[data-run="{run}"]')
        assert card.locator(".bars .bar").count() == 10
        assert card.locator(".steps-chart .step-row").count() == 28
    assert "test accuracy" in page.locator('.run-card[data-run="lstm"] .model').inner_text()

    # Watch it read, from the keyboard: the first row, then the whole image.
    card = page.locator('.run-card[data-run="lstm"]')
    slider = card.locator(".step-slider")
    slider.focus()
    slider.press("Home")
    assert card.locator(".step-text").inner_text().startswith("after row 1 of 28")
    assert card.locator(".step-row.is-current").get_attribute("data-step") == "1"
    slider.press("End")
    label = card.locator(".label").inner_text().strip()
    assert card.locator(".step-text").inner_text().startswith(f"after row 28 of 28: {label}")
    page.screenshot(path=str(tmp_path / "drawn.png"))

    # An uploaded MNIST test digit: the cards answer what the API answers for that file.
    images, _ = load_dataset("mnist", mnist_dir).split("test")
    upload = tmp_path / "digit.png"
    upload.write_bytes(png_bytes(255 - images[1]))
    page.set_input_files("#file", str(upload))
    for run in ("lstm", "gru-untrained"):
        wait_for_label(page, run, api_label(server, upload.read_bytes(), run))
    seen = np.array(page.evaluate(
        "Array.from(document.querySelector('.run-card .seen').getContext('2d')"
        ".getImageData(0, 0, 28, 28).data)"
    )).reshape(28, 28, 4)  # fmt: skip
    assert seen[..., :3].min() < 64 and seen[..., :3].max() > 192  # the digit the model saw

    page.click("#clear")
    assert pad_png(page) != drawing
    screenshot = tmp_path / "serve.png"
    page.set_input_files("#file", str(upload))
    wait_for_label(page, "lstm", api_label(server, upload.read_bytes(), "lstm"))
    page.locator('.run-card[data-run="lstm"] .step-slider').press("End")
    page.screenshot(path=str(screenshot), full_page=True)
    if os.environ.get("SEQMNIST_SCREENSHOT"):
        # 64 colours are plenty for a page of greys: a PNG small enough for a README.
        with Image.open(screenshot) as picture:
            picture.convert("RGB").quantize(64).save(
                os.environ["SEQMNIST_SCREENSHOT"], optimize=True
            )
    assert errors == []


@pytest.mark.slow
def test_a_phone_draws_with_a_finger(browser, server):
    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    page = context.new_page()
    errors = watched(page)
    page.goto(server)
    page.wait_for_selector("main[data-runs='2']")
    page.locator("#pad").scroll_into_view_if_needed()
    scrolled = page.evaluate("scrollY")
    draw(page, SEVEN, touch=context.new_cdp_session(page))
    wait_for_label(page, "lstm", api_label(server, pad_png(page), "lstm"))
    assert page.evaluate("scrollY") == scrolled  # drawing does not scroll the page
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for control in ("#clear", "label[for=file]"):
        assert page.locator(control).bounding_box()["height"] >= 40  # a finger's target
    context.close()
    assert errors == []
