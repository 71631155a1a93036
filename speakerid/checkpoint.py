"""Checkpoint files: one ``torch.save`` dict, loadable with ``torch.load(weights_only=True)``.

Layout (``speakerid-checkpoint-v2``)::

    format   "speakerid-checkpoint-v2"
    card     speakerid.card.ModelCard.to_dict(): model config, labels, front-end, calibration, fingerprint
    model    state dict of the unwrapped module (its fingerprint is the card's)
    ...      training state, free-form for the training loop: train_config, optimizer, scaler, rng, epoch,
             step, metrics, best, versions, ...

Everything is a tensor, number, string, list or dict, so no pickled code is ever executed. Write one with
:func:`save_checkpoint` (or :func:`make_checkpoint` + :func:`save_atomic`); read one with
:func:`load_checkpoint` + :func:`checkpoint_card`. ``speakerid-checkpoint-v1`` files (written before the card;
the shipped model is one) are converted on load by :func:`speakerid.card.card_from_v1`; any other format tag is
refused with a message naming it.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import torch

from .atomic import atomic_open
from .card import CardError, ModelCard, card_from_v1, fingerprint
from .models import SequenceClassifier, build_model

FORMAT = "speakerid-checkpoint-v2"
FORMAT_V1 = "speakerid-checkpoint-v1"
_V1_KEYS = ("model_config", "labels", "frontend", "calibration")  # moved into the card by v2

__all__ = [
    "FORMAT",
    "CheckpointError",
    "save_atomic",
    "safe_load",
    "make_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "checkpoint_card",
    "with_calibration",
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


def make_checkpoint(model, card: ModelCard, /, **state) -> dict:
    """The checkpoint dict of ``model`` (a module or its state dict) described by ``card``.

    The card's fingerprint is set from these weights; ``state`` (optimizer, epoch, metrics, ...) is stored
    as given. ``card`` may be built with ``ModelCard.build(model_config, labels, FrontEnd(crop=...))``."""
    weights = model.state_dict() if isinstance(model, torch.nn.Module) else model
    weights = {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in weights.items()}
    reserved = {"format", "card", "model"} & set(state)
    if reserved:
        raise ValueError(f"checkpoint state may not set {sorted(reserved)}")
    card = card.replace(fingerprint=fingerprint(weights))
    return {"format": FORMAT, "card": card.to_dict(), "model": weights, **state}


def save_checkpoint(path: str | os.PathLike, model, card: ModelCard, /, **state) -> None:
    """``save_atomic(make_checkpoint(model, card, **state), path)``."""
    save_atomic(make_checkpoint(model, card, **state), path)


def with_calibration(ckpt: dict, calibration) -> dict:
    """A copy of checkpoint dict ``ckpt`` whose card has ``calibration`` (a Calibration or its dict)."""
    from .card import Calibration

    if isinstance(calibration, dict):
        calibration = Calibration.from_dict(calibration)
    card = checkpoint_card(ckpt).replace(calibration=calibration)
    return {**ckpt, "card": card.to_dict()}


def _upgrade(ckpt: dict, path) -> dict:
    """v1 -> v2 (the card from ``card_from_v1``); the training state is kept as it was."""
    try:
        card = card_from_v1(ckpt, fingerprint(ckpt["model"]))
    except (CardError, KeyError) as e:
        raise CheckpointError(f"{path}: cannot convert this {FORMAT_V1} checkpoint ({e})") from e
    rest = {k: v for k, v in ckpt.items() if k not in _V1_KEYS and k not in ("format", "model")}
    return {"format": FORMAT, "card": card.to_dict(), "model": ckpt["model"], **rest}


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load and check a checkpoint (weights_only=True); a v1 file comes back converted to v2.

    Raises CheckpointError naming the file and problem (unknown format version, missing parts, a card that
    does not describe these weights)."""
    ckpt = safe_load(path, map_location)
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    if fmt == FORMAT_V1:
        for key in ("model_config", "model", "labels"):
            if key not in ckpt:
                raise CheckpointError(f"{path}: {FORMAT_V1} checkpoint is missing {key!r}")
        return _upgrade(ckpt, path)
    if fmt != FORMAT:
        found = "no format tag" if fmt is None else f"format {fmt!r}"
        raise CheckpointError(
            f"{path}: not a speakerid checkpoint this version can read ({found}; expected {FORMAT!r}, "
            f"or {FORMAT_V1!r} which is converted)"
        )
    for key in ("card", "model"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint is missing {key!r}")
    card = checkpoint_card(ckpt, path)
    if card.fingerprint != fingerprint(ckpt["model"]):
        raise CheckpointError(
            f"{path}: the weights do not match the card's fingerprint {card.fingerprint!r} (edited file?)"
        )
    return ckpt


def checkpoint_card(ckpt: dict, path: str | os.PathLike = "<checkpoint>") -> ModelCard:
    """The ModelCard of a checkpoint dict (v2 as from :func:`load_checkpoint`, or a v1 dict: converted)."""
    if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT_V1:
        ckpt = _upgrade(ckpt, path)
    try:
        return ModelCard.from_dict(ckpt["card"])
    except (CardError, KeyError) as e:
        raise CheckpointError(f"{path}: bad model card ({e})") from e


def model_from_checkpoint(ckpt: dict | str | os.PathLike, map_location="cpu") -> SequenceClassifier:
    """Rebuild the model from a checkpoint (v2 dict or path) without train.py. Returns it in eval mode."""
    name = "<checkpoint>"
    if not isinstance(ckpt, dict):
        name = str(ckpt)
        ckpt = load_checkpoint(ckpt, map_location)
    if ckpt.get("format") == FORMAT_V1:
        ckpt = _upgrade(ckpt, name)
    card = checkpoint_card(ckpt, name)
    try:
        model = build_model(card.model)
        model.load_state_dict(ckpt["model"])
    except (ValueError, RuntimeError, TypeError) as e:
        raise CheckpointError(f"{name}: weights do not match the stored model config ({e})") from e
    return model.eval()
