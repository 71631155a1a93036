"""Metric-learning losses for speaker embeddings.

Dim legend: B batch, D embedding, K classes, N speakers per episode, M utterances per speaker.

- :func:`aam_softmax`: additive angular margin softmax (ArcFace; Deng et al. 2019), the usual loss for speaker
  embeddings (wespeaker, ECAPA-TDNN): logits are s * cos(theta_y + m) for the true class, s * cos(theta_j)
  for the others. It works on the cosines a model with ``head="cosine"`` returns (its logits divided by its
  scale), so training and closed-set inference share the same head.
- :func:`prototypical`: the angular prototypical loss (Chung et al. 2020) on an (N, M, D) episode: each
  speaker's last utterance is classified against the centroids of every speaker's other utterances.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["aam_softmax", "prototypical"]


def aam_softmax(
    cosine: torch.Tensor, labels: torch.Tensor, margin: float = 0.2, scale: float = 30.0
) -> torch.Tensor:
    """cosine (B, K) in [-1, 1], labels (B,) -> scalar loss.

    The margin applies where theta + m stays below pi (the "easy margin" fallback of ArcFace otherwise subtracts
    m sin(m) so the target logit keeps decreasing in theta)."""
    if cosine.dim() != 2:
        raise ValueError(f"expected cosines (B, K), got shape {tuple(cosine.shape)}")
    cos = cosine.float().clamp(-1 + 1e-7, 1 - 1e-7)
    target = cos.gather(1, labels[:, None])  # (B, 1)
    sin = torch.sqrt(1.0 - target * target)
    phi = target * math.cos(margin) - sin * math.sin(margin)  # cos(theta + m)
    phi = torch.where(target > math.cos(math.pi - margin), phi, target - math.sin(math.pi - margin) * margin)
    logits = cos.scatter(1, labels[:, None], phi) * scale  # (B, K)
    return F.cross_entropy(logits, labels)


def prototypical(embeddings: torch.Tensor, w: float = 10.0, b: float = -5.0) -> torch.Tensor:
    """embeddings (N, M, D) with M >= 2 -> scalar angular prototypical loss (fixed scale w and bias b)."""
    if embeddings.dim() != 3 or embeddings.shape[1] < 2:
        raise ValueError(
            f"expected an (N speakers, M >= 2 utterances, D) episode, got {tuple(embeddings.shape)}"
        )
    query = F.normalize(embeddings[:, -1], dim=-1)  # (N, D)
    proto = F.normalize(embeddings[:, :-1].mean(1), dim=-1)  # (N, D)
    logits = w * query @ proto.T + b  # (N, N)
    return F.cross_entropy(logits, torch.arange(len(query), device=embeddings.device))
