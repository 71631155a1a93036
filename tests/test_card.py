"""The model card: strict reading, the one converter for pre-card files (the shipped model is one), and the
same card in the checkpoint, the ONNX sidecar and the registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speakerid.audio import load_audio
from speakerid.card import CARD_FORMAT, Calibration, CardError, FrontEnd, ModelCard, card_from_v1
from speakerid.checkpoint import (
    FORMAT,
    CheckpointError,
    checkpoint_card,
    load_checkpoint,
    make_checkpoint,
    model_from_checkpoint,
    safe_load,
    save_atomic,
    save_checkpoint,
    with_calibration,
)
from speakerid.models import ModelConfig, build_model, preset
from speakerid.registry import RegistryError, SpeakerRegistry
from speakerid.runtime import Identifier, InferenceOptions, default_model_path, load_engine
from speakerid.vad import VadSettings


def small_card(**kw) -> ModelCard:
    return ModelCard(ModelConfig(hidden=[8], dilations=[1], n_classes=2), ("a", "b"), **kw)


def test_card_round_trip_and_strict_reading():
    card = small_card(frontend=FrontEnd(crop=4096), calibration=Calibration(0.7, 0.1, 5, 9), fingerprint="ab")
    d = card.to_dict()
    assert d["format"] == CARD_FORMAT and ModelCard.from_dict(json.loads(json.dumps(d))) == card
    assert (
        card.sample_rate == 16000 and "sample_rate" not in d["frontend"]
    )  # stored once, in the model config
    with pytest.raises(CardError, match=r"model card: unknown keys \['crop'\]"):
        ModelCard.from_dict(d | {"crop": 1})
    with pytest.raises(CardError, match=r"front-end: unknown keys \['sample_rate'\]"):
        ModelCard.from_dict(d | {"frontend": {"crop": 1, "sample_rate": 16000}})
    with pytest.raises(CardError, match=r"model card: missing keys \['labels'\]"):
        ModelCard.from_dict({k: v for k, v in d.items() if k != "labels"})
    with pytest.raises(CardError, match=r"model card format 'speakerid-card-v9' is not 'speakerid-card-v1'"):
        ModelCard.from_dict(d | {"format": "speakerid-card-v9"})
    with pytest.raises(CardError, match="model has 2 classes but the card names 3 labels"):
        ModelCard(card.model, ("a", "b", "c"))
    with pytest.raises(CardError, match="crop must be >= 1"):
        FrontEnd(crop=0)


def test_the_shipped_v1_checkpoint_loads_through_the_converter():
    path = default_model_path()
    raw = safe_load(path)
    assert raw["format"] == "speakerid-checkpoint-v1"  # the file as shipped, unchanged
    ck = load_checkpoint(path)
    card = checkpoint_card(ck)
    assert ck["format"] == FORMAT and not {"model_config", "labels", "frontend", "calibration"} & set(ck)
    assert card.model == ModelConfig.from_dict(raw["model_config"]) and list(card.labels) == raw["labels"]
    assert card.frontend == FrontEnd(crop=raw["frontend"]["crop"], vad=VadSettings())
    assert card.sample_rate == raw["frontend"]["sample_rate"] == 16000
    assert card.calibration == Calibration.from_dict(raw["calibration"])
    assert card.fingerprint == SpeakerRegistry.load(path.parent / "registry.json").fingerprint
    assert ck["train_config"] == raw["train_config"] and ck["metrics"] == raw["metrics"]

    # The converted model computes exactly what the v1 weights and config compute.
    direct = build_model(ModelConfig.from_dict(raw["model_config"]))
    direct.load_state_dict(raw["model"])
    wave = load_audio(sorted((path.parent / "samples").glob("*.wav"))[0])
    x = torch.from_numpy(np.stack([wave[:4096], wave[-4096:]]))
    with torch.inference_mode():
        a = direct.eval().forward_with_embedding(x)
        b = model_from_checkpoint(ck).forward_with_embedding(x)
    for u, v in zip(a, b):
        assert torch.equal(u, v)


def test_a_v1_checkpoint_resaved_as_v2_gives_the_same_answers(tmp_path):
    ck = load_checkpoint(default_model_path())
    save_atomic(ck, tmp_path / "v2.pt")
    assert safe_load(tmp_path / "v2.pt")["format"] == FORMAT
    old, new = load_engine(default_model_path(), device="cpu"), load_engine(tmp_path / "v2.pt", device="cpu")
    assert old.card == new.card
    clips = sorted((default_model_path().parent / "samples").glob("*.wav"))[:4]
    for mode in ("classes", "registry"):
        o = InferenceOptions(mode=mode)
        reg = default_model_path().parent / "registry.json" if mode == "registry" else None
        for c in clips:
            p, q = Identifier(old, reg, o).identify(c), Identifier(new, reg, o).identify(c)
            assert p.speaker == q.speaker and p.top_k == q.top_k


def test_other_formats_fail_naming_the_version(tmp_path):
    ck = load_checkpoint(default_model_path())
    torch.save(ck | {"format": "speakerid-checkpoint-v7"}, tmp_path / "v7.pt")
    with pytest.raises(CheckpointError, match=r"v7\.pt: .*format 'speakerid-checkpoint-v7'; expected"):
        load_checkpoint(tmp_path / "v7.pt")
    torch.save({"model": ck["model"]}, tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match=r"none\.pt: .*no format tag"):
        load_checkpoint(tmp_path / "none.pt")
    bad = safe_load(default_model_path())
    bad["frontend"] = dict(bad["frontend"], sample_rate=8000)
    torch.save(bad, tmp_path / "rates.pt")
    with pytest.raises(
        CheckpointError, match=r"rates\.pt: cannot convert .*sample rate 8000 but its model config"
    ):
        load_checkpoint(tmp_path / "rates.pt")
    edited = dict(ck, model={k: v + 1 for k, v in ck["model"].items()})
    torch.save(edited, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="weights do not match the card's fingerprint"):
        load_checkpoint(tmp_path / "edited.pt")


def test_the_training_loop_api(tmp_path):
    """What a training loop calls: build a card, save with its state, set the calibration later."""
    torch.manual_seed(0)
    model = build_model(preset("mfcc-gru-5x20", n_classes=2))
    card = ModelCard.build(model.config, ["x", "y"], FrontEnd(crop=2048))
    save_checkpoint(tmp_path / "last.pt", model, card, epoch=3, optimizer={"lr": 1e-3})
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["epoch"] == 3 and ck["optimizer"] == {"lr": 1e-3}
    assert (
        checkpoint_card(ck).fingerprint
        == ModelCard.build(model.config, "xy", weights=model.state_dict()).fingerprint
    )
    cal = {"threshold": 0.42, "eer": 0.2, "n_genuine": 3, "n_impostor": 6}
    save_atomic(with_calibration(ck, cal), tmp_path / "last.pt")
    assert load_engine(tmp_path / "last.pt", device="cpu").threshold == 0.42
    with pytest.raises(ValueError, match=r"may not set \['card'\]"):
        make_checkpoint(model, card, card={})


def test_v1_sidecar_converts_to_the_same_card(tmp_path):
    pytest.importorskip("onnxruntime")
    from export.onnx_export import export_onnx
    from speakerid.onnx_engine import OnnxEngine, OnnxModelError, read_sidecar

    side = export_onnx(default_model_path(), tmp_path / "m.onnx")
    card = ModelCard.from_dict(side["card"])
    assert card == load_engine(default_model_path(), device="cpu").card
    # The layout python -m export wrote before the card (flat keys, sample rate beside the model config).
    g = side["onnx"]
    v1 = {
        "format": "speakerid-onnx-v1",
        "onnx_sha256": g["onnx_sha256"],
        "input": g["input"],
        "outputs": g["outputs"],
        "sample_rate": 16000,
        "crop": card.frontend.crop,
        "vad": card.frontend.vad.to_dict() | {"silero_vad_version": "6.2.0"},
        "labels": list(card.labels),
        "model_config": card.model.to_dict(),
        "fingerprint": card.fingerprint,
        "threshold": card.threshold,
        "calibration": card.calibration.to_dict(),
        "n_parameters": g["n_parameters"],
        "fp16": False,
    }
    (tmp_path / "m.json").write_text(json.dumps(v1))
    assert read_sidecar(tmp_path / "m.json")[0] == card
    assert OnnxEngine(tmp_path / "m.onnx", device="cpu").card == card
    (tmp_path / "m.json").write_text(json.dumps(v1 | {"format": "speakerid-onnx-v0"}))
    with pytest.raises(OnnxModelError, match=r"m\.json: .*format 'speakerid-onnx-v0'"):
        OnnxEngine(tmp_path / "m.onnx", device="cpu")
    assert card_from_v1(v1, card.fingerprint) == card


def test_registry_carries_the_card_and_v1_registries_are_upgraded_on_write(tmp_path):
    engine = load_engine(default_model_path(), device="cpu")
    v1 = tmp_path / "r.json"
    bundled = json.loads((default_model_path().parent / "registry.json").read_text())
    assert bundled["format"] == "speakerid-registry-v1"
    v1.write_text(json.dumps(bundled))
    reg = SpeakerRegistry.load(v1)
    assert reg.card is None and reg.fingerprint == engine.fingerprint
    with pytest.raises(RegistryError, match="no model card to save"):
        reg.save(tmp_path / "x.json")
    SpeakerRegistry.update(v1, engine, lambda r: r.remove("george"))
    d = json.loads(v1.read_text())
    assert d["format"] == "speakerid-registry-v2" and ModelCard.from_dict(d["card"]) == engine.card
    assert SpeakerRegistry.load(v1).card == engine.card and "george" not in SpeakerRegistry.load(v1).names
    d["model_fingerprint"] = "0" * 16
    v1.write_text(json.dumps(d))
    with pytest.raises(RegistryError, match="model_fingerprint differs from the card's"):
        SpeakerRegistry.load(v1)
