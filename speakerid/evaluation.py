"""Evaluation: crop- and utterance-level accuracy, per-speaker accuracy, confusion matrix, EER.

Dim legend: N crops, U utterances, K classes, D embedding size.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .atomic import atomic_open, write_atomic
from .audio import CROP_SAMPLES
from .data import FixedCropDataset, PreparedDataset

__all__ = [
    "predict_crops",
    "evaluate",
    "enrollment_eer",
    "equal_error_rate",
    "plot_confusion",
    "write_report",
]


@torch.no_grad()
def predict_crops(model, dataset: FixedCropDataset, batch_size=64, device="cpu", progress=False):
    """Run every fixed crop: returns (log-probs (N, K), embeddings (N, D), labels (N,), utterance pos (N,))."""
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    logps, embs, labels, pos = [], [], [], []
    for x, y, p in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        logits, emb = model.forward_with_embedding(x.to(device))
        logps.append(F.log_softmax(logits.float(), -1).cpu())
        embs.append(emb.float().cpu())
        labels.append(y)
        pos.append(p)
    return torch.cat(logps), torch.cat(embs), torch.cat(labels), torch.cat(pos)


def _topk_acc(logp: torch.Tensor, y: torch.Tensor, k: int) -> float:
    k = min(k, logp.shape[1])
    return (
        (logp.topk(k, dim=1).indices == y[:, None]).any(1).float().mean().item() if len(y) else float("nan")
    )


def evaluate(
    model,
    data: PreparedDataset,
    split: str = "test",
    crop: int = CROP_SAMPLES,
    batch_size: int = 64,
    device="cpu",
    max_crops: int | None = None,
    progress: bool = False,
) -> dict:
    """Accuracy of ``model`` on one split of a prepared dataset.

    Crop level: each fixed crop on its own. Utterance level: crops of one utterance vote by summing their
    log-probabilities (soft vote); ``utt_majority_acc`` is the plain majority vote of crop predictions.
    """
    indices = data.split(split)
    if not indices:
        raise ValueError(f"{data.root}: split {split!r} is empty")
    ds = FixedCropDataset(data, indices, crop, max_crops=max_crops)
    logp, _, y, pos = predict_crops(model, ds, batch_size, device, progress)
    K = logp.shape[1]
    U = len(indices)
    utt_logp = torch.zeros(U, K).index_add_(0, pos, logp)
    votes = torch.zeros(U, K).index_add_(0, pos, F.one_hot(logp.argmax(1), K).float())
    utt_y = torch.tensor([data.label(i) for i in indices])
    utt_pred = utt_logp.argmax(1)
    conf = torch.zeros(K, K, dtype=torch.long)
    conf.index_put_((utt_y, utt_pred), torch.ones(U, dtype=torch.long), accumulate=True)
    names = data.speakers
    per_speaker = {}
    for k, name in enumerate(names):
        m = utt_y == k
        if m.any():
            per_speaker[name] = {
                "utterances": int(m.sum()),
                "accuracy": (utt_pred[m] == k).float().mean().item(),
            }
    return {
        "split": split,
        "n_utterances": U,
        "n_crops": len(y),
        "crop": crop,
        "loss": F.nll_loss(logp, y).item(),
        "crop_top1": _topk_acc(logp, y, 1),
        "crop_top5": _topk_acc(logp, y, 5),
        "utt_top1": _topk_acc(utt_logp, utt_y, 1),
        "utt_top5": _topk_acc(utt_logp, utt_y, 5),
        "utt_majority_acc": (votes.argmax(1) == utt_y).float().mean().item(),
        "per_speaker": per_speaker,
        "labels": names,
        "confusion": conf.tolist(),
    }


@torch.no_grad()
def enrollment_eer(
    model,
    data: PreparedDataset,
    split: str = "test",
    n_enroll: int = 5,
    crop: int = CROP_SAMPLES,
    device="cpu",
    max_crops: int = 4,
    seed: int = 0,
) -> dict:
    """Open-set verification on the speakers of one split (speaker-disjoint from training when the data was
    prepared with ``--split-by speaker``): each speaker is enrolled with the centroid of ``n_enroll`` random
    utterances; every other utterance is scored (cosine) against every centroid. Returns EER and threshold.
    """
    indices = data.split(split)
    if not indices:
        raise ValueError(f"{data.root}: split {split!r} is empty")
    ds = FixedCropDataset(data, indices, crop, max_crops=max_crops)
    _, emb, _, pos = predict_crops(model, ds, device=device)
    utt = F.normalize(torch.zeros(len(indices), emb.shape[1]).index_add_(0, pos, emb), dim=1)
    spk = np.array([data.utterances[i].speaker for i in indices])
    names = sorted(set(spk))
    if len(names) < 2:
        raise ValueError(f"{data.root}: split {split!r} needs at least 2 speakers for impostor trials")
    rng = np.random.default_rng(seed)
    enrolled, test_mask = [], np.ones(len(indices), dtype=bool)
    for name in names:
        own = np.flatnonzero(spk == name)
        pick = rng.choice(own, min(n_enroll, len(own) - 1), replace=False) if len(own) > 1 else own
        test_mask[pick] = False
        enrolled.append(F.normalize(utt[pick].mean(0), dim=0))
    cent = torch.stack(enrolled)  # (S, D)
    scores = (utt[test_mask] @ cent.T).numpy()  # (U', S)
    same = spk[test_mask][:, None] == np.array(names)[None, :]
    eer, thr = equal_error_rate(scores[same], scores[~same])
    return {
        "split": split,
        "speakers": len(names),
        "n_enroll": n_enroll,
        "eer": eer,
        "threshold": thr,
        "n_genuine": int(same.sum()),
        "n_impostor": int((~same).sum()),
    }


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


def plot_confusion(conf, labels, path: str | os.PathLike, title: str = "confusion (utterances)") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.asarray(conf)
    n = len(labels)
    size = min(4 + 0.25 * n, 20)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(conf, cmap="Blues")
    if n <= 40:
        ax.set_xticks(range(n), labels, rotation=90)
        ax.set_yticks(range(n), labels)
        if n <= 12:
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def write_report(report: dict, path: str | os.PathLike) -> None:
    write_atomic(path, json.dumps(report, indent=2))
