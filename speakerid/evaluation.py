"""Evaluation: crop- and utterance-level accuracy, per-speaker accuracy, confusion matrix, EER.

Dim legend: N crops, U utterances, K classes, D embedding size.

Two entry points:

- :func:`evaluate_files` (``speakerid evaluate``): each utterance of a split goes through the inference pipeline
  (``speakerid.pipeline.Identifier``, classes mode) from its **source file** -- the same decoding, speech
  detection, crops and vote as ``speakerid identify``, so both give the same answer per file (one number per
  model). Only when the source files are gone does it feed the prepared shards to the same pipeline instead
  (int16 samples; the report's ``decoded`` says which).
- :func:`evaluate` (training's validation and test report): fixed crops of the prepared shards, no speech
  detection: fast, and what the model was trained on, but not what a deployed model sees.
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
from .metrics import equal_error_rate

__all__ = [
    "predict_crops",
    "evaluate",
    "evaluate_files",
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


def _source_files(data: PreparedDataset, indices: list[int]) -> list[str] | None:
    """The original audio file of each utterance (``prep.json`` corpus root + manifest ``source``), or None
    when any of them is missing (data moved or deleted)."""
    from pathlib import Path

    root = Path((data.prep.get("corpus") or {}).get("root") or data.root)
    paths = [str(root / data.utterances[i].source) for i in indices]  # an absolute source stays as is
    return (
        paths if all(data.utterances[i].source for i in indices) and all(map(os.path.isfile, paths)) else None
    )


def evaluate_files(identifier, data: PreparedDataset, split: str = "test", workers: int = 2, progress=False):
    """Accuracy of ``identifier`` (a ``speakerid.pipeline.Identifier`` in classes mode) on one split, each
    utterance decoded from its source file by the pipeline (see the module docstring).

    Returns the report of :func:`evaluate` plus ``decoded`` ("source files" | "prepared shards"), ``files``
    (per utterance: path, speaker, predicted or error) and ``n_failed`` (utterances the pipeline refused, e.g.
    no speech: counted as wrong)."""
    if identifier.mode != "classes":
        raise ValueError("evaluate scores the model's own classes: use an Identifier with mode='classes'")
    indices = data.split(split)
    if not indices:
        raise ValueError(f"{data.root}: split {split!r} is empty")
    names = identifier.engine.labels
    if data.speakers != names:
        raise ValueError(
            f"{data.root} has speakers {data.speakers[:5]}... but the model was trained on {names[:5]}...; "
            "evaluate on data prepared with the same speakers"
        )
    sources = _source_files(data, indices)
    if sources is not None:
        items, decoded = sources, "source files"
    else:
        items = [(data.waveform(i), None) for i in indices]
        decoded = "prepared shards"
        if data.sample_rate != identifier.engine.sample_rate:
            raise ValueError(
                f"{data.root}: source files not found and the shards are at {data.sample_rate} Hz, not the "
                f"model's {identifier.engine.sample_rate} Hz"
            )
    K, U = len(names), len(indices)
    utt_y = torch.tensor([data.label(i) for i in indices])
    utt_logp = torch.zeros(U, K, dtype=torch.float64)
    votes = torch.zeros(U, K)
    crop_logp, crop_y, files = [], [], []
    results = identifier.identify_files(items, workers=workers)
    for pos, r in enumerate(tqdm(results, total=U, desc="evaluate", disable=not progress, leave=False)):
        u = data.utterances[indices[pos]]
        path = sources[pos] if sources is not None else u.utt_id
        if r.error is not None:
            files.append({"path": path, "speaker": u.speaker, "predicted": None, "error": r.error})
            continue
        lp = torch.from_numpy(r.prediction.crop_logp)  # (N, K)
        utt_logp[pos] = lp.mean(0)
        votes[pos] = F.one_hot(lp.argmax(1), K).float().sum(0)
        crop_logp.append(lp)
        crop_y.append(torch.full((len(lp),), int(utt_y[pos])))
        files.append({"path": path, "speaker": u.speaker, "predicted": r.prediction.speaker, "error": None})
    logp = torch.cat(crop_logp) if crop_logp else torch.zeros(0, K, dtype=torch.float64)
    y = torch.cat(crop_y) if crop_y else torch.zeros(0, dtype=torch.long)
    ok = torch.tensor([f["error"] is None for f in files])
    rep = _report(split, names, logp.float(), y, utt_logp.float(), votes, utt_y, identifier.engine.crop, ok)
    n_failed = int((~ok).sum())
    return rep | {"decoded": decoded, "n_failed": n_failed, "files": files}


def _topk_acc(logp: torch.Tensor, y: torch.Tensor, k: int, ok: torch.Tensor | None = None) -> float:
    """Fraction of rows whose label is among the k best; rows with ``ok`` False count as wrong."""
    if not len(y):
        return float("nan")
    k = min(k, logp.shape[1])
    hit = (logp.topk(k, dim=1).indices == y[:, None]).any(1)
    return (hit if ok is None else hit & ok).float().mean().item()


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
    return _report(split, data.speakers, logp, y, utt_logp, votes, utt_y, crop)


def _report(split, names, logp, y, utt_logp, votes, utt_y, crop, ok=None) -> dict:
    """Crop log-probs (N, K) with labels (N,), utterance scores (U, K) and crop votes (U, K) with labels (U,)
    -> the report dict. ``ok`` (U,) bool: utterances that were scored (the others count as wrong)."""
    U, K = utt_logp.shape
    ok = torch.ones(U, dtype=torch.bool) if ok is None else ok
    utt_pred = torch.where(ok, utt_logp.argmax(1), -1)
    conf = torch.zeros(K, K, dtype=torch.long)
    conf.index_put_((utt_y[ok], utt_pred[ok]), torch.ones(int(ok.sum()), dtype=torch.long), accumulate=True)
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
        "loss": F.nll_loss(logp, y).item() if len(y) else float("nan"),
        "crop_top1": _topk_acc(logp, y, 1),
        "crop_top5": _topk_acc(logp, y, 5),
        "utt_top1": _topk_acc(utt_logp, utt_y, 1, ok),
        "utt_top5": _topk_acc(utt_logp, utt_y, 5, ok),
        "utt_majority_acc": ((votes.argmax(1) == utt_y) & ok).float().mean().item(),
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
