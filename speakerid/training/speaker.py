"""Speaker-ID training: its config, its task adapter for the one loop (:mod:`.loop`), the budget it will spend,
collapse detection, "unknown" calibration, and the final artifacts (metrics, plots, test report).

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

import csv
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..atomic import atomic_open
from ..audio import CROP_SAMPLES
from ..checkpoint import FORMAT, load_checkpoint, save_atomic
from ..data import PreparedDataset, RandomCropDataset
from ..evaluation import equal_error_rate, evaluate, plot_confusion, predict_crops, write_report
from ..models import ModelConfig, build_model, count_parameters, preset
from .loop import LoopSettings, finish_distributed, fit, init_weights_

__all__ = [
    "TrainConfig",
    "train",
    "budget",
    "format_budget",
    "detect_collapse",
    "calibrate_threshold",
    "describe_model",
    "LOSSES",
    "AUGMENTS",
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
    readout: str = ""  # override of the preset's readout: fusion | mean (empty = keep)
    crop: int = CROP_SAMPLES  # samples per training crop (8192 = 0.5 s at 16 kHz, the paper's)
    epoch_crops: str = "audio"  # audio: max(1, length // crop) crops per clip and epoch; clips: one per clip
    noise_snr_db: float = 0.0  # > 0: add white noise to each training crop at SNR in [this, this + 30] dB
    augment: str = ""  # a key of AUGMENTS applied to each training batch (empty = none)
    loss: str = "ce"  # a key of LOSSES
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
    collapse_min_steps: int = (
        50  # validation at chance after this many steps = collapsed (see detect_collapse)
    )

    def run_dir(self) -> Path:
        return Path(self.out or os.path.join("runs", self.name))

    def model_config(self, n_classes: int) -> ModelConfig:
        """The model this config builds; its name is the preset's when unchanged, else what it is."""
        over = {"n_classes": n_classes}
        if self.readout:
            over["readout"] = self.readout
        if self.hidden:
            over["hidden"] = list(self.hidden)
        if self.dilations:
            over["dilations"] = list(self.dilations)
        if "hidden" in over and "dilations" not in over:
            over["dilations"] = preset(self.model).dilations[: len(over["hidden"])]
        if "dilations" in over and "hidden" not in over:
            over["hidden"] = [preset(self.model).hidden[0]] * len(over["dilations"])
        mc = preset(self.model, **over)
        base = preset(self.model)
        if (mc.hidden, mc.dilations, mc.readout) != (base.hidden, base.dilations, base.readout):
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
    return f"{mc.frontend} {kind} {size}, {dil}, {mc.readout} readout"


# --------------------------------------------------------------------------------------------------------------
# Hooks: a loss maps (model, x (B, T), y (B,)) -> (mean loss, logits (B, K)); an augmentation maps a training batch
# x (B, T) and a torch.Generator to a new x (B, T). Register one here and select it with --loss / --augment.


def _cross_entropy(model, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(x)  # (B, K)
    return F.cross_entropy(logits.float(), y), logits


LOSSES: dict[str, Callable] = {"ce": _cross_entropy}
AUGMENTS: dict[str, Callable] = {}


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
# Collapse


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


# --------------------------------------------------------------------------------------------------------------
# The adapter


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


class SpeakerAdapter:
    """Speaker ID for :func:`speakerid.training.loop.fit`: random crops in, cross-entropy (or LOSSES) out."""

    reports_accuracy = True

    def __init__(self, cfg: TrainConfig, data: PreparedDataset, steps_per_epoch: int):
        self.cfg, self.data, self.steps_per_epoch = cfg, data, steps_per_epoch
        if cfg.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {cfg.loss!r}")
        if cfg.augment and cfg.augment not in AUGMENTS:
            raise ValueError(
                f"augment must be one of {', '.join(AUGMENTS) or '(none registered)'}, got {cfg.augment!r}"
            )
        self.loss_fn = LOSSES[cfg.loss]
        self.augment = AUGMENTS.get(cfg.augment)
        items = epoch_items(data, data.split("train"), cfg.crop, cfg.epoch_crops)
        self.dataset = RandomCropDataset(data, items, cfg.crop, seed=cfg.seed, noise_snr_db=cfg.noise_snr_db)
        self.mcfg = cfg.model_config(len(data.labels))
        self.has_valid = bool(data.split("valid"))
        self.n_parameters = count_parameters(build_model(self.mcfg))
        self._order: tuple[int, list[int]] | None = None

    def build_model(self):
        return init_weights_(build_model(self.mcfg), self.cfg.init)

    def batch(self, epoch: int, b: int, rank: int, world: int):
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, _epoch_order(len(self.dataset), self.cfg.seed, epoch))
            self.dataset.set_epoch(epoch)
        bs, local = self.cfg.batch_size, self.cfg.batch_size // world
        mine = self._order[1][b * bs : (b + 1) * bs][rank * local : (rank + 1) * local]
        items = [self.dataset[k] for k in mine]
        x = torch.stack([it[0] for it in items])  # (B, T)
        y = torch.tensor([it[1] for it in items])  # (B,)
        if self.augment is not None:
            x = self.augment(x, torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch * 10_007 + b))
        return x, y

    def loss(self, model, batch, device):
        x, y = (t.to(device) for t in batch)
        loss, logits = self.loss_fn(model, x, y)
        return loss, len(y), int((logits.argmax(1) == y).sum())

    def evaluate(self, model, device, final: bool) -> dict:
        if not self.has_valid:
            return {}
        c = self.cfg
        rep = evaluate(model, self.data, "valid", c.crop, device=device, max_crops=c.val_max_crops)
        return {"val_loss": rep["loss"], "val_crop_top1": rep["crop_top1"], "val_utt_top1": rep["utt_top1"]}

    def score(self, row: dict) -> float:
        return row.get("val_crop_top1", -row["train_loss"])

    def checkpoint_meta(self) -> dict:
        return {
            "model_config": self.mcfg.to_dict(),
            "labels": self.data.speakers,
            "frontend": {"sample_rate": self.data.sample_rate, "crop": self.cfg.crop},
            "n_parameters": self.n_parameters,
        }

    def check_resume(self, ckpt: dict, path: Path) -> None:
        if ckpt.get("labels") != self.data.speakers:
            raise ValueError(f"{path} was trained on other speakers than {self.cfg.data}; not resuming")

    def state(self):
        return None

    def load_state(self, state) -> None:
        pass


# --------------------------------------------------------------------------------------------------------------


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
    model, device = r.model, r.device
    summary = {
        "run": str(run),
        "model": adapter.mcfg.name,
        "budget": b,
        "epochs": r.epoch,
        "steps": r.step,
        "metrics": r.rows,
        "n_parameters": count_parameters(model),
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
                ck = load_checkpoint(p)
                ck["collapse"] = collapse
                if cal is not None:
                    ck["calibration"] = cal
                else:
                    ck.pop("calibration", None)
                save_atomic(ck, p)
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
