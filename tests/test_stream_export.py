"""ONNX streaming step (chunk + states in, scores + states out) in ONNX Runtime == the PyTorch streaming step."""

import json

import numpy as np
import pytest
import torch

from speakerid.card import ModelCard, fingerprint  # noqa: E402
from speakerid.checkpoint import make_checkpoint  # noqa: E402
from speakerid.models import build_model, preset
from speakerid.streaming import StreamingIdentifier, TorchStep

pytest.importorskip("onnxruntime", reason="onnxruntime runs the exported graph")
pytest.importorskip("onnx", reason="onnx checks the exported graph")

from export.onnx_export import ExportError  # noqa: E402
from export.stream_export import OnnxStep, export_stream  # noqa: E402


def _ckpt(cfg):
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    return make_checkpoint(model, ModelCard.build(cfg, ["a", "b", "c"])), model


CONFIGS = {
    "mfcc": preset("mfcc-dilated-gru-causal", n_classes=3),
    "raw-fusion": preset(
        "dilated-gru-l0-3", hidden=[10] * 3, dilations=[8, 16, 32], n_classes=3, causal=True, readout="fusion"
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_onnx_step_matches_torch(tmp_path, name):
    ckpt, model = _ckpt(CONFIGS[name])
    out = tmp_path / "step.onnx"
    meta = export_stream(ckpt, out, chunk_s=0.1)
    side = json.loads(out.with_suffix(".json").read_text())
    assert meta["stream"]["chunk"] == 1600 and side["card"]["labels"] == ["a", "b", "c"]
    assert side["card"]["fingerprint"] == fingerprint(ckpt["model"])
    onnx_step, torch_step = OnnxStep(out), TorchStep(model, chunk_s=0.1)
    g = np.random.default_rng(1)
    t = np.arange(1600 * 12) / 16000
    audio = (0.05 * np.sin(2 * np.pi * 210 * t) + 0.01 * g.standard_normal(t.size)).astype(np.float32)
    for i in range(12):  # carried states: chunk 12 depends on all before it
        c = audio[i * 1600 : (i + 1) * 1600]
        f1, l1 = onnx_step.step(c)
        f2, l2 = torch_step.step(c)
        np.testing.assert_allclose(f1, f2, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(l1, l2, rtol=1e-4, atol=1e-5)
    for s1, s2 in zip(onnx_step.state, torch_step.state):
        np.testing.assert_allclose(s1, s2.numpy(), rtol=1e-4, atol=1e-5)
    assert onnx_step.state_bytes == torch_step.state_bytes
    # a batch of 3 independent streams in one call (dynamic batch)
    states = [np.repeat(s, 3, axis=0) for s in onnx_step.state]
    chunks = np.stack([audio[:1600], audio[1600:3200] * 2, audio[:1600] * 0.1])
    feat, logits, new = onnx_step.run(chunks, states)
    assert feat.shape == (3, model.embedding_size) and logits.shape == (3, 3)
    for i in range(3):  # each row as its own stream gives the same answer
        f1, l1, _ = onnx_step.run(chunks[i : i + 1], [s[i : i + 1] for s in states])
        np.testing.assert_allclose(f1[0], feat[i], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(l1[0], logits[i], rtol=1e-4, atol=1e-5)
    # the engine runs on either step with the same timeline
    a = StreamingIdentifier(OnnxStep(out), ["a", "b", "c"])
    b = StreamingIdentifier(TorchStep(model), ["a", "b", "c"])
    a.feed(audio)
    b.feed(audio)
    a.flush()
    b.flush()
    assert [s.speaker for s in a.segments] == [s.speaker for s in b.segments]


def test_non_causal_checkpoint_is_refused(tmp_path):
    ckpt, _ = _ckpt(preset("mfcc-gru-5x20", n_classes=3))
    with pytest.raises(ExportError, match="does not stream"):
        export_stream(ckpt, tmp_path / "x.onnx")
