"""An exported ONNX model with a speaker registry answers exactly as its checkpoint does.

Real ONNX Runtime session of the exported shipped model, real FSDD clips, the real ``speakerid identify`` CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from export.onnx_export import export_onnx  # noqa: E402
from speakerid.cli import main as cli_main  # noqa: E402
from speakerid.identify import main as identify_main  # noqa: E402
from speakerid.pipeline import enroll  # noqa: E402
from speakerid.registry import SpeakerRegistry  # noqa: E402
from speakerid.runtime import Identifier, InferenceOptions, default_model_path, load_engine  # noqa: E402
from speakerid.vad import VadSettings  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread", "home")

SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(default_model_path(), out)
    return out


@pytest.fixture(scope="module")
def test_files(fsdd) -> list[str]:
    """Test-split recordings (0-4) of all six speakers, two digits each."""
    return [str(fsdd / f"{d}_{s}_{i}.wav") for s in SPEAKERS for d, i in ((2, 0), (8, 3))]


@pytest.fixture(scope="module")
def registry(fsdd, tmp_path_factory) -> Path:
    """Two speakers enrolled with the checkpoint: the other four speakers' clips are strangers."""
    path = tmp_path_factory.mktemp("reg") / "two.json"
    engine = load_engine(default_model_path(), device="cpu")
    reg = SpeakerRegistry.new(engine)
    for spk in ("george", "lucas"):
        enroll(reg, spk, [str(fsdd / f"{d}_{spk}_{10 + d}.wav") for d in range(3)], engine)
    reg.save(path)
    return path


def _identify(tmp_path, model, registry, files, name) -> list[dict]:
    out = tmp_path / f"{name}.jsonl"
    args = [*files, "--format", "jsonl", "--out", str(out), "--no-progress", "--top-k", "2"]
    args += ["--registry", str(registry)] if registry else []
    rc = identify_main(args + (["--model", str(model)] if model else []))
    assert rc == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_sidecar_carries_the_speech_detection_settings(onnx_model):
    side = json.loads(onnx_model.with_suffix(".json").read_text())
    assert side["card"]["frontend"]["vad"] == VadSettings().to_dict()
    assert side["onnx"]["versions"]["silero_vad"]
    assert load_engine(onnx_model, device="cpu").vad == load_engine(default_model_path(), device="cpu").vad


def test_onnx_with_a_registry_gives_the_checkpoints_answers(tmp_path, onnx_model, registry, test_files):
    ckpt_rows = _identify(tmp_path, None, registry, test_files, "ckpt")
    onnx_rows = _identify(tmp_path, onnx_model, registry, test_files, "onnx")
    assert [r["mode"] for r in onnx_rows] == ["registry"] * len(test_files)
    assert [r["speaker"] for r in onnx_rows] == [r["speaker"] for r in ckpt_rows]
    assert "unknown" in {r["speaker"] for r in onnx_rows}  # strangers stay strangers with ONNX too
    for a, b in zip(ckpt_rows, onnx_rows):
        assert a["speech"] == b["speech"] and a["n_crops"] == b["n_crops"]
        assert [n for n, _ in a["top_k"]] == [n for n, _ in b["top_k"]]
        np.testing.assert_allclose([s for _, s in a["top_k"]], [s for _, s in b["top_k"]], atol=1e-4)


def test_same_embeddings_from_both_engines(onnx_model, test_files):
    ck = Identifier(load_engine(default_model_path(), device="cpu"), None, InferenceOptions(mode="classes"))
    ox = Identifier(load_engine(onnx_model, device="cpu"), None, InferenceOptions(mode="classes"))
    for f in test_files[:4]:
        np.testing.assert_allclose(ck.identify(f).embedding, ox.identify(f).embedding, atol=1e-4)


def test_onnx_of_the_shipped_model_uses_the_bundled_registry_by_default(tmp_path, onnx_model, test_files):
    rows = _identify(tmp_path, onnx_model, None, test_files[:2], "default")
    assert [r["mode"] for r in rows] == ["registry", "registry"]  # not the model's own classes


def test_onnx_enrollment_lands_where_the_checkpoint_finds_it(tmp_path, capsys, onnx_model, fsdd):
    rc = cli_main(["enroll", "--name", "Ann", str(fsdd / "1_theo_11.wav"), "--model", str(onnx_model)])
    assert rc == 0, capsys.readouterr().err
    ck = Identifier(load_engine(default_model_path(), device="cpu"))
    assert ck.registry.names == ["Ann"]  # same fingerprint -> the same user registry


def test_a_registry_of_another_model_is_refused_by_onnx(tmp_path, onnx_model, test_files, capsys):
    other = tmp_path / "other.json"
    reg = SpeakerRegistry(load_engine(onnx_model, device="cpu").card.replace(fingerprint="0123456789abcdef"))
    reg.add("Ann", np.eye(1, 64))
    reg.save(other)
    rc = identify_main([test_files[0], "--model", str(onnx_model), "--registry", str(other), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "registry was made with model 0123456789abcdef" in err and "other.json" in err
