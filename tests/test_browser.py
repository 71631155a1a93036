"""The demo in a real browser: headless Chromium (Debian's ``chromium`` package) driven by Playwright's Python API.

Starts ``python app.py`` on a free localhost port (the shipped model; skipped when it is missing, see test_app.py),
uploads a sample clip through the audio component's file input, clicks "Identify speaker" and reads the top
speaker from the gr.Label. Screenshots are saved to ``artifacts/`` at the repository root (git-ignored).
Skips only when Playwright or a Chromium binary is missing (``apt-get install chromium``; .ci/run installs it;
``SPEAKERID_CHROMIUM=/path/to/chrome`` picks another binary); with ``SPEAKERID_REQUIRE_BROWSER=1`` (.ci/run on
Debian) a missing browser fails instead. ``playwright install`` is never needed.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install -e '.[test]')")
pytest.importorskip("gradio", reason="the web demo needs gradio (pip install -e '.[app]')")

from test_app import AppServer, model_under_test  # noqa: E402

from speakerid.runtime import Identifier, InferenceOptions, load_engine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--use-fake-ui-for-media-stream",  # grant the microphone without a prompt ...
    "--use-fake-device-for-media-stream",  # ... and record Chromium's synthetic test signal
]
WAIT_MS = 300_000  # liveness only: the model answers slowly on 2 busy CPU cores, not never


def chromium_path() -> str | None:
    for cand in (
        os.environ.get("SPEAKERID_CHROMIUM"),
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        shutil.which("google-chrome"),
        "/usr/bin/chromium",
    ):
        if cand and Path(cand).is_file():
            return cand
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = chromium_path()
    if path is None:
        why = "no Chromium browser installed (Debian: apt-get install -y chromium; .ci/run installs it)"
        if os.environ.get("SPEAKERID_REQUIRE_BROWSER") == "1":  # set by .ci/run on Debian: never skip there
            pytest.fail(why + "; SPEAKERID_REQUIRE_BROWSER=1")
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("browser")
    model, samples = model_under_test(tmp)
    srv = AppServer(tmp, model, "--device", "cpu")  # CPU, like the reference model here
    srv.samples = samples
    srv.chromium = path
    with srv:  # boots while the browser starts and the reference model loads
        yield srv


@pytest.fixture(scope="module")
def browser(server):
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=server.chromium, headless=True, args=CHROMIUM_ARGS, timeout=60_000
        )
        yield b
        b.close()


@pytest.fixture(scope="module")
def engine(server):
    return load_engine(server.model, device="cpu")


@pytest.fixture(scope="module")
def expected(server, engine):
    """The library's answer (a Prediction) for a clip, with the registry the server holds right now (tests may
    enroll speakers, in any order)."""

    def run(clip: Path):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SPEAKERID_HOME", str(server.home))
            return Identifier(engine, "auto", InferenceOptions(top_k=5, segments=True)).identify(clip)

    return run


@pytest.fixture(scope="module")
def known_clip(server) -> Path:
    """A sample clip drawn at random (seeded), not one picked because the model gets it right."""
    clips = sorted(server.samples.glob("*.wav"))
    return clips[int(np.random.default_rng(19).integers(len(clips)))]


def verdict(pred) -> str:
    """The gr.Label heading the app shows for a library Prediction."""
    return "unknown speaker" if pred.speaker == "unknown" else pred.speaker


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    outside: list[str] = []

    def refuse(route):  # the demo must work offline: nothing but the app itself is fetched
        outside.append(route.request.url)
        route.abort()

    ctx.route(lambda url: not url.startswith(server.url), refuse)
    pg = ctx.new_page()
    pg.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server.ready().url, wait_until="domcontentloaded")
    pg.locator("#audio-in").wait_for()
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors: {errors}"
    assert not outside, f"the page tried to fetch outside the app: {outside}"


def upload(pg, selector: str, path: Path) -> None:
    """Set a file on a component's <input type=file> and wait until Gradio has uploaded it."""
    with pg.expect_response(lambda r: "/gradio_api/upload" in r.url and r.request.method == "POST") as resp:
        pg.locator(f"{selector} input[type=file]").set_input_files(str(path))
    assert resp.value.ok, resp.value.status


def heading(pg) -> str:
    return pg.locator("#verdict [data-testid=label-output-value]").inner_text().strip()


