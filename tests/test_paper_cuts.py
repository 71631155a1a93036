"""Issue 18, "paper cuts found by outside testing": one test per item, each failing on the code before its fix.

Item 4 (`speakerid registry list` naming the registry it shows) is covered with the registry rework.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from _synth import make_prepared

from speakerid.atomic import write_atomic
from speakerid.audio import AudioError, load_audio
from speakerid.checkpoint import CheckpointError, load_checkpoint
from speakerid.training import TrainConfig, train
from speakerid.training.report import _plot_curves

REPO = Path(__file__).resolve().parents[1]
TINY = dict(
    model="mfcc-gru-5x20",
    epoch_crops="clips",  # one crop per clip and epoch: the step arithmetic below
    hidden=[16, 16],
    dilations=[1, 2],
    crop=2048,
    lr=1e-2,
    optimizer="adam",
    threads=1,
    val_max_crops=2,
)


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


# ---------------------------------------------------------------------------------------------------------------
# 1. curves.png draws the validation series when --eval_every > 1


def _orange_pixels(png: Path) -> int:
    """Pixels of matplotlib's C1 (#ff7f0e), the validation colour, in a PNG."""
    import matplotlib.image as mpimg

    img = (mpimg.imread(png)[..., :3] * 255).astype(int)
    return int((np.abs(img - np.array([255, 127, 14])).max(-1) < 40).sum())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("data"), n_speakers=3, per_speaker=12)


def test_curves_show_validation_evaluated_every_third_epoch(prepared, tmp_path):
    cfg = TrainConfig(name="t", data=str(prepared), out=str(tmp_path / "run"), epochs=5, eval_every=3,
                      batch_size=8, **TINY)  # fmt: skip
    rows = train(cfg, progress=False)["metrics"]
    assert ["val_loss" in r for r in rows] == [False, False, True, False, True]  # epochs 3 and 5 (the last)
    legend_only = tmp_path / "legend_only.png"  # the same figure without any validation value
    _plot_curves([{k: v for k, v in r.items() if not k.startswith("val_")} for r in rows], legend_only)
    drawn, legend = _orange_pixels(tmp_path / "run" / "curves.png"), _orange_pixels(legend_only)
    assert drawn > legend + 150, (drawn, legend)  # markers and a line over epochs 3 and 5, not only a legend


# ---------------------------------------------------------------------------------------------------------------
# 2. app: scores are labelled as what they are (see the app tests further down)
# 3. a closed stdout ends the CLIs quietly


def _run_with_closed_stdout(cmd: list[str], **env) -> subprocess.CompletedProcess:
    r, w = os.pipe()
    os.close(r)  # the reader (`| head`) is gone before the command writes its first byte
    try:
        return subprocess.run(cmd, cwd=REPO, stdout=w, stderr=subprocess.PIPE, env=_env(**env), timeout=300)
    finally:
        os.close(w)


@pytest.mark.parametrize(
    "args",
    [["-m", "speakerid.cli", "registry", "list"], ["train.py", "--list"]],
    ids=["speakerid-registry-list", "train.py-list"],
)
def test_closed_pipe_exits_quietly(args, tmp_path):
    p = _run_with_closed_stdout([sys.executable, *args], SPEAKERID_HOME=str(tmp_path))
    assert p.stderr.decode() == "" and p.returncode == 141  # 128 + SIGPIPE, like a shell pipeline


# ---------------------------------------------------------------------------------------------------------------
# 5. refused checkpoints: torch's reason, plainly; train.py --resume of a paper benchmark too


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_unsafe_checkpoint_names_the_reason_and_was_not_executed(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "x", "payload": _Exploit()}, evil)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(evil)
    assert str(e.value) == (
        f"{evil}: not a speakerid checkpoint or not safe to load: Trying to load unsupported GLOBAL "
        "posix.system whose module posix is blocked; it was not executed"
    )
    old = tmp_path / "old.pt"  # a plain pickle (protocol 4): torch's reason is the opcode it refuses
    old.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with pytest.raises(
        CheckpointError, match=r"not safe to load: Unsupported operand 149; it was not executed$"
    ):
        load_checkpoint(old)


def test_train_resume_of_a_paper_benchmark_with_a_bad_checkpoint(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"payload": _Exploit()}, out / "last.pt")
    cmd = [sys.executable, "train.py", "--config", "copy-100-dilated-rnn", "--resume", "--out", str(out),
           "--max-iters", "1", "--no-progress"]  # fmt: skip
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=_env(), timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines() == [
        f"error: {out / 'last.pt'}: not a speakerid checkpoint or not safe to load: Trying to load unsupported "
        "GLOBAL posix.system whose module posix is blocked; it was not executed"
    ]
    assert "this must never run" not in p.stdout


