"""`speakerid stream`: a live timeline of a file or of raw 16 kHz PCM on stdin, in a real subprocess."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from speakerid.audio import load_audio
from speakerid.runtime import default_model_path

SAMPLES = default_model_path().parent / "samples"
pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="shipped samples missing")


@pytest.fixture(scope="module")
def meeting(tmp_path_factory):
    """Three shipped speakers with gaps of a -80 dBFS noise floor -> (wav path, 16 kHz samples, truth)."""
    rng = np.random.default_rng(0)
    parts, truth, t = [], [], 0.0
    for who in ["george", "jackson", "theo"]:
        gap = (1e-4 * rng.standard_normal(9600)).astype(np.float32)
        w = load_audio(SAMPLES / f"{who}_1.wav")
        parts += [gap, w]
        t += len(gap) / 16000
        truth.append((who, t))
        t += len(w) / 16000
    parts.append(np.zeros(8000, np.float32))
    audio = np.concatenate(parts)
    path = tmp_path_factory.mktemp("stream") / "meeting.wav"
    sf.write(path, audio, 16000, subtype="FLOAT")
    return path, audio, truth


def _run(args, tmp_path, stdin=None):
    env = dict(os.environ, SPEAKERID_HOME=str(tmp_path), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "speakerid.cli", "stream", *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=300, env=env)  # liveness only


def _speech(rows):
    return [r for r in rows if r["speaker"] is not None]


@pytest.mark.parametrize("mode", ["classes", "registry"])
def test_file_timeline_names_each_speaker_at_its_start(meeting, tmp_path, mode):
    path, audio, truth = meeting
    r = _run([str(path), "--format", "jsonl", "--mode", mode], tmp_path)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    rows = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert set(rows[0]) == {"start", "end", "speaker", "score"}
    assert rows[0]["start"] == 0 and abs(rows[-1]["end"] - len(audio) / 16000) < 1e-3
    assert all(a["end"] == b["start"] for a, b in zip(rows, rows[1:]))  # no gaps, no overlaps
    speech = _speech(rows)
    assert [s["speaker"] for s in speech] == [w for w, _ in truth], rows
    for s, (_, start) in zip(speech, truth):
        assert abs(s["start"] - start) <= 0.3, (s, start)


def test_stdin_pcm_gives_the_same_timeline(meeting, tmp_path):
    path, audio, _ = meeting
    pcm = np.round(audio * 32768).clip(-32768, 32767).astype("<i2").tobytes()
    a = _run(["-", "--format", "jsonl", "--mode", "classes"], tmp_path, stdin=pcm)
    b = _run([str(path), "--format", "jsonl", "--mode", "classes"], tmp_path)
    assert a.returncode == 0, a.stderr.decode()[-2000:]
    ra = [json.loads(x) for x in a.stdout.decode().splitlines()]
    rb = [json.loads(x) for x in b.stdout.decode().splitlines()]
    assert [(x["start"], x["end"], x["speaker"]) for x in ra] == [
        (x["start"], x["end"], x["speaker"]) for x in rb
    ]


def test_text_timeline_and_errors(meeting, tmp_path):
    path, _, _ = meeting
    r = _run([str(path)], tmp_path)
    assert r.returncode == 0
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("#") and "(no speech)" in lines[1] and "george" in lines[2]
    bad = _run([str(tmp_path / "missing.wav")], tmp_path)
    assert bad.returncode == 2 and "missing.wav" in bad.stderr.decode()


def test_onnx_step_gives_the_checkpoints_timeline(meeting, tmp_path):
    """`python -m export --stream` + `speakerid stream --model step.onnx`: the checkpoint's segments, in ORT."""
    pytest.importorskip("onnxruntime", reason="onnxruntime runs the exported step")
    pytest.importorskip("onnx", reason="onnx checks the exported step")
    path, audio, truth = meeting
    onnx_path = tmp_path / "step.onnx"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    exp = subprocess.run(
        [sys.executable, "-m", "export", "--stream", "--out", str(onnx_path)],
        capture_output=True,
        timeout=300,
        env=env,
    )
    assert exp.returncode == 0, exp.stderr.decode()[-2000:]
    assert json.loads(exp.stdout)["chunk"] == 1600
    for mode in ["classes", "registry"]:
        ref = _run([str(path), "--format", "jsonl", "--mode", mode], tmp_path)
        got = _run([str(path), "--format", "jsonl", "--mode", mode, "--model", str(onnx_path)], tmp_path)
        assert ref.returncode == 0 and got.returncode == 0, got.stderr.decode()[-2000:]
        a = [json.loads(x) for x in ref.stdout.decode().splitlines()]
        b = [json.loads(x) for x in got.stdout.decode().splitlines()]
        assert [(r["start"], r["end"], r["speaker"]) for r in a] == [
            (r["start"], r["end"], r["speaker"]) for r in b
        ]
        assert all(r["score"] is None or abs(r["score"] - s["score"]) < 1e-3 for r, s in zip(a, b))
        assert [s["speaker"] for s in _speech(b)] == [w for w, _ in truth]
    bad = _run([str(path), "--model", str(onnx_path), "--chunk-s", "0.2"], tmp_path)
    assert bad.returncode == 2 and b"chunk is fixed at export (0.1 s)" in bad.stderr