def wait_heading(pg, text: str) -> None:
    sync_api.expect(pg.locator("#verdict [data-testid=label-output-value]")).to_have_text(
        text, timeout=WAIT_MS
    )


def screenshot(pg, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    sync_api.expect(pg.locator(".pending")).to_have_count(0)  # no output still waiting for the server
    pg.screenshot(path=str(path), full_page=True, animations="disabled")  # fade-ins finished
    return path


def test_upload_a_clip_and_see_who_is_speaking(page, known_clip, expected):
    clip, pred = known_clip, expected(known_clip)
    upload(page, "#audio-in", clip)
    page.locator("#identify-btn").click()
    wait_heading(page, verdict(pred))  # the library's top speaker, in the big heading of the gr.Label

    bars = page.locator("#verdict .confidence-set")
    assert bars.count() == len(pred.top_k)
    assert bars.first.get_attribute("data-testid") == f"{pred.top_k[0][0]}-confidence-set"
    sync_api.expect(page.locator("#details")).to_contain_text(f"Audio used: {pred.duration:.2f} s")
    sync_api.expect(page.locator("#figure img")).to_be_visible()
    shot = screenshot(page, "app-identify.png")
    assert shot.stat().st_size > 20_000


def test_bad_upload_shows_a_message_not_a_traceback(page, tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    upload(page, "#audio-in", silent)
    page.locator("#identify-btn").click()
    toast = page.get_by_role("status").filter(has_text="silent.wav: silent: peak level")
    sync_api.expect(toast).to_be_visible(timeout=WAIT_MS)
    sync_api.expect(toast).to_contain_text("Error")
    assert "Traceback" not in page.content()
    page.wait_for_function(  # the toast flies in (a JS transition): wait until it is fully opaque
        "() => [...document.querySelectorAll('[role=status]')].some(e => getComputedStyle(e).opacity === '1'"
        " && e.textContent.includes('silent.wav'))"
    )
    page.wait_for_timeout(300)
    screenshot(page, "app-error.png")


def test_example_clip_is_one_click_away(page, known_clip, expected):
    name, n = known_clip.stem.rsplit("_", 1)
    page.get_by_role("button", name=f"{name} #{n}", exact=True).click()
    pred = expected(known_clip)
    wait_heading(page, verdict(pred))
    sync_api.expect(page.locator("#details")).to_contain_text(f"Audio used: {pred.duration:.2f} s")


def test_record_from_the_microphone(page, engine, server):
    # Chromium's fake capture device plays a synthetic beep: it exercises the recording path end to end, and the
    # speech detector must answer it with a clear "no speech" error (a tone is not a voice), not a speaker.
    page.locator("#audio-in").get_by_role("button", name="Record audio").click()
    record = page.locator("#audio-in").get_by_role("button", name="Record", exact=True)
    record.click()
    page.wait_for_timeout(1500)
    with page.expect_response(lambda r: "/gradio_api/upload" in r.url and r.request.method == "POST"):
        page.locator("#audio-in").get_by_role("button", name="Stop", exact=True).click()
    page.locator("#identify-btn").click()
    # Either of the detector's two refusals: no speech at all, or less than the minimum (how much of the beep's
    # onset the detector's lag lets through depends on the recording's timing).
    refusal = re.compile(r"no speech found|s of speech \(need at least")
    toast = page.get_by_role("status").filter(has_text=refusal)
    sync_api.expect(toast).to_be_visible(timeout=WAIT_MS)
    sync_api.expect(toast).to_contain_text("Error")
    assert "Traceback" not in page.content()


def test_enroll_tab_and_model_tab(page, server):
    page.get_by_role("tab", name="Enroll").click()
    clip = sorted(server.samples.glob("*.wav"))[0]
    page.get_by_label("Speaker name").fill("Grace")
    upload(page, "#enroll-files", clip)
    page.get_by_role("button", name="Enroll speaker").click()
    sync_api.expect(page.get_by_text("Enrolled Grace from 1 clip")).to_be_visible(timeout=WAIT_MS)
    sync_api.expect(page.locator("#speakers")).to_contain_text("Grace")
    screenshot(page, "app-enroll.png")

    page.get_by_role("tab", name="Model").click()
    info = page.locator("#model-info")
    for text in ("Model file", "Classes", "Provider", "Parameters", "CPU"):
        sync_api.expect(info).to_contain_text(text)
    screenshot(page, "app-model.png")
