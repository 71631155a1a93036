"""The Gradio demo end to end: ``python app.py`` in a subprocess on a free localhost port, driven by gradio_client.

Runs the shipped model (speakerid/pretrained/default) with its sample clips, and skips when it is missing. Each
answer is checked against the library (``speakerid.runtime.Identifier``, the CLI's code path) run here on the
same clip and registry. SPEAKERID_HOME and GRADIO_TEMP_DIR point into pytest's tmp dir, so the user's registry
and Gradio cache are never touched. ``SPEAKERID_APP_TEST_MODEL=/path/model.pt`` (with ``samples/`` and an
optional ``<model>.registry.json`` beside it) runs the same tests on another model during development.

The module's tests share one server but not an order: each test compares with the library's answer for the
registry as it is at that moment, and each test that edits the registry first sets up the state it needs (so
any subset, in any order, passes). Time limits are liveness bounds only (a busy 2-core box is slow, not broken).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("gradio", reason="the web demo needs gradio (pip install -e '.[app]')")
gradio_client = pytest.importorskip("gradio_client", reason="needs gradio_client (pip install -e '.[test]')")
from gradio_client import Client, handle_file  # noqa: E402

from speakerid.registry import SpeakerRegistry, bundled_path  # noqa: E402
from speakerid.runtime import Identifier, InferenceOptions, default_model_path, load_engine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "data" / "fsdd" / "recordings"  # real FSDD recordings, when present
MAX_SECONDS = 20.0  # the test server's duration cap
MAX_UPLOAD_MB = 1.0  # and upload cap: small, so that the refusals are cheap to provoke
TOP_K = 5
STARTUP_S = 600.0  # liveness: importing torch + gradio on 2 busy cores
ANSWER_S = 600.0  # liveness: every queued request answered within this


# ---------------------------------------------------------------------------------------------------------------
# helpers shared with test_browser.py


def model_under_test(tmp: Path) -> tuple[str | None, Path]:
    """(--model argument or None for the shipped default, folder of sample clips). Skips if there is none."""
    override = os.environ.get("SPEAKERID_APP_TEST_MODEL")
    if override:
        src = Path(override)
        if not src.is_file():
            pytest.fail(f"SPEAKERID_APP_TEST_MODEL={override} does not exist")
        # A private copy, so that its registry (<model>.registry.json, written on enrollment) lands in tmp.
        dst = tmp / "model"
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst / src.name)
        reg = src.with_suffix(".registry.json")
        if reg.is_file():
            shutil.copy(reg, dst / reg.name)
        shutil.copytree(src.parent / "samples", dst / "samples", dirs_exist_ok=True)
        return str(dst / src.name), dst / "samples"
    model = default_model_path()
    samples = model.parent / "samples"
    if not model.is_file():
        pytest.skip(f"the shipped model {model} is missing (package one with scripts/package_default.py)")
    if not sorted(samples.glob("*.wav")):
        pytest.skip(f"the shipped model has no sample clips in {samples}")
    return None, samples


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """``python app.py --port <free port> ...`` in a subprocess, with its home and Gradio cache under ``tmp``."""

    def __init__(self, tmp: Path, model: str | None, *args: str):
        self.tmp = tmp
        self.home = tmp / "home"
        self.model = model
        self.args = list(args)
        self.log_path = tmp / "server.log"
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(
            SPEAKERID_HOME=str(self.home),
            GRADIO_TEMP_DIR=str(self.tmp / "gradio"),
            GRADIO_ANALYTICS_ENABLED="False",
            PYTHONUNBUFFERED="1",
        )
        env.pop("SPEAKERID_APP_TEST_MODEL", None)
        return env

    def spawn(self) -> AppServer:
        """Start the process and return at once (the caller can load its own model meanwhile)."""
        port = free_port()
        cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port), *self.args]
        if self.model:
            cmd += ["--model", self.model]
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, cwd=self.tmp, env=self.env(), stdout=self.log, stderr=subprocess.STDOUT
        )
        self.url = f"http://127.0.0.1:{port}/"
        self._ready = False
        return self

    def ready(self) -> AppServer:
        """Wait until the server answers; respawn on another port if the probed one was taken meanwhile."""
        for _attempt in range(3):
            if self._ready or self._wait_ready():
                self._ready = True
                return self
            self.stop()
            self.spawn()
        raise AssertionError(f"the app did not start:\n{self.log_text()[-3000:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "cannot start the server" in self.log_text():
                    return False  # port race: try another
                raise AssertionError(f"app.py exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "gradio_api/info", timeout=5) as r:
                    if r.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"app.py not ready after {STARTUP_S:g} s:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        if getattr(self, "log", None):
            self.log.close()

    def __enter__(self) -> AppServer:
        return self.spawn()

    def __exit__(self, *exc) -> None:
        self.stop()


def speaker_of(clip: Path) -> str:
    """Sample clips are named <speaker>_<n>.wav."""
    return clip.stem.rsplit("_", 1)[0]


def label_heading(label: dict) -> str:
    return label["label"]


# ---------------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app")
    model, samples = model_under_test(tmp)
    limits = ["--max-seconds", f"{MAX_SECONDS:g}", "--max-upload-mb", f"{MAX_UPLOAD_MB:g}"]
    srv = AppServer(tmp, model, *limits, "--device", "cpu")  # CPU, like the reference model here
    srv.samples = samples
    with srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    c = Client(server.ready().url, verbose=False)
    yield c
    with contextlib.suppress(Exception):
        c.close()


@pytest.fixture(scope="module")
def engine(server):
    return load_engine(server.model, device="cpu")


@pytest.fixture(scope="module")
def reference(server, engine):
    """The library's answer for a clip, given the registry the server uses right now (its user registry if it
    has saved one, else the registry bundled with or beside the model)."""
    options = InferenceOptions(top_k=TOP_K, segments=True, max_seconds=MAX_SECONDS)

    def run(clip: Path):
        with pytest.MonkeyPatch.context() as mp, torch_threads(1):
            mp.setenv("SPEAKERID_HOME", str(server.home))
            return Identifier(engine, "auto", options).identify(clip)

    return run


@pytest.fixture(scope="module")
def first_clips(server) -> list[Path]:
    """One sample clip per speaker."""
    by_speaker: dict[str, Path] = {}
    for p in sorted(server.samples.glob("*.wav")):
        by_speaker.setdefault(speaker_of(p), p)
    return list(by_speaker.values())


@pytest.fixture(scope="module")
def random_clip(server) -> Path:
    """A sample clip drawn at random (seeded), not one picked because the model gets it right."""
    clips = sorted(server.samples.glob("*.wav"))
    return clips[int(np.random.default_rng(19).integers(len(clips)))]


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the in-process reference model single-threaded, as the server does (--threads 1)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def identify(client: Client, path) -> tuple[dict, str, str, dict]:
    return client.predict(handle_file(str(path)) if path is not None else None, api_name="/identify")


def assert_same_answer(out_label: dict, pred) -> None:
    heading = "unknown speaker" if pred.speaker == "unknown" else pred.speaker
    assert out_label["label"] == heading
    got = [(c["label"], c["confidence"]) for c in out_label["confidences"]]
    want = [(n, float(np.clip(s, 0.0, 1.0))) for n, s in pred.top_k]
    assert [n for n, _ in got] == [n for n, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-4)


def timeline_of(out) -> tuple[bool, list[list]]:
    """(visible, rows) from the timeline Dataframe's update."""
    value = out.get("value", out) if isinstance(out, dict) else out
    rows = value.get("data", []) if isinstance(value, dict) else (value or [])
    return bool(out.get("visible", True)) if isinstance(out, dict) else True, rows


