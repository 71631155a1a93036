"""Checkpoint files: one ``torch.save`` dict, loadable with ``torch.load(weights_only=True)``.

Contents: ``format``, ``model_config`` (dict), ``model`` (state dict of the unwrapped module), ``labels`` (class
names in index order), ``frontend`` ({sample_rate, crop}), ``train_config`` (dict), ``optimizer``/``scaler``
state, ``rng`` (torch CPU/CUDA generator states), ``epoch``, ``step``, ``step_in_epoch``, ``metrics`` (list of
per-epoch dicts), ``best`` (best validation accuracy), ``calibration`` ({threshold, eer} for "unknown"),
``versions``. Everything is a tensor, number, string, list or dict, so no pickled code is ever executed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from .atomic import atomic_open
from .models import ModelConfig, SequenceClassifier, build_model

FORMAT = "speakerid-checkpoint-v1"

__all__ = [
    "FORMAT",
    "CheckpointError",
    "save_atomic",
    "load_checkpoint",
    "model_from_checkpoint",
    "fingerprint",
]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and the problem."""


def save_atomic(obj, path: str | os.PathLike) -> None:
    """torch.save through :func:`speakerid.atomic.atomic_open`: never a half-written checkpoint."""
    with atomic_open(path) as f:
        torch.save(obj, f)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load and check a checkpoint (weights_only=True). Raises CheckpointError naming the file and problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = [ln for ln in lines if "WeightsUnpickler error" in ln or "invalid load key" in ln]
        reason = (detail or lines or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: not a readable speakerid checkpoint ({reason[:200]})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a speakerid checkpoint (missing format tag {FORMAT!r})")
    for key in ("model_config", "model", "labels"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint is missing {key!r}")
    return ckpt


def model_from_checkpoint(ckpt: dict | str | os.PathLike, map_location="cpu") -> SequenceClassifier:
    """Rebuild the model from a checkpoint (dict or path) without train.py. Returns it in eval mode."""
    name = "<checkpoint>"
    if not isinstance(ckpt, dict):
        name = str(ckpt)
        ckpt = load_checkpoint(ckpt, map_location)
    try:
        model = build_model(ModelConfig.from_dict(ckpt["model_config"]))
        model.load_state_dict(ckpt["model"])
    except (ValueError, RuntimeError, TypeError) as e:
        raise CheckpointError(f"{name}: weights do not match the stored model config ({e})") from e
    return model.eval()


def fingerprint(state_dict: dict) -> str:
    """A short hash of the weights, so a speaker registry is never scored with a different model."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        v = state_dict[k]
        h.update(k.encode())
        if torch.is_tensor(v):
            h.update(v.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:16]