# ---------------------------------------------------------------------------------------------------------------
# 6. a crash between write and rename leaves a temp file; the next write removes it


_HOLD_OPEN = """
import sys
from speakerid.atomic import atomic_open
with atomic_open(sys.argv[1]) as f:
    f.write(b"x" * 300_000)
    f.flush()
    print("written", flush=True)
    sys.stdin.read()  # hold the temp file until stdin closes (or kill -9)
    f.write(sys.argv[2].encode())
"""


def _writer(path: Path, text: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_OPEN, str(path), text], cwd=REPO, env=_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    assert proc.stdout.readline() == b"written\n"
    return proc


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_temp_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    path = tmp_path / "registry.json"
    crashed = _writer(path, "never")
    crashed.kill()  # SIGKILL between writing and renaming
    crashed.wait()
    left = _temps(tmp_path)
    assert len(left) == 1 and left[0].startswith(".registry.json.")
    live = _writer(path, "second")  # a writer still at work on the same file keeps its temp file
    write_atomic(path, "first")
    assert path.read_text() == "first"
    assert _temps(tmp_path) != left and len(_temps(tmp_path)) == 1  # the killed writer's temp is gone
    live.stdin.close()  # let the live writer finish: its rename still works
    assert live.wait(timeout=60) == 0
    assert path.read_bytes() == b"x" * 300_000 + b"second" and _temps(tmp_path) == []


# ---------------------------------------------------------------------------------------------------------------
# 7. the epoch resumed after a crash reports the throughput of the steps it ran


def test_resumed_epoch_reports_the_throughput_of_the_steps_it_ran(prepared, tmp_path):
    # 24 training clips at batch 2: 12 steps per epoch. Crash after 11 steps of epoch 2, so the resumed run trains
    # 1 step of epoch 2 and all 12 of epoch 3. Counting the 11 skipped steps' samples inflated epoch 2's rate ~12x
    # (the same rate within noise is ~1x: the bound sits between, with a wide margin on both sides).
    cfg = TrainConfig(name="t", data=str(prepared), out=str(tmp_path), epochs=3, batch_size=2, ckpt_every=0,
                      **TINY)  # fmt: skip
    assert train(cfg, progress=False, stop_after_steps=23) == {"stopped_at_step": 23}
    rows = train(cfg, resume=True, progress=False)["metrics"]
    resumed, full = rows[1]["samples_per_s"], rows[2]["samples_per_s"]
    assert resumed < 3.5 * full, (resumed, full)


# ---------------------------------------------------------------------------------------------------------------
# 8. data_prep workers die with the main process


