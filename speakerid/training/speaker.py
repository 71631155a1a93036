"""Speaker-ID training: its config, its task adapter for the one loop (:mod:`.loop`), the budget it will spend,
and the final artifacts (collapse verdict, "unknown" calibration and plots come from :mod:`.report`).

``train.py`` is the thin entry point; everything here is importable and testable.

Reproducibility: the shuffle order of epoch e is a permutation seeded by (seed, e), and a training crop's position
by (seed, e, item), so the data stream never depends on global RNG state; ``--resume`` continues exactly (see
:mod:`.loop`).

Budget: an epoch draws ``max(1, length // crop)`` random crops from every training clip (``epoch_crops="audio"``),
so it sees about as much audio as the training split holds whatever the clip length (one 0.26 s crop per 3.5 s
sentence made "30 epochs" mean 270 steps); ``epoch_crops="clips"`` is one crop per clip. :func:`budget` says how
many optimizer steps and seconds of audio a config will use; ``--show-config`` and the first log line print it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..audio import CROP_SAMPLES
from ..augment import AugmentConfig, Augmenter
from ..card import FrontEnd, ModelCard
from ..checkpoint import (
    FORMAT,
    checkpoint_card,
    load_checkpoint,
    make_checkpoint,
    save_atomic,
    with_calibration,
)
from ..data import PreparedDataset, RandomCropDataset
from ..evaluation import evaluate, plot_confusion, write_report
from ..losses import aam_softmax
from ..models import ModelConfig, build_model, count_parameters, preset
from ..models.classifier import COSINE_SCALE
from .loop import LoopSettings, finish_distributed, fit, init_weights_
from .report import _format_row, _plot_curves, _write_metrics_csv, calibrate_threshold, detect_collapse

__all__ = [
    "TrainConfig",
    "train",
    "budget",
    "format_budget",
    "describe_model",
    "LOSSES",
]


@dataclass
class TrainConfig:
    """One speaker-ID experiment. Every field can be overridden from the command line (--key value)."""

    name: str = "custom"
    data: str = ""  # prepared dataset folder (python -m data_prep ...)
    out: str = ""  # run folder (default: runs/<name>)
    model: str = "dilated-gru-l0-3"  # a preset from speakerid.models.PRESETS
    hidden: list[int] = field(default_factory=list)  # overrides of the preset (empty = keep)
    dilations: list[int] = field(default_factory=list)
    readout: str = ""  # override of the preset's readout: fusion | mean | mean-fusion | stats (empty = keep)
    feature_norm: str = ""  # override of the MFCC normalisation: batch | layer (empty = keep)
    n_mfcc: int = 0  # override of the MFCC size (0 = keep; also sets the model's input size)
    f_max: float = 0.0  # override: MFCC mel bands up to this frequency (0 = keep)
    head: str = ""  # override of the head: linear | cosine (empty = keep; loss aam needs cosine)
    dropout: float = -1.0  # override of the dropout between recurrent layers (< 0 = keep the preset's)
    # Open-set embedding recipe (speakerid.losses, speakerid.augment; all off by default).
    loss: str = (
        "ce"  # a key of LOSSES: ce (softmax cross-entropy) | aam (additive angular margin, cosine head)
    )
    aam_margin: float = 0.2
    crop_min: int = 0  # > 0: each batch's crops are cut to a length drawn from [crop_min, crop]
    aug_speed: float = 0.0  # speed factor in [1 - this, 1 + this] (tempo, pitch and formants)
    aug_pitch: float = 0.0  # pitch shift in [-this, this] semitones
    aug_vtlp: float = 0.0  # vocal-tract-length warp alpha in [1 - this, 1 + this]
    aug_noise_snr_db: float = 0.0  # > 0: coloured noise at an SNR in [this, this + 30] dB
    aug_reverb: float = 0.0  # probability of a synthetic room response (RT60 0.2-0.8 s)
    aug_gain_db: float = 0.0  # level change in [-this, this] dB
    aug_tilt: float = 0.0  # spectral tilt coefficient in [-this, this] (vocal effort; < 1)
    voices: int = 0  # > 1: each speaker becomes this many pseudo-voice classes (fixed pitch/warp per voice)
    voice_pitch: float = 4.0  # pseudo-voices spread over [-this, this] semitones ...
    voice_vtlp: float = 0.15  # ... and alpha in [1 - this, 1 + this]
    crop: int = CROP_SAMPLES  # samples per training crop (8192 = 0.5 s at 16 kHz, the paper's)
    epoch_crops: str = "audio"  # audio: max(1, length // crop) crops per clip and epoch; clips: one per clip
    noise_snr_db: float = 0.0  # > 0: add white noise to each training crop at SNR in [this, this + 30] dB
    batch_size: int = 128  # global batch (split across DDP processes)
    lr: float = 1e-3  # RMSProp, as in the paper
    rms_alpha: float = 0.9  # RMSProp decay
    optimizer: str = "rmsprop"  # rmsprop | adam (speakerid.training.loop.OPTIMIZERS)
    weight_decay: float = 0.0
    lr_schedule: str = "constant"  # constant | cosine
    init: str = "default"  # default (PyTorch's uniform, trains stably) | normal (the paper's N(0, 1))
    epochs: int = 30
    max_steps: int = 0  # stop after this many optimizer steps (0 = no limit)
    clip_grad: float = 1.0  # max gradient norm (0 = off); the paper used none
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # auto (on with CUDA) | on | off
    eval_every: int = 1  # epochs
    ckpt_every: int = 200  # optimizer steps between last.pt saves (0 = only at epoch ends)
    val_max_crops: int = 8  # fixed crops per validation utterance
    threads: int = 0  # torch CPU threads (0 = torch's default)
    init_from: str = ""  # fine-tune: start from this checkpoint's weights (same parameter names and shapes)
    collapse_min_steps: int = (
        50  # validation at chance after this many steps = collapsed (see detect_collapse)
    )

    def run_dir(self) -> Path:
        return Path(self.out or os.path.join("runs", self.name))

    def model_config(self, n_classes: int) -> ModelConfig:
        """The model this config builds; its name is the preset's when unchanged, else what it is."""
        over = {"n_classes": n_classes * max(1, self.voices)}
        if self.readout:
            over["readout"] = self.readout
        if self.feature_norm:
            over["feature_norm"] = self.feature_norm
        if self.n_mfcc:
            over.update(n_mfcc=self.n_mfcc, input_size=self.n_mfcc)
        if self.f_max:
            over["f_max"] = self.f_max
        if self.head:
            over["head"] = self.head
        if self.dropout >= 0:
            over["dropout"] = self.dropout
        if self.hidden:
            over["hidden"] = list(self.hidden)
        if self.dilations:
            over["dilations"] = list(self.dilations)
        if "hidden" in over and "dilations" not in over:
            over["dilations"] = preset(self.model).dilations[: len(over["hidden"])]
        if "dilations" in over and "hidden" not in over:
            over["hidden"] = [preset(self.model).hidden[0]] * len(over["dilations"])
        mc = preset(self.model, **over)
        same = ("n_classes", "name")
        if {**mc.to_dict(), **dict.fromkeys(same)} != {**preset(self.model).to_dict(), **dict.fromkeys(same)}:
            mc.name = describe_model(mc)
        return mc


