"""What a finished speaker-ID run reports: the collapse verdict, the "unknown" threshold, curves and metrics."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import atomic_open
from ..audio import CROP_SAMPLES
from ..data import PreparedDataset
from ..evaluation import equal_error_rate, predict_crops

__all__ = ["detect_collapse", "calibrate_threshold"]


def detect_collapse(report: dict, steps: int, min_steps: int) -> dict:
    """Did the model learn nothing? ``report`` is an :func:`speakerid.evaluation.evaluate` result (validation).

    Collapsed when every utterance is predicted as one class (while several are present), or when, after at
    least ``min_steps`` optimizer steps, utterance accuracy is not above chance: not more than two binomial
    standard deviations above the majority-class rate.
    """
    conf = np.asarray(report["confusion"])  # (K, K): true x predicted
    n = int(conf.sum())
    predicted = [report["labels"][k] for k in np.flatnonzero(conf.sum(0))]
    present = int((conf.sum(1) > 0).sum())
    chance = float(conf.sum(1).max() / max(n, 1))
    bar = chance + 2 * math.sqrt(chance * (1 - chance) / max(n, 1))
    reasons = []
    if present > 1 and len(predicted) == 1:
        reasons.append(f"every one of the {n} {report['split']} utterances is predicted as {predicted[0]!r}")
    if steps >= min_steps and report["utt_top1"] <= bar:
        reasons.append(
            f"{report['split']} utterance accuracy {report['utt_top1']:.1%} is at chance "
            f"({chance:.1%}, {n} utterances) after {steps} optimizer steps"
        )
    return {
        "collapsed": bool(reasons),
        "reasons": reasons,
        "split": report["split"],
        "utt_top1": report["utt_top1"],
        "chance": chance,
        "predicted_classes": len(predicted),
        "steps": steps,
    }


def calibrate_threshold(model, data: PreparedDataset, device="cpu", crop=CROP_SAMPLES, max_utts=400) -> dict:
    """Pick the "unknown speaker" cosine threshold at the EER of a closed-set simulation.

    Each training speaker is enrolled with the centroid of its train-split embeddings; the valid-split
    utterances are then scored against every centroid (own = genuine, others = impostor).
    """
    from ..data import FixedCropDataset

    def utt_embeddings(indices):
        ds = FixedCropDataset(data, indices, crop, max_crops=4)
        _, emb, _, pos = predict_crops(model, ds, device=device)
        out = torch.zeros(len(indices), emb.shape[1]).index_add_(0, pos, emb)
        return F.normalize(out, dim=1)

    rng = np.random.default_rng(0)
    train_idx, valid_idx = data.split("train"), data.split("valid") or data.split("test")
    if len(train_idx) > max_utts:
        train_idx = sorted(rng.choice(train_idx, max_utts, replace=False).tolist())
    if len(valid_idx) > max_utts:
        valid_idx = sorted(rng.choice(valid_idx, max_utts, replace=False).tolist())
    et, ev = utt_embeddings(train_idx), utt_embeddings(valid_idx)
    yt = torch.tensor([data.label(i) for i in train_idx])
    yv = torch.tensor([data.label(i) for i in valid_idx])
    K = len(data.labels)
    cent = F.normalize(torch.zeros(K, et.shape[1]).index_add_(0, yt, et), dim=1)
    scores = ev @ cent.T  # (U, K)
    own = F.one_hot(yv, K).bool()
    present = torch.zeros(K, dtype=torch.bool)
    present[yt] = True
    genuine = scores[own].numpy()
    impostor = scores[~own & present[None, :]].numpy()
    eer, thr = equal_error_rate(genuine, impostor)
    return {"threshold": thr, "eer": eer, "n_genuine": int(genuine.size), "n_impostor": int(impostor.size)}


def _plot_curves(rows: list[dict], path: Path) -> None:
    """Loss and accuracy per epoch. Validation runs every ``eval_every`` epochs, so its series are drawn over
    the evaluated epochs only, with markers (a single evaluation is still a visible point)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(ax, key, label, **kw):
        pts = [(r["epoch"], r[key]) for r in rows if key in r and math.isfinite(r[key])]
        if pts:
            ax.plot(*zip(*pts), label=label, **kw)

    ep = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [r["train_loss"] for r in rows], label="train")
    series(a, "val_loss", "valid", marker="o", color="C1")
    a.set_xlabel("epoch")
    a.set_ylabel("cross-entropy")
    a.legend()
    b.plot(ep, [r["train_acc"] for r in rows], label="train (crops)")
    series(b, "val_crop_top1", "valid (crops)", marker="o", color="C1")
    series(b, "val_utt_top1", "valid (utterances)", marker="s", color="C2")
    b.set_xlabel("epoch")
    b.set_ylabel("accuracy")
    b.set_ylim(0, 1)
    b.legend()
    fig.tight_layout()
    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)


def _write_metrics_csv(rows: list[dict], path: Path) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def _format_row(row: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