def _children(pid: int) -> list[int]:
    """Live processes forked from ``pid`` (same command line: pool workers, not helpers such as a resource tracker)."""
    kids = []
    cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                if (
                    int(fields[1]) == pid
                    and fields[0] not in "ZX"
                    and (d / "cmdline").read_bytes() == cmdline
                ):
                    kids.append(int(d.name))
            except OSError:  # the process ended meanwhile
                continue
    return kids


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; the kernel mechanism is Linux's"
)
def test_data_prep_workers_die_within_a_second_of_the_main_process(tmp_path):
    from data_prep import synth

    root = synth.make_vctk_tree(tmp_path / "vctk", "0.92", ("p225", "p226", "p280", "p315"), 15, (0.5, 1.0))
    cmd = [sys.executable, "-m", "data_prep", "vctk", "--root", str(root), "--out", str(tmp_path / "out"),
           "--quiet", "--chunk-files", "1", "--workers", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env())
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 or not list((tmp_path / "out" / ".partial").glob("chunk-*.json")):
            assert proc.poll() is None, "data_prep ended before it could be killed"
            assert time.monotonic() < deadline, "no worker processes within 120 s"
            workers = _children(proc.pid)
            time.sleep(0.005)
        # One worker is frozen (as a worker starved of CPU would be): its death must not depend on it running.
        os.kill(workers[0], signal.SIGSTOP)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed = time.monotonic()
        while any(_alive(w) for w in workers) and time.monotonic() < killed + 1.0:
            time.sleep(0.01)
        assert not [w for w in workers if _alive(w)], "workers outlived the main process by more than 1 s"
    finally:
        for w in workers:  # clean up after a failure
            if _alive(w):
                os.kill(w, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------------------------
# 10. sample rate 0 in the header


def _wav_with_rate(rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.sin(np.arange(8000) / 5).astype(np.float32) * 0.3, 8000, format="WAV", subtype="PCM_16")
    raw = bytearray(buf.getvalue())
    i = raw.find(b"fmt ")
    raw[i + 12 : i + 16] = struct.pack("<I", rate)  # fmt chunk: id, size, format, channels, sample rate
    return bytes(raw)


def test_sample_rate_zero_is_reported_as_an_invalid_header(tmp_path):
    path = tmp_path / "zero_rate.wav"
    path.write_bytes(_wav_with_rate(0))
    with pytest.raises(AudioError) as e:
        load_audio(path)
    assert str(e.value) == f"{path}: invalid header: sample rate 0"
    with pytest.raises(AudioError, match=r"^<in-memory audio>: invalid header: sample rate 0$"):
        load_audio(_wav_with_rate(0))
    flac = tmp_path / "zero_rate.flac"
    sf.write(flac, np.zeros(800, np.float32) + 0.1, 8000)
    raw = bytearray(flac.read_bytes())
    raw[18:21] = bytes([0, 0, raw[20] & 0x0F])  # STREAMINFO: the 20-bit sample rate
    flac.write_bytes(bytes(raw))
    with pytest.raises(AudioError, match=r"invalid header: sample rate 0$"):
        load_audio(flac)
    assert load_audio(_wav_with_rate(8000)).shape == (16000,)  # the same file with its rate is fine


# ---------------------------------------------------------------------------------------------------------------
# The app (items 2, 9, 11): `python app.py` with the shipped model in a subprocess, driven by gradio_client


class _App:
    def __init__(self, tmp: Path):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/"
        self.log_path = tmp / "server.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        env = _env(SPEAKERID_HOME=str(tmp / "home"), GRADIO_TEMP_DIR=str(tmp / "gradio"), PYTHONUNBUFFERED="1",
                   GRADIO_ANALYTICS_ENABLED="False")  # fmt: skip
        cmd = [sys.executable, str(REPO / "app.py"), "--port", str(port), "--device", "cpu"]
        self.proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 150.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"app.py exited:\n{self.log_path.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(self.url + "gradio_api/info", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"app.py not ready after {timeout:g} s:\n{self.log_path.read_text()[-3000:]}")

    def call(self, api_name: str, data: list) -> str:
        """The HTTP API as curl uses it (Gradio's "view API" page): POST the inputs, read the result stream."""
        import urllib.request

        body = json.dumps({"data": data}).encode()
        req = urllib.request.Request(
            f"{self.url}gradio_api/call/{api_name}", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            event = json.loads(r.read())["event_id"]
        with urllib.request.urlopen(f"{self.url}gradio_api/call/{api_name}/{event}", timeout=120) as r:
            return r.read().decode()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    pytest.importorskip("gradio", reason="the web demo needs gradio (pip install -e '.[app]')")
    gradio_client = pytest.importorskip(
        "gradio_client", reason="needs gradio_client (pip install -e '.[test]')"
    )
    from speakerid.runtime import default_model_path

    samples = sorted((default_model_path().parent / "samples").glob("*.wav"))
    if not default_model_path().is_file() or not samples:
        pytest.skip("the shipped model or its sample clips are missing (scripts/package_default.py)")
    srv = _App(tmp_path_factory.mktemp("app"))
    try:
        srv.wait_ready()
        srv.samples = samples
        srv.client = gradio_client.Client(srv.url, verbose=False)
        yield srv
    finally:
        srv.stop()


def _registry_mode(app) -> None:
    """Enroll one speaker so the app scores against a registry, whatever earlier tests left in it."""
    from gradio_client import handle_file

    app.client.predict("Ada", [handle_file(str(app.samples[1]))], None, True, api_name="/enroll")


def test_app_scores_are_labelled_cosine_similarities_with_the_threshold(app):
    from gradio_client import handle_file

    _registry_mode(app)
    label, details, _, _ = app.client.predict(handle_file(str(app.samples[0])), api_name="/identify")
    assert "| Speaker | Cosine similarity | Threshold " in details and "not probabilities" in details, details
    thr = float(details.split("| Threshold ", 1)[1].split(" ", 1)[0])  # the table's header names it
    for c in label[
        "confidences"
    ]:  # every bar's value is in the table, as a similarity, against the threshold
        side = "above" if c["confidence"] >= thr else "below"
        assert f"| {c['label']} | {c['confidence']:.2f} | {side} |" in details or c["confidence"] == 0.0
    assert "%" not in details


def test_app_escapes_speaker_names_in_markdown(app):
    markdown_it = pytest.importorskip("markdown_it", reason="renders the status Markdown as CommonMark")
    from gradio_client import handle_file

    name = "**bold** _it_ <b>x</b> [a](b) |"
    status, table, _ = app.client.predict(
        name, [handle_file(str(app.samples[0]))], None, False, api_name="/enroll"
    )
    html = markdown_it.MarkdownIt("commonmark").render(status)
    assert "<strong>bold</strong>" not in html and "<em>it</em>" not in html and "<b>x</b>" not in html
    assert "**bold** _it_ &lt;b&gt;x&lt;/b&gt; [a](b) |" in html  # shown as typed
    assert [name, 1] in table["data"]
    status, _, _ = app.client.predict(name, api_name="/remove_speaker")
    assert "**bold** _it_ &lt;b&gt;x&lt;/b&gt; [a](b) |" in markdown_it.MarkdownIt("commonmark").render(
        status
    )


def test_app_refuses_server_paths_with_a_clear_message_and_no_traceback(app):
    from gradio_client.exceptions import AppError

    server_file = str(REPO / "README.md")  # exists on the server, but was never uploaded
    with pytest.raises(
        AppError, match=r"^Refused: a file input must be an uploaded file, not a value of type str"
    ):
        app.client.predict(server_file, api_name="/identify")
    file_data = {"path": server_file, "meta": {"_type": "gradio.FileData"}}
    for api_name, data in [("identify", [file_data]), ("enroll", ["Eve", [file_data], None, False])]:
        answer = app.call(api_name, data)
        assert answer.startswith("event: error"), answer
        assert "Refused: only files uploaded to this app are read, not paths on the server" in answer, answer
    log = app.log_path.read_text()
    assert "Traceback" not in log and "InvalidPathError" not in log, log[-3000:]


def test_app_page_shows_no_percentages_for_similarities(app):
    """In the browser, the gr.Label bars carry no "82 %" text; the details table says what the numbers are."""
    import shutil

    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="needs playwright (pip install -e '.[test]')"
    )
    chromium = os.environ.get("SPEAKERID_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).is_file():
        pytest.skip("no Chromium browser installed (Debian: apt-get install -y chromium)")
    _registry_mode(app)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(app.url, wait_until="domcontentloaded")
            with page.expect_response(lambda r: "/gradio_api/upload" in r.url and r.request.method == "POST"):
                page.locator("#audio-in input[type=file]").set_input_files(str(app.samples[0]))
            page.locator("#identify-btn").click()
            answer = page.locator("#verdict [data-testid=label-output-value]")
            sync_api.expect(answer).not_to_be_empty(timeout=60_000)
            sync_api.expect(page.locator("#verdict .confidence-set").first).to_be_visible()  # the bars
            percents = page.locator("#verdict dd.confidence")
            assert (
                percents.count() >= 1 and "%" in percents.first.text_content()
            )  # Gradio's text is there ...
            assert all(not percents.nth(i).is_visible() for i in range(percents.count()))  # ... but not shown
            assert "%" not in page.locator("#verdict").inner_text()
            sync_api.expect(page.locator("#details")).to_contain_text("Cosine similarity", timeout=60_000)
        finally:
            browser.close()


def test_identify_table_says_what_the_scores_are(tmp_path, monkeypatch, capsys):
    from speakerid.cli import main
    from speakerid.runtime import default_model_path

    clip = default_model_path().parent / "samples" / "george_1.wav"
    if not clip.is_file():
        pytest.skip("the shipped model's sample clips are missing")
    monkeypatch.setenv("SPEAKERID_HOME", str(tmp_path))  # the bundled registry: cosine similarities
    assert main(["identify", str(clip), "--top-k", "3", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    header = out.splitlines()[0]
    assert header.split()[:3] == ["speaker", "score", "top-3"]
    assert 'top-3 (cosine similarity; "unknown" below 0.' in header and "scores: cosine similarity" in err
    assert main(["identify", str(clip), "--top-k", "3", "--no-progress", "--registry", "none"]) == 0
    out, err = capsys.readouterr()
    assert "top-3 (class probability)" in out.splitlines()[0] and "scores: class probability" in err
