"""Verification metrics (pure numpy): the equal-error rate and its threshold, used to calibrate "unknown"."""

from __future__ import annotations

import numpy as np

__all__ = ["equal_error_rate"]


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """EER and the threshold where false accepts = false rejects, from similarity scores (higher = same)."""
    genuine, impostor = np.asarray(genuine, np.float64), np.asarray(impostor, np.float64)
    if genuine.size == 0 or impostor.size == 0:
        raise ValueError("EER needs at least one genuine and one impostor score")
    scores = np.unique(np.concatenate([genuine, impostor]))
    # Candidates between consecutive scores (and beyond both ends), so a separable set gets a margin.
    thresholds = np.concatenate([[scores[0] - 1e-6], (scores[1:] + scores[:-1]) / 2, [scores[-1] + 1e-6]])
    far = (impostor[None, :] >= thresholds[:, None]).mean(1)
    frr = (genuine[None, :] < thresholds[:, None]).mean(1)
    gap = np.abs(far - frr)
    best = np.flatnonzero(gap == gap.min())
    i = int(best[len(best) // 2])  # the middle of the optimal interval
    return float((far[i] + frr[i]) / 2), float(thresholds[i])