def describe_model(mc: ModelConfig) -> str:
    """What a model config builds, in words: ``mfcc dilated GRU 4x64, dilations 1..8, mean readout``."""
    if mc.arch == "cnn":
        kind = "dilated CNN"
    else:
        cell = mc.cell.upper() if mc.cell != "rnn" else "RNN"
        kind = (
            f"{'dilated' if max(mc.dilations) > 1 else 'stacked'} {cell}" if len(mc.dilations) > 1 else cell
        )
    h = mc.hidden
    size = f"{len(h)}x{h[0]}" if len(set(h)) == 1 else "-".join(map(str, h))
    d = mc.dilations
    dil = f"dilations {d[0]}..{d[-1]}" if len(d) > 1 else f"dilation {d[0]}"
    dil = dil if max(d) > 1 or len(d) == 1 else "no dilation"
    head = ", cosine head" if getattr(mc, "head", "linear") == "cosine" else ""
    drop = f", dropout {mc.dropout:g}" if mc.dropout else ""
    return f"{mc.frontend} {kind} {size}, {dil}, {mc.readout} readout{head}{drop}"


# --------------------------------------------------------------------------------------------------------------
# Losses: (model, x (B, T), y (B,), cfg) -> (mean loss, logits (B, K)). Register one here, select it with --loss.