# ---------------------------------------------------------------------------------------------------------------
# read-only


def test_model_tab_describes_the_loaded_model(engine, client):  # engine loads while the server boots
    md, info = client.predict(api_name="/model_info")
    assert info["classes"] == engine.labels and info["parameters"] == engine.n_parameters > 0
    assert info["fingerprint"] == engine.fingerprint
    for text in ("PyTorch checkpoint", f"{engine.n_parameters:,}", "CPU", *engine.labels):
        assert text in md


def test_identify_a_sample_clip(client, random_clip, reference):
    """The app's answer is the library's (ranking and scores) for a random sample clip; how often that answer
    is right is measured on the whole test split in test_shipped_accuracy.py."""
    clip = random_clip
    want = reference(clip)
    label, details, image, timeline = identify(client, clip)
    assert_same_answer(label, want)
    assert len(label["confidences"]) == min(TOP_K, len(want.top_k))
    assert f"Audio used: {want.duration:.2f} s" in details
    from PIL import Image

    with Image.open(image) as im:
        assert im.format == "PNG" and im.width >= 800 and im.height >= 300
    visible, rows = timeline_of(timeline)
    assert not visible and rows == []  # a short clip has no timeline


@pytest.mark.parametrize(
    "fmt, rate, channels",
    [("FLAC", 44100, 2), ("OGG", 22050, 1), ("MP3", 48000, 2)],
)
def test_any_format_rate_and_channel_count(client, first_clips, tmp_path, reference, fmt, rate, channels):
    import soxr

    x, sr = sf.read(first_clips[0], dtype="float32")
    y = soxr.resample(x, sr, rate)
    y = np.stack([y] * channels, axis=1) if channels > 1 else y
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(path, y, rate, format=fmt)
    label, details, _, _ = identify(client, path)
    assert_same_answer(label, reference(path))  # decoded, downmixed and resampled as the library does
    assert f"Audio used: {len(x) / sr:.1f}" in details  # same duration whatever the rate


