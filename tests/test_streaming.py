"""Streaming: causal front-ends and the chunked forward equal the offline forward of the same causal model."""

import numpy as np
import pytest
import torch

from speakerid.features import CausalMFCC, CausalRaw
from speakerid.models import build_model, preset, reference_dilated_rnn
from speakerid.models.causal import causal_rnn
from speakerid.streaming import StreamingIdentifier, StreamSettings, TorchStep


def _wave(n, seed=0, batch=2):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    tone = torch.sin(2 * torch.pi * 180 * t) * (1 + torch.sin(2 * torch.pi * 2 * t))
    return (0.05 * tone + 0.01 * torch.randn(batch, n, generator=g)).float()  # (B, n)


def _chunked(fn, x, chunk, state):
    outs = []
    for i in range(0, x.shape[1], chunk):
        o, state = fn(x[:, i : i + chunk], state)
        outs.append(o)
    return torch.cat(outs, 1), state


@pytest.mark.parametrize("fe", [CausalMFCC(), CausalRaw()])
def test_causal_frontend_is_chunking_invariant(fe):
    x = _wave(16000)
    whole, _ = fe(x)
    parts, _ = _chunked(fe, x, 1600, fe.initial_state(2))
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of"):
        fe(x[:, :1601], fe.initial_state(2))


def _causal(frontend, readout, cell="gru"):
    if frontend == "mfcc":
        cfg = preset("mfcc-dilated-gru-causal", n_classes=4, readout=readout, cell=cell)
    else:  # a small raw-waveform dilated GRU: dilations 8..64, fusion of the 8 subsequences
        cfg = preset("dilated-gru-l0-3", hidden=[12] * 4, dilations=[8, 16, 32, 64], n_classes=4)
        cfg = preset("dilated-gru-l0-3", **dict(cfg.to_dict(), readout=readout, cell=cell, causal=True))
    torch.manual_seed(0)
    return build_model(cfg).eval()


@pytest.mark.parametrize(
    "frontend,readout,cell",
    [("mfcc", "mean", "gru"), ("raw", "fusion", "gru"), ("raw", "mean", "rnn"), ("mfcc", "fusion", "gru")],
)
def test_streaming_equals_offline(frontend, readout, cell):
    """Per-step outputs fed in 100 ms chunks (and in uneven 160-sample multiples) == the whole stream at once."""
    model = _causal(frontend, readout, cell)
    x = _wave(24000)
    with torch.no_grad():
        whole, _ = model.stream(x)  # (B, S, D)
        parts, _ = _chunked(model.stream, x, 1600, model.stream_state(2))
        torch.testing.assert_close(parts, whole, rtol=1e-5, atol=2e-6)
        state, outs, i = model.stream_state(2), [], 0
        for n in [160, 480, 3200, 800, 19360]:
            o, state = model.stream(x[:, i : i + n], state)
            outs.append(o)
            i += n
        torch.testing.assert_close(torch.cat(outs, 1), whole, rtol=1e-5, atol=2e-6)
        # the offline classifier reads the same per-step outputs
        feats = model.features(x)
        expect = whole.mean(1) if readout == "mean" else whole[:, -1]
        torch.testing.assert_close(feats, expect)


def test_causal_fold_matches_per_timestep_reference():
    """With T a multiple of the period no padding is involved: the causal fold == c_t = f(x_t, c_{t-d})."""
    model = _causal("raw", "mean")
    z = torch.randn(2, 128, 1)
    with torch.no_grad():
        out, bufs = causal_rnn(model.body, z)
        torch.testing.assert_close(out, reference_dilated_rnn(model.body, z), rtol=1e-5, atol=1e-6)
        for b, d in zip(bufs, model.body.dilations):
            assert b.shape == (2, d, 12)


def test_causal_model_is_level_invariant():
    model = _causal("mfcc", "mean")
    x = _wave(8000)
    with torch.no_grad():
        torch.testing.assert_close(model(x * 0.2), model(x * 4), rtol=1e-3, atol=1e-3)


def test_non_causal_models_are_refused():
    model = build_model(preset("mfcc-gru-5x20", n_classes=3))
    with pytest.raises(ValueError, match="does not stream"):
        TorchStep(model)
    with pytest.raises(ValueError, match="causal=True needs"):
        preset("stacked-lstm", causal=True)


def test_timeline_does_not_depend_on_how_input_arrives():
    """Silence, a 'speaker', silence, another one: feeding in odd pieces gives the same segments."""
    model = _causal("mfcc", "mean")
    rng = np.random.default_rng(0)
    sil = (1e-5 * rng.standard_normal(8000)).astype(np.float32)
    a, b = _wave(9600, 1, 1)[0].numpy(), (_wave(12800, 2, 1)[0].numpy() * 3)
    audio = np.concatenate([sil, a, sil, b, sil[:4000]])
    one = StreamingIdentifier(TorchStep(model), ["a", "b", "c", "d"])
    one.feed(audio)
    one.flush()
    whole = one.segments
    two = StreamingIdentifier(TorchStep(model), ["a", "b", "c", "d"])
    i = 0
    for n in [1, 999, 2500, 17, 30000]:
        two.feed(audio[i : i + n])
        i += n
    two.feed(audio[i:])
    two.flush()
    pieces = two.segments
    assert pieces == whole
    # the timeline covers the stream without gaps, and silence / speech alternate as built
    assert whole[0].start == 0 and abs(whole[-1].end - len(audio) / 16000) < 1e-9
    assert all(p.end == q.start for p, q in zip(whole, whole[1:]))
    kinds = [s.speaker is not None for s in whole]
    assert kinds == [False, True, False, True, False], whole
    assert abs(whole[1].start - 0.5) <= 0.1 and abs(whole[3].start - (0.5 + 0.6 + 0.5)) <= 0.1


def test_settings_are_checked():
    with pytest.raises(ValueError, match="chunk_s"):
        StreamSettings(chunk_s=0)
    assert StreamSettings().to_dict()["chunk_s"] == 0.1