def _cross_entropy(model, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig):
    logits = model(x)  # (B, K)
    return F.cross_entropy(logits.float(), y), logits


def _aam(model, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig):
    logits = model(x)  # (B, K): a cosine head's logits are COSINE_SCALE * cos
    return aam_softmax(logits.float() / COSINE_SCALE, y, cfg.aam_margin, COSINE_SCALE), logits


LOSSES: dict[str, Callable] = {"ce": _cross_entropy, "aam": _aam}


def _check_recipe(cfg: TrainConfig, mcfg: ModelConfig) -> None:
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be {' or '.join(LOSSES)}, got {cfg.loss!r}")
    if cfg.loss == "aam" and mcfg.head != "cosine":
        raise ValueError("loss aam needs a cosine head (--head cosine)")
    if cfg.crop_min and not 0 < cfg.crop_min <= cfg.crop:
        raise ValueError(f"crop_min must be in 1..crop={cfg.crop}, got {cfg.crop_min}")
    if not 0.0 <= cfg.aug_tilt < 1.0:
        raise ValueError(f"aug_tilt must be in [0, 1), got {cfg.aug_tilt}")


def _augment_config(cfg: TrainConfig) -> AugmentConfig:
    return AugmentConfig(
        speed=cfg.aug_speed,
        pitch=cfg.aug_pitch,
        vtlp=cfg.aug_vtlp,
        noise_snr_db=cfg.aug_noise_snr_db,
        reverb=cfg.aug_reverb,
        gain_db=cfg.aug_gain_db,
        tilt=cfg.aug_tilt,
    )


def _batch_length(cfg: TrainConfig, step: int) -> int:
    """Crop length of optimizer step ``step``: [crop_min, crop] seeded by (seed, step), or crop."""
    if not cfg.crop_min:
        return cfg.crop
    return int(np.random.default_rng((cfg.seed, 7, step)).integers(cfg.crop_min, cfg.crop + 1))


class _PerSpeaker(torch.nn.Module):
    """Evaluation view of a pseudo-voice model: logits (B, K * V) -> (B, K) by log-sum-exp over voices."""

    def __init__(self, model, voices: int):
        super().__init__()
        self.model, self.voices = model, voices

    def forward_with_embedding(self, x):
        logits, emb = self.model.forward_with_embedding(x)
        return logits.unflatten(1, (-1, self.voices)).logsumexp(-1), emb


# --------------------------------------------------------------------------------------------------------------
# Budget


