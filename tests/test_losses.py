"""Metric-learning losses: AAM-softmax and the angular prototypical loss (values, shapes, and a loss that goes
down when a DilatedRNN with a cosine head is trained on real speech)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from speakerid.audio import fixed_crops, load_audio
from speakerid.losses import aam_softmax, prototypical
from speakerid.models import build_model, preset
from speakerid.models.classifier import COSINE_SCALE

SAMPLES = Path(__file__).resolve().parents[1] / "speakerid" / "pretrained" / "default" / "samples"


def test_aam_without_margin_is_scaled_cosine_cross_entropy():
    cos = torch.tanh(torch.randn(8, 5, generator=torch.Generator().manual_seed(0)))
    y = torch.arange(8) % 5
    assert aam_softmax(cos, y, margin=0.0, scale=30.0).item() == pytest.approx(
        F.cross_entropy(30.0 * cos, y).item(), rel=1e-6
    )


def test_margin_penalises_the_target_class_only():
    cos = torch.tensor([[0.9, 0.1, -0.2], [0.3, 0.5, 0.0]])
    y = torch.tensor([0, 1])
    plain, margin = aam_softmax(cos, y, 0.0, 30.0), aam_softmax(cos, y, 0.3, 30.0)
    assert margin > plain
    # The target logit is exactly s cos(theta + m).
    theta = math.acos(0.9)
    logits = torch.tensor([[30 * math.cos(theta + 0.3), 3.0, -6.0]])
    assert aam_softmax(cos[:1], y[:1], 0.3, 30.0).item() == pytest.approx(
        F.cross_entropy(logits, y[:1]).item(), rel=1e-5
    )
    # Cosines at the ends of [-1, 1] stay finite (clamped before acos-free arithmetic) and give gradients.
    edge = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], requires_grad=True)
    loss = aam_softmax(edge, torch.tensor([1, 0]), 0.2, 30.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(edge.grad).all()


def test_aam_rejects_a_bad_shape():
    with pytest.raises(ValueError, match=r"expected cosines \(B, K\), got shape \(4,\)"):
        aam_softmax(torch.zeros(4), torch.zeros(4, dtype=torch.long))


def test_prototypical_prefers_separated_speakers():
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(4, 16, generator=g), dim=-1)
    tight = centres[:, None] + 0.05 * torch.randn(4, 3, 16, generator=g)  # (N, M, D)
    mixed = tight[torch.randperm(4, generator=g)].transpose(0, 1).reshape(4, 3, 16)  # speakers mixed up
    assert prototypical(tight).item() < 0.1 < prototypical(mixed).item()
    with pytest.raises(ValueError, match="M >= 2"):
        prototypical(torch.zeros(4, 1, 16))


def test_aam_training_on_real_speech_lowers_the_loss_and_separates_speakers():
    """A small cosine-head DilatedRNN on crops of the 12 shipped FSDD clips (6 speakers): 40 AdamW steps."""
    torch.manual_seed(0)
    names = sorted(p.stem for p in SAMPLES.glob("*.wav"))
    speakers = sorted({n.split("_")[0] for n in names})
    crops, labels = [], []
    for n in names:
        c, _ = fixed_crops(load_audio(SAMPLES / f"{n}.wav"), 2048, max_crops=2)
        crops.append(c)
        labels += [speakers.index(n.split("_")[0])] * len(c)
    x, y = torch.from_numpy(np.concatenate(crops)), torch.tensor(labels)  # (N, 2048), (N,)
    cfg = preset(
        "mfcc-gru-5x20",
        hidden=[24, 24],
        dilations=[1, 2],
        readout="mean",
        head="cosine",
        n_classes=len(speakers),
    )
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = aam_softmax(model(x) / COSINE_SCALE, y, 0.2, COSINE_SCALE)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::8]
    with torch.no_grad():
        logits, emb = model.forward_with_embedding(x)
    assert emb.shape == (len(x), 24) and torch.allclose(emb.norm(dim=1), torch.ones(len(x)), atol=1e-5)
    assert logits.abs().max() <= COSINE_SCALE + 1e-4  # a cosine head: logits are scaled cosines
    assert (logits.argmax(1) == y).float().mean() > 0.8