def test_long_recording_gets_a_timeline(client, engine, first_clips, tmp_path):
    parts, n = [], 0
    for clip in first_clips * 4:  # speakers take turns
        x, sr = sf.read(clip, dtype="float32")
        parts += [x, np.zeros(sr // 10, np.float32)]
        n += len(x) + sr // 10
        if n >= 3 * sr:
            break
    path = tmp_path / "conversation.wav"
    sf.write(path, np.concatenate(parts), sr)
    label, details, image, timeline = identify(client, path)
    visible, rows = timeline_of(timeline)
    assert visible and len(rows) >= 2
    enrolled = {r[0] for r in client.predict(api_name="/list_speakers")[1]["data"]}
    assert {r[2] for r in rows} <= enrolled | set(engine.labels) | {"unknown speaker"}
    starts, ends = [r[0] for r in rows], [r[1] for r in rows]
    assert starts == sorted(starts) and all(e > s for s, e in zip(starts, ends))
    # The timeline covers the speech: it ends where the last clip's speech ends (the trailing 0.1 s of silence
    # and the clip's own quiet tail are not speech), on the recording's time line.
    assert starts[0] == 0.0 and n / sr - 0.3 <= ends[-1] <= n / sr - 0.1 + 1e-3
    from PIL import Image

    with Image.open(image) as im:
        assert im.height >= 400  # waveform, spectrogram and the who-speaks-when strip


def _tiled_speech(clip: Path, seconds: float, rate: int) -> np.ndarray:
    import soxr

    x, sr = sf.read(clip, dtype="float32")
    x = soxr.resample(x, sr, rate)
    return np.tile(x, int(np.ceil(seconds * rate / len(x))))[: int(seconds * rate)]


BAD_INPUTS = {
    "nothing": (None, "No audio: record with the microphone or upload a file first"),
    "empty.wav": (lambda p, c: p.write_bytes(b""), "empty.wav: empty file (0 bytes)"),
    "silent.wav": (
        lambda p, c: sf.write(p, np.zeros(16000, np.float32), 16000),
        "silent.wav: silent: peak level",
    ),
    "short.wav": (
        lambda p, c: sf.write(p, 0.5 * np.ones(40, np.float32), 8000),
        "short.wav: too short: 5.0 ms",
    ),
    "long.wav": (
        lambda p, c: sf.write(p, _tiled_speech(c, 25.0, 8000), 8000, subtype="PCM_16"),
        "long.wav: too long: 25.0 s (limit 20 s)",
    ),
    "corrupt.wav": (  # a WAV header whose 'fmt ' chunk is garbage
        lambda p, c: p.write_bytes(
            b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00\x07\x7f" + bytes(range(256)) * 8
        ),
        "corrupt.wav: cannot decode audio (Error in WAV/W64/RF64 file. Malformed 'fmt ' chunk.)",
    ),
    "truncated.flac": (
        lambda p, c: p.write_bytes(b"fLaC" + os.urandom(200)),
        "truncated.flac: cannot decode audio",
    ),
    "notes.txt": (
        lambda p, c: p.write_text("hello, this is not audio\n" * 20),
        "notes.txt: cannot decode audio (Format not recognised.). Supported formats: WAV, FLAC, OGG, MP3.",
    ),
    "nan.wav": (
        lambda p, c: sf.write(p, np.array([0.1, np.nan] * 4000, np.float32), 16000, subtype="FLOAT"),
        "nan.wav: contains 4000 NaN/Inf sample values",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_a_clear_message(client, first_clips, tmp_path, case):
    make, message = BAD_INPUTS[case]
    path = None
    if make is not None:
        path = tmp_path / case
        make(path, first_clips[0])
    with pytest.raises(gradio_client.exceptions.AppError) as e:
        identify(client, path)
    text = str(e.value)
    assert text.startswith(message), text
    assert "Traceback" not in text and "/tmp" not in text  # the file's name, never the server's temp path


def test_too_large_upload_is_refused(client, server, first_clips, tmp_path):
    big = tmp_path / "big.wav"
    sf.write(big, _tiled_speech(first_clips[0], 40.0, 16000), 16000, subtype="PCM_16")  # 1.28 MB > 1 MB
    with pytest.raises(ValueError, match="exceeds the maximum file size of 1048576 bytes"):
        identify(client, big)  # gradio_client reads the cap from the server and refuses before sending
    # and the server refuses it too, for clients that do not check first
    body, boundary = _multipart("files", big.name, big.read_bytes())
    req = urllib.request.Request(
        server.url + "gradio_api/upload",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 413 and b"maximum allowed size of 1048576 bytes" in e.value.read()


def _multipart(field: str, name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "speakerid-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), boundary


def test_twenty_concurrent_requests_are_all_answered(client, first_clips, reference):
    clips = [first_clips[i % 2] for i in range(20)]
    want = {c: reference(c) for c in set(clips)}
    jobs = [client.submit(handle_file(str(c)), api_name="/identify") for c in clips]
    deadline = time.monotonic() + ANSWER_S  # liveness: all answered, however slowly
    for clip, job in zip(clips, jobs):
        label, *_ = job.result(timeout=max(1.0, deadline - time.monotonic()))
        assert_same_answer(label, want[clip])


# ---------------------------------------------------------------------------------------------------------------
# registry edits: each test sets up the registry state it needs


def _enroll_clips(server, tmp_path, speaker: str, held_out: Path) -> list[Path]:
    """A few real recordings of ``speaker`` that are not the clip identified afterwards."""
    clips = sorted(FSDD.glob(f"*_{speaker}_1[0-4].wav")) if FSDD.is_dir() else []
    clips = clips[:5] or [p for p in sorted(server.samples.glob(f"{speaker}_*.wav")) if p != held_out]
    assert clips, f"no enrollment clips for {speaker}"
    return clips


@pytest.fixture
def ada_only(client, server, first_clips, tmp_path):
    """The registry holds exactly "Ada", enrolled from other recordings of the first sample's speaker."""
    for name in [r[0] for r in client.predict(api_name="/list_speakers")[1]["data"]]:
        client.predict(name, api_name="/remove_speaker")
    clip = first_clips[0]
    files = [handle_file(str(p)) for p in _enroll_clips(server, tmp_path, speaker_of(clip), clip)]
    status, table, _ = client.predict("Ada", files, None, False, api_name="/enroll")
    assert [r[0] for r in table["data"]] == ["Ada"], status


def _registry_file(server, engine) -> Path:
    if server.model:
        return Path(server.model).with_suffix(".registry.json")
    return server.home / f"registry-{engine.fingerprint}.json"


def test_enroll_a_speaker_then_identify_them(client, server, engine, first_clips, tmp_path, reference):
    clip = first_clips[0]
    old = speaker_of(clip)
    bundled = bundled_path(engine)
    bundled_before = bundled.read_bytes() if bundled else None
    if "Ada" in {r[0] for r in client.predict(api_name="/list_speakers")[1]["data"]}:
        client.predict("Ada", api_name="/remove_speaker")  # left by another test
    before = {r[0] for r in client.predict(api_name="/list_speakers")[1]["data"]}

    # The new voice is a real speaker the registry does not know: remove them, then enroll them as "Ada".
    if old in before:
        status, table, _ = client.predict(old, api_name="/remove_speaker")
        assert f"Removed **{old}**" in status and old not in {r[0] for r in table["data"]}
    files = [handle_file(str(p)) for p in _enroll_clips(server, tmp_path, old, clip)]
    status, table, _ = client.predict("Ada", files, None, False, api_name="/enroll")
    assert status.startswith(f"Enrolled **Ada** from {len(files)} clip")
    names = {r[0] for r in table["data"]}
    assert names == (before - {old}) | {"Ada"}  # the model's bundled speakers are still there

    label, details, _, _ = identify(client, clip)
    assert label_heading(label) == "Ada", (label, details)
    assert_same_answer(label, reference(clip))  # the library, reading the file the app saved, agrees

    saved = _registry_file(server, engine)
    reg = SpeakerRegistry.load(saved)
    assert set(reg.names) == names and reg.fingerprint == engine.fingerprint
    assert not list(saved.parent.glob(f".{saved.name}.*.tmp")), "atomic save left a temp file"
    if bundled:
        assert bundled.read_bytes() == bundled_before, "the bundled registry must stay read-only"


def test_unknown_speaker_below_the_threshold(client, server, first_clips, reference, ada_only):
    # Only Ada (the first speaker's clips) is enrolled; the other speakers' clips are now unknown voices.
    status, table, _ = client.predict(api_name="/list_speakers")
    assert [r[0] for r in table["data"]] == ["Ada"] and "**1** enrolled speaker" in status
    others = {p: reference(p) for p in first_clips[1:]}
    rejected = [p for p, pred in others.items() if pred.speaker == "unknown"]
    assert rejected, "the model accepts every other speaker as Ada: " + str(
        {p.name: r.score for p, r in others.items()}
    )
    label, details, _, _ = identify(client, rejected[0])
    assert label_heading(label) == "unknown speaker"
    assert details.startswith("### Unknown speaker") and "below the threshold" in details
    assert_same_answer(label, others[rejected[0]])


@pytest.mark.parametrize(
    "name, clips, overwrite, message",
    [
        ("Ada", "good", False, "speaker 'Ada' is already enrolled (use overwrite to replace)"),
        ("  ", "good", False, "speaker name is empty"),
        ("Unknown", "good", False, "'unknown' is reserved for speakers below the threshold"),
        ("Bob", "none", False, "add at least one clip of the speaker"),
        ("Bob", "bad", False, "no usable clip to enroll 'Bob': silent.wav: silent"),
    ],
)
def test_enroll_errors_are_clear(client, first_clips, tmp_path, ada_only, name, clips, overwrite, message):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(8000, np.float32), 16000)
    files = {"good": [handle_file(str(first_clips[0]))], "none": [], "bad": [handle_file(str(silent))]}[clips]
    with pytest.raises(gradio_client.exceptions.AppError) as e:
        client.predict(name, files, None, overwrite, api_name="/enroll")
    assert str(e.value).startswith(message), str(e.value)


def test_overwrite_and_remove_errors(client, first_clips, ada_only):
    status, table, _ = client.predict(
        "Ada", [handle_file(str(first_clips[1]))], None, True, api_name="/enroll"
    )
    assert status.startswith("Enrolled **Ada** from 1 clip") and [r[0] for r in table["data"]] == ["Ada"]
    with pytest.raises(gradio_client.exceptions.AppError, match="speaker 'Nobody' is not enrolled"):
        client.predict("Nobody", api_name="/remove_speaker")
    with pytest.raises(gradio_client.exceptions.AppError, match="choose a speaker to remove"):
        client.predict(None, api_name="/remove_speaker")


def test_server_log_has_no_tracebacks_and_binds_localhost_only(server, client):
    server.ready()  # (when this runs first, the server may still be booting)
    log = server.log_text()
    assert "Traceback" not in log, log[-3000:]
    assert f"Running on local URL:  {server.url.rstrip('/')}" in log and server.url.startswith(
        "http://127.0.0.1:"
    )
    assert "gradio.live" not in log  # no share link unless --share


def test_building_the_ui_writes_no_files_into_the_package():
    """Gradio writes a .pyi stub beside the module of each Component subclass; ours must not leave one."""
    import speakerid.webapp as webapp

    webapp._speaker_label_class.cache_clear()
    webapp._speaker_label_class()
    assert not Path(webapp.__file__).with_suffix(".pyi").exists()