def epoch_items(data: PreparedDataset, indices: list[int], crop: int, mode: str) -> list[int]:
    """The utterance index of every training crop of one epoch (an utterance repeated once per crop)."""
    if mode == "clips":
        return list(indices)
    if mode != "audio":
        raise ValueError(f"epoch_crops must be audio or clips, got {mode!r}")
    return [i for i in indices for _ in range(max(1, data.utterances[i].length // crop))]


def budget(cfg: TrainConfig, data: PreparedDataset | None = None) -> dict:
    """What a run of ``cfg`` will spend: optimizer steps, crops, seconds of audio, and the training audio.

    Needs the prepared dataset (``cfg.data``, or ``data``); raises FileNotFoundError when it is missing.
    """
    data = data if data is not None else PreparedDataset(cfg.data)
    train_idx = data.split("train")
    items = epoch_items(data, train_idx, cfg.crop, cfg.epoch_crops)
    steps_per_epoch = len(items) // cfg.batch_size or 1
    steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)
    crops = steps * cfg.batch_size
    return {
        "steps": steps,
        "steps_per_epoch": steps_per_epoch,
        "epochs": math.ceil(steps / steps_per_epoch),
        "crops": crops,
        "audio_s": round(crops * cfg.crop / data.sample_rate, 1),
        "train_clips": len(train_idx),
        "train_audio_s": round(sum(data.utterances[i].length for i in train_idx) / data.sample_rate, 1),
        "crops_per_epoch": len(items),
    }


def format_budget(b: dict) -> str:
    return (
        f"budget: {b['steps']} optimizer steps ({b['epochs']} epochs x {b['steps_per_epoch']} steps), "
        f"{b['crops']} crops = {b['audio_s']:.0f} s of audio; training split: {b['train_clips']} clips, "
        f"{b['train_audio_s']:.0f} s ({b['crops_per_epoch']} crops per epoch)"
    )


# --------------------------------------------------------------------------------------------------------------
# The adapter


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


class SpeakerAdapter:
    """Speaker ID for :func:`speakerid.training.loop.fit`: random crops in, cross-entropy (or LOSSES) out.

    With ``voices`` > 1 each speaker is several pseudo-voice classes; :meth:`scorer` then sums them back."""

    reports_accuracy = True

    def __init__(self, cfg: TrainConfig, data: PreparedDataset, steps_per_epoch: int):
        self.cfg, self.data, self.steps_per_epoch = cfg, data, steps_per_epoch
        self.mcfg = cfg.model_config(len(data.labels))
        _check_recipe(cfg, self.mcfg)
        self.loss_fn = LOSSES[cfg.loss]
        self.voices = voices = max(1, cfg.voices)
        self.labels = (
            data.speakers if voices == 1 else [f"{s}/voice{v}" for s in data.speakers for v in range(voices)]
        )
        aug = _augment_config(cfg)
        items = epoch_items(data, data.split("train"), cfg.crop, cfg.epoch_crops)
        self.dataset = RandomCropDataset(
            data,
            items,
            cfg.crop,
            seed=cfg.seed,
            noise_snr_db=cfg.noise_snr_db,
            augment=Augmenter(aug, data.sample_rate) if aug.enabled or voices > 1 else None,
            voices=voices,
            voice_range=(cfg.voice_pitch, cfg.voice_vtlp),
        )
        self.has_valid = bool(data.split("valid"))
        self.n_parameters = count_parameters(build_model(self.mcfg))
        self._order: tuple[int, list[int]] | None = None

    def build_model(self):
        model = init_weights_(build_model(self.mcfg), self.cfg.init)
        if self.mcfg.head == "cosine":  # AAM-softmax ArcFace init: unit-scale class centres
            torch.nn.init.normal_(model.head.weight, 0.0, 0.01)
        if self.cfg.init_from:
            model.load_state_dict(load_checkpoint(self.cfg.init_from, map_location="cpu")["model"])
        return model

    def scorer(self, model):
        """What evaluation sees: the model, or its per-speaker view ((B, K) logits) for pseudo-voices."""
        return model if self.voices == 1 else _PerSpeaker(model, self.voices)

    def batch(self, epoch: int, b: int, rank: int, world: int):
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, _epoch_order(len(self.dataset), self.cfg.seed, epoch))
            self.dataset.set_epoch(epoch)
        bs, local = self.cfg.batch_size, self.cfg.batch_size // world
        mine = self._order[1][b * bs : (b + 1) * bs][rank * local : (rank + 1) * local]
        items = [self.dataset[k] for k in mine]
        x = torch.stack([it[0] for it in items])  # (B, crop)
        y = torch.tensor([it[1] for it in items])  # (B,)
        step = epoch * self.steps_per_epoch + b
        return x[:, : _batch_length(self.cfg, step)], y  # (B, L): varied lengths when crop_min > 0

    def loss(self, model, batch, device):
        x, y = (t.to(device) for t in batch)
        loss, logits = self.loss_fn(model, x, y, self.cfg)
        return loss, len(y), int((logits.argmax(1) == y).sum())

    def evaluate(self, model, device, final: bool) -> dict:
        if not self.has_valid:
            return {}
        c = self.cfg
        rep = evaluate(
            self.scorer(model), self.data, "valid", c.crop, device=device, max_crops=c.val_max_crops
        )
        return {"val_loss": rep["loss"], "val_crop_top1": rep["crop_top1"], "val_utt_top1": rep["utt_top1"]}

    def score(self, row: dict) -> float:
        return row.get("val_crop_top1", -row["train_loss"])

    def checkpoint_meta(self) -> dict:
        return {"n_parameters": self.n_parameters}

    def make_checkpoint(self, weights: dict, state: dict) -> dict:
        """The checkpoint (speakerid.checkpoint format, with its model card) of these weights and loop state."""
        card = ModelCard.build(self.mcfg, self.labels, FrontEnd(crop=self.cfg.crop))
        return make_checkpoint(weights, card, **state)

    def check_resume(self, ckpt: dict, path: Path) -> None:
        if list(checkpoint_card(ckpt).labels) != self.labels:
            raise ValueError(f"{path} was trained on other speakers than {self.cfg.data}; not resuming")

    def state(self):
        return None

    def load_state(self, state) -> None:
        pass


def train(
    cfg: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    stop_after_steps: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Train one experiment; returns the final summary. ``stop_after_steps`` simulates a crash (for tests).

    The summary has ``budget``, ``metrics`` (one row per epoch), ``collapse`` (see :func:`detect_collapse`),
    ``calibration`` (None for a collapsed model: no threshold is calibrated from it) and ``test``.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    log = log or tqdm.write
    run = cfg.run_dir()
    data = PreparedDataset(cfg.data)
    if not data.split("train"):
        raise ValueError(f"{cfg.data}: the train split is empty")
    b = budget(cfg, data)
    adapter = SpeakerAdapter(cfg, data, b["steps_per_epoch"])
    settings = LoopSettings(
        steps=b["steps"],
        steps_per_epoch=b["steps_per_epoch"],
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        optimizer=cfg.optimizer,
        rms_alpha=cfg.rms_alpha,
        weight_decay=cfg.weight_decay,
        lr_schedule=cfg.lr_schedule,
        clip_grad=cfg.clip_grad,
        eval_every=cfg.eval_every,
        ckpt_every=cfg.ckpt_every,
        amp=cfg.amp,
        device=cfg.device,
        seed=cfg.seed,
        checkpoint_format=FORMAT,
    )
    is_main = int(os.environ.get("RANK", "0")) == 0
    if is_main:
        log(f"{cfg.name}: {adapter.mcfg.name}; {format_budget(b)}")
    tb = None

    def on_row(row: dict, r) -> None:
        _write_metrics_csv(r.rows, run / "metrics.csv")
        _plot_curves(r.rows, run / "curves.png")
        if tb is not None:
            for k, v in row.items():
                if k != "epoch":
                    tb.add_scalar(k, v, row["epoch"])
        log(_format_row(row))

    if is_main:
        try:
            from torch.utils.tensorboard import SummaryWriter

            run.mkdir(parents=True, exist_ok=True)
            tb = SummaryWriter(str(run / "tb"))
        except Exception:  # TensorBoard is optional
            tb = None
    try:
        r = fit(
            adapter,
            settings,
            run,
            train_config=asdict(cfg),
            resume=resume,
            progress=progress,
            desc=cfg.name,
            stop_after_steps=stop_after_steps,
            on_row=on_row,
            log=log,
        )
    finally:
        if tb is not None:
            tb.close()
    if r.stopped:
        return {"stopped_at_step": r.step}
    model, device = adapter.scorer(r.model), r.device
    summary = {
        "run": str(run),
        "model": adapter.mcfg.name,
        "budget": b,
        "epochs": r.epoch,
        "steps": r.step,
        "metrics": r.rows,
        "n_parameters": count_parameters(r.model),
    }
    if r.rank == 0:
        # Final artifacts: collapse check, calibrate "unknown" (not from a collapsed model), test report.
        split = "valid" if data.split("valid") else "test"
        rep = evaluate(model, data, split, cfg.crop, device=device, max_crops=cfg.val_max_crops)
        collapse = detect_collapse(rep, r.step, cfg.collapse_min_steps)
        summary["collapse"] = collapse
        cal = (
            None if collapse["collapsed"] else calibrate_threshold(model, data, device=device, crop=cfg.crop)
        )
        for p in (run / "best.pt", run / "last.pt"):
            if p.is_file():
                ck = {**load_checkpoint(p), "collapse": collapse}
                save_atomic(with_calibration(ck, cal) if cal is not None else ck, p)
        summary["calibration"] = cal
        if data.split("test"):
            rep = evaluate(model, data, "test", cfg.crop, device=device, progress=progress)
            plot_confusion(rep["confusion"], rep["labels"], run / "confusion.png")
            write_report(rep, run / "test_report.json")
            summary["test"] = {k: rep[k] for k in ("crop_top1", "crop_top5", "utt_top1", "utt_top5", "loss")}
        write_report(summary, run / "summary.json")
        if collapse["collapsed"]:
            log(
                f"WARNING: {cfg.name} COLLAPSED: "
                + "; ".join(collapse["reasons"])
                + " (no threshold calibrated)"
            )
    finish_distributed()
    return summary
