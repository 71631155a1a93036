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
import pickle
import warnings
from pathlib import Path

import torch

from .atomic import atomic_open
from .models import ModelConfig, SequenceClassifier, build_model

FORMAT = "speakerid-checkpoint-v1"

__all__ = [
    "FORMAT",
    "CheckpointError",
    "save_atomic",
    "safe_load",
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


def _unsafe_reason(e: Exception) -> str:
    """torch's own reason for refusing a file, without its boilerplate (which suggests weights_only=False)."""
    boiler = (
        "Weights only load failed",
        "In PyTorch",
        "Re-running `torch.load`",
        "Check the documentation of torch.load",
        "Please file an issue",
    )
    if not isinstance(e, pickle.UnpicklingError):  # not a pickle/zip torch can read at all
        return f"cannot be read by torch.load ({type(e).__name__}: {e})" if str(e) else type(e).__name__
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    reason = []
    for ln in lines:
        if "WeightsUnpickler error:" in ln:  # "Please file an issue ...: WeightsUnpickler error: <reason>"
            ln = ln.split("WeightsUnpickler error:", 1)[1].strip()
        elif ln.startswith(boiler):
            continue
        if ln:
            reason.append(ln)
    return " ".join(reason).rstrip(".") if reason else type(e).__name__


def safe_load(path: str | os.PathLike, map_location="cpu"):
    """``torch.load(path, weights_only=True)``; a refused or unreadable file raises CheckpointError.

    The message is ``"<path>: not a speakerid checkpoint or not safe to load: <torch's reason>; it was not
    executed"``: weights_only never runs code from the file, whatever it contains.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, KeyError... for bad files
        raise CheckpointError(
            f"{path}: not a speakerid checkpoint or not safe to load: {_unsafe_reason(e)}; it was not executed"
        ) from e


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load and check a checkpoint (weights_only=True). Raises CheckpointError naming the file and problem."""
    ckpt = safe_load(path, map_location)
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
