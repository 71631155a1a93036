"""The open-set embedding recipe wired into train.py: AAM-softmax on a cosine head, augmentation, varied crop
lengths and pseudo-voices; its checkpoint enrolls and identifies through the ordinary runtime."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from _synth import make_prepared

from speakerid.checkpoint import checkpoint_card, load_checkpoint
from speakerid.runtime import clip_embedding, load_engine
from speakerid.training import CONFIGS, get_config, train
from speakerid.training.speaker import _batch_length

SAMPLES = Path(__file__).resolve().parents[1] / "speakerid" / "pretrained" / "default" / "samples"


def _tiny(data, out, **kw):
    base = dict(
        data=str(data),
        out=str(out),
        name="e",
        hidden=[16, 16],
        dilations=[1, 2],
        n_mfcc=13,
        crop=4096,
        crop_min=2048,
        batch_size=8,
        epochs=4,
        eval_every=2,
        ckpt_every=0,
        val_max_crops=2,
    )
    base.update(kw)
    return dataclasses.replace(get_config("embed"), **base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = make_prepared(tmp_path_factory.mktemp("data"), n_speakers=3, per_speaker=12)
    out = tmp_path_factory.mktemp("run")
    summary = train(_tiny(data, out, voices=3, voice_pitch=3.0, voice_vtlp=0.1), progress=False)
    return out, summary


def test_recipe_trains_pseudo_voices_with_aam(trained):
    out, summary = trained
    rows = summary["metrics"]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    ck = load_checkpoint(out / "last.pt")
    card = checkpoint_card(ck)
    assert card.model.head == "cosine" and card.model.n_classes == 9
    assert card.labels[:3] == ("spk0/voice0", "spk0/voice1", "spk0/voice2")
    assert ck["train_config"]["loss"] == "aam" and ck["train_config"]["aug_vtlp"] > 0
    # Evaluation scores speakers, not voices: the test report has the 3 speakers.
    assert set(summary["test"]) >= {"utt_top1"} and 0.0 <= summary["test"]["utt_top1"] <= 1.0


def test_recipe_checkpoint_embeds_real_speech(trained):
    out, _ = trained
    engine = load_engine(out / "last.pt", device="cpu")
    e1 = clip_embedding(engine, SAMPLES / "george_1.wav")
    e2 = clip_embedding(engine, SAMPLES / "george_1.wav")
    assert e1.shape == (2 * 16,)  # stats readout: mean || std of 16 units
    assert np.linalg.norm(e1) == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(e1, e2)


def test_batch_lengths_vary_within_bounds_and_reproducibly():
    cfg = dataclasses.replace(get_config("embed"), crop=16000, crop_min=8000)
    lengths = [_batch_length(cfg, s) for s in range(50)]
    assert min(lengths) >= 8000 and max(lengths) <= 16000 and len(set(lengths)) > 40
    assert lengths == [_batch_length(cfg, s) for s in range(50)]
    assert _batch_length(dataclasses.replace(cfg, crop_min=0), 3) == 16000


def test_aam_needs_a_cosine_head(tmp_path):
    data = make_prepared(tmp_path / "d", n_speakers=2, per_speaker=6)
    with pytest.raises(ValueError, match="loss aam needs a cosine head"):
        train(_tiny(data, tmp_path / "r", head="linear"), progress=False)
    with pytest.raises(ValueError, match="loss must be ce or aam, got 'ge2e'"):
        train(_tiny(data, tmp_path / "r", loss="ge2e"), progress=False)


@pytest.mark.parametrize("name", ["embed", "fsdd-embed"])
def test_recipe_configs_build(name):
    cfg = CONFIGS[name]
    m = cfg.model_config(6)
    assert m.head == "cosine" and m.input_size == m.n_mfcc == 30
    assert m.n_classes == 6 * max(1, cfg.voices)
    assert (m.f_max == 4000.0) == (name == "fsdd-embed")


def test_recipe_checkpoint_exports_to_onnx_with_the_same_embeddings(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    from export.onnx_export import export_onnx

    out, _ = trained
    export_onnx(out / "last.pt", tmp_path / "embed.onnx")
    torch_engine = load_engine(out / "last.pt", device="cpu")
    onnx_engine = load_engine(tmp_path / "embed.onnx", device="cpu")
    for name in ("george_1.wav", "theo_2.wav"):
        a = clip_embedding(torch_engine, SAMPLES / name)
        b = clip_embedding(onnx_engine, SAMPLES / name)
        assert np.abs(a - b).max() < 1e-4, name
