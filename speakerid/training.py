"""Speaker-ID training: config, loop, checkpoints, exact resume, metrics/plots, DDP via torchrun.

``train.py`` is the thin entry point; everything here is importable and testable.

Reproducibility: the shuffle order of epoch e is a permutation seeded by (seed, e), and a training crop's position
by (seed, e, item), so the data stream never depends on global RNG state or worker count. A checkpoint stores
(epoch, step_in_epoch), optimizer/scaler state and the torch RNG states; ``--resume`` skips the batches already
seen in the interrupted epoch and continues with the same loss curve as an uninterrupted run (on CPU).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from . import __version__
from .atomic import atomic_open
from .audio import CROP_SAMPLES
from .checkpoint import FORMAT, load_checkpoint, save_atomic
from .data import PreparedDataset, RandomCropDataset
from .evaluation import equal_error_rate, evaluate, plot_confusion, predict_crops, write_report
from .models import ModelConfig, build_model, count_parameters, preset

__all__ = ["TrainConfig", "CONFIGS", "get_config", "train", "calibrate_threshold"]


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
    noise_snr_db: float = 0.0  # > 0: add white noise to each training crop at SNR in [this, this + 30] dB
    batch_size: int = 128  # global batch (split across DDP processes)
    lr: float = 1e-3  # RMSProp, as in the paper
    rms_alpha: float = 0.9  # RMSProp decay
    optimizer: str = "rmsprop"  # rmsprop | adam
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
    dil = (
        f"dilations {mc.dilations[0]}..{mc.dilations[-1]}"
        if len(mc.dilations) > 1
        else f"dilation {mc.dilations[0]}"
    )
    return f"{mc.frontend} {kind} {size}, {dil}, {mc.readout} readout"


def _vctk(name, model, **kw):
    return TrainConfig(name=f"vctk-{name}", model=model, **kw)


def _fsdd(name, model, **kw):
    kw.setdefault("data", "data/fsdd")
    return TrainConfig(name=f"fsdd-{name}", model=model, **kw)


CONFIGS: dict[str, TrainConfig] = {
    c.name: c
    for c in [
        # Table 3 of the paper, with its protocol (RMSProp 1e-3 / 0.9, batch 128, 8192-sample crops).
        _vctk("dilated-gru-l0-3", "dilated-gru-l0-3"),
        _vctk("dilated-gru-l0-5", "dilated-gru-l0-5"),
        _vctk("fused-gru-8", "fused-gru-8"),
        _vctk("fused-gru-32", "fused-gru-32"),
        _vctk("mfcc-gru-5x20", "mfcc-gru-5x20"),
        _vctk("mfcc-gru-1x128", "mfcc-gru-1x128"),
        # The FSDD speaker task (6 speakers) and the shipped default model, sized for a 2-core CPU.
        # FSDD clips average 0.44 s, so 4096-sample (0.26 s) crops replace the paper's 8192; optimizer and
        # readout stay the paper's. Epochs are what 2 CPU cores allow (see README for what was actually run).
        _fsdd("dilated-gru-l0-3", "dilated-gru-l0-3", crop=4096, batch_size=32, epochs=8, threads=1),
        _fsdd("fused-gru-8", "fused-gru-8", crop=4096, batch_size=32, epochs=8, threads=1),
        _fsdd("mfcc-gru-1x128", "mfcc-gru-1x128", crop=4096, batch_size=32, epochs=20, threads=1),
        _fsdd(
            "mfcc-dilated-gru",  # MFCC front-end + dilated GRU over frames: ~10x cheaper than raw on CPU
            "mfcc-gru-5x20",
            hidden=[64] * 4,
            dilations=[1, 2, 4, 8],
            readout="mean",
            crop=4096,
            noise_snr_db=20.0,
            batch_size=32,
            epochs=30,
            lr_schedule="cosine",
            optimizer="adam",
            lr=3e-3,
            threads=1,
        ),
        _fsdd(
            "raw-dilated-gru",  # a raw-waveform dilated GRU small enough to train on 2 CPU cores
            "dilated-gru-l0-3",
            hidden=[40] * 6,
            dilations=[8, 16, 32, 64, 128, 256],
            readout="mean",
            crop=4096,
            batch_size=32,
            epochs=16,
            lr_schedule="cosine",
            optimizer="adam",
            lr=3e-3,
            threads=1,
        ),
    ]
}


# The shipped default model (speakerid/pretrained/default) was trained with exactly these settings.
CONFIGS["fsdd-default"] = dataclasses.replace(CONFIGS["fsdd-mfcc-dilated-gru"], name="fsdd-default")


def get_config(name: str) -> TrainConfig:
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; available: {', '.join(CONFIGS)}")
    return dataclasses.replace(CONFIGS[name])


# --------------------------------------------------------------------------------------------------------------
# distributed helpers (torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; a plain run is world size 1)


def _dist_setup(device: torch.device) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _resolve_device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    return torch.device(cfg.device)


def _init_weights(model: torch.nn.Module, how: str) -> None:
    if how == "normal":  # the paper: every weight matrix ~ N(0, 1)
        for name, p in model.named_parameters():
            if p.dim() >= 2 and "fusion" not in name:
                torch.nn.init.normal_(p, 0.0, 1.0)
    elif how != "default":
        raise ValueError(f"init must be 'default' or 'normal', got {how!r}")


def _make_optimizer(cfg: TrainConfig, params):
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.rms_alpha, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be rmsprop or adam, got {cfg.optimizer!r}")


def _lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    if cfg.lr_schedule == "cosine" and total > 0:
        warm = min(100, total // 20)
        if step < warm:
            return cfg.lr * (step + 1) / warm
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
    return cfg.lr


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def _versions() -> dict:
    return {"speakerid": __version__, "torch": str(torch.__version__), "python": platform.python_version()}


# --------------------------------------------------------------------------------------------------------------


def calibrate_threshold(model, data: PreparedDataset, device="cpu", crop=CROP_SAMPLES, max_utts=400) -> dict:
    """Pick the "unknown speaker" cosine threshold at the EER of a closed-set simulation.

    Each training speaker is enrolled with the centroid of its train-split embeddings; the valid-split
    utterances are then scored against every centroid (own = genuine, others = impostor).
    """
    from .data import FixedCropDataset

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


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, stop_after_steps: int = 0) -> dict:
    """Train one experiment; returns the final summary. ``stop_after_steps`` simulates a crash (for tests)."""
    device = _resolve_device(cfg)
    rank, world = _dist_setup(device)
    is_main = rank == 0
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = cfg.run_dir()
    if is_main:
        run.mkdir(parents=True, exist_ok=True)
    data = PreparedDataset(cfg.data)
    train_idx = data.split("train")
    if not train_idx:
        raise ValueError(f"{cfg.data}: the train split is empty")
    has_valid = bool(data.split("valid"))
    mcfg = cfg.model_config(len(data.labels))
    use_amp = cfg.amp == "on" or (cfg.amp == "auto" and device.type == "cuda")
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16

    torch.manual_seed(cfg.seed)
    model = build_model(mcfg)
    _init_weights(model, cfg.init)
    model.to(device)
    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    opt = _make_optimizer(cfg, model.parameters())
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {world} processes")
    local_bs = cfg.batch_size // world
    steps_per_epoch = len(train_idx) // cfg.batch_size or 1
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)

    epoch, step, step_in_epoch, best, rows = 0, 0, 0, -1.0, []
    epoch_stats = [0.0, 0, 0]  # loss sum, correct, seen: in the current epoch so far (survives a resume)
    last_path, best_path = run / "last.pt", run / "best.pt"
    if resume and last_path.is_file():
        ck = load_checkpoint(last_path, map_location="cpu")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["rng"]["torch"])
        if device.type == "cuda" and ck["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ck["rng"]["cuda"], device)
        epoch, step, step_in_epoch = ck["epoch"], ck["step"], ck["step_in_epoch"]
        best, rows = ck.get("best", -1.0), list(ck.get("metrics", []))
        epoch_stats = list(ck.get("epoch_stats", epoch_stats))

    loss_sum, correct, seen = 0.0, 0, 0

    def checkpoint(path: Path, extra: dict | None = None) -> None:
        if not is_main:
            return
        obj = {
            "format": FORMAT,
            "model_config": mcfg.to_dict(),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "labels": data.speakers,
            "frontend": {"sample_rate": data.sample_rate, "crop": cfg.crop},
            "train_config": asdict(cfg),
            "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            },
            "epoch": epoch,
            "step": step,
            "step_in_epoch": step_in_epoch,
            "metrics": rows,
            "epoch_stats": [float(loss_sum), int(correct), int(seen)],
            "best": best,
            "n_parameters": count_parameters(model),
            "versions": _versions(),
        }
        obj.update(extra or {})
        save_atomic(obj, path)

    dataset = RandomCropDataset(data, train_idx, cfg.crop, seed=cfg.seed, noise_snr_db=cfg.noise_snr_db)
    tb = None
    if is_main:
        try:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(run / "tb"))
        except Exception:  # TensorBoard is optional
            tb = None

    done = step >= total_steps
    while epoch < cfg.epochs and not done:
        dataset.set_epoch(epoch)
        order = _epoch_order(len(dataset), cfg.seed, epoch)[: steps_per_epoch * cfg.batch_size]
        batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        model.train()
        t0 = time.time()
        loss_sum, correct, seen = epoch_stats
        epoch_stats = [0.0, 0, 0]
        seen_here = 0  # samples of this epoch trained in this process (a resumed epoch skips the rest)
        bar = tqdm(
            total=len(batches),
            initial=step_in_epoch,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not (progress and is_main),
            leave=False,
        )
        for b in range(step_in_epoch, len(batches)):
            mine = batches[b][rank * local_bs : (rank + 1) * local_bs]
            items = [dataset[k] for k in mine]
            x = torch.stack([it[0] for it in items]).to(device)
            y = torch.tensor([it[1] for it in items], device=device)
            for g in opt.param_groups:
                g["lr"] = _lr_at(cfg, step, total_steps)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                logits = ddp_model(x)
                loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.clip_grad:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            scaler.step(opt)
            scaler.update()
            step += 1
            step_in_epoch = b + 1
            seen += len(mine)
            seen_here += len(mine)
            loss_sum += loss.item() * len(mine)
            correct += (logits.argmax(1) == y).sum().item()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if is_main and cfg.ckpt_every and step % cfg.ckpt_every == 0:
                checkpoint(last_path)
            if stop_after_steps and step >= stop_after_steps:
                bar.close()
                checkpoint(last_path)
                return {"stopped_at_step": step}
            if step >= total_steps:
                done = True
                break
        bar.close()
        # Epoch summary (local to rank 0's share of the batch; loss averaged across ranks).
        stats = torch.tensor([loss_sum, correct, seen, seen_here], dtype=torch.float64)
        per_rank = torch.zeros(world, dtype=torch.float64)  # (world,): samples each rank trained on
        per_rank[rank] = seen
        loss_sum, correct, seen = 0.0, 0, 0  # a checkpoint taken from here on starts the next epoch afresh
        if world > 1:
            dist.all_reduce(stats)
            dist.all_reduce(per_rank)
        row = {
            "epoch": epoch + 1,
            "step": step,
            "lr": _lr_at(cfg, max(step - 1, 0), total_steps),
            "train_loss": stats[0].item() / max(stats[2].item(), 1),
            "train_acc": stats[1].item() / max(stats[2].item(), 1),
            "samples_per_s": stats[3].item() / max(time.time() - t0, 1e-9),  # the steps run since t0
            # What each rank did (tests check DDP really split the batch): ranks, per-rank batch, samples.
            "world_size": world,
            "local_batch": local_bs,
            "rank_samples_min": int(per_rank.min().item()),
            "rank_samples_max": int(per_rank.max().item()),
        }
        if is_main and has_valid and ((epoch + 1) % cfg.eval_every == 0 or done or epoch + 1 == cfg.epochs):
            rep = evaluate(model, data, "valid", cfg.crop, device=device, max_crops=cfg.val_max_crops)
            row.update(val_loss=rep["loss"], val_crop_top1=rep["crop_top1"], val_utt_top1=rep["utt_top1"])
        epoch += 1
        step_in_epoch = 0
        if is_main:
            rows.append(row)
            _write_metrics_csv(rows, run / "metrics.csv")
            _plot_curves(rows, run / "curves.png")
            if tb is not None:
                for k, v in row.items():
                    if k != "epoch":
                        tb.add_scalar(k, v, epoch)
            score = row.get("val_crop_top1", -row["train_loss"])
            if score > best:
                best = score
                checkpoint(best_path)
            checkpoint(last_path)
        if is_main:
            msg = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
            tqdm.write(msg)

    summary = {
        "run": str(run),
        "epochs": epoch,
        "steps": step,
        "metrics": rows,
        "n_parameters": count_parameters(model),
    }
    if is_main:
        # Final artifacts: calibrate "unknown", evaluate the best checkpoint on test, confusion plot, report.
        if best_path.is_file():
            ck = load_checkpoint(best_path)
            model.load_state_dict(ck["model"])
        model.eval()
        cal = calibrate_threshold(model, data, device=device, crop=cfg.crop)
        for p in (best_path, last_path):
            if p.is_file():
                ck = load_checkpoint(p)
                ck["calibration"] = cal
                save_atomic(ck, p)
        summary["calibration"] = cal
        if data.split("test"):
            rep = evaluate(model, data, "test", cfg.crop, device=device, progress=progress)
            plot_confusion(rep["confusion"], rep["labels"], run / "confusion.png")
            write_report(rep, run / "test_report.json")
            summary["test"] = {k: rep[k] for k in ("crop_top1", "crop_top5", "utt_top1", "utt_top5", "loss")}
        write_report(summary, run / "summary.json")
    if tb is not None:
        tb.close()
    if dist.is_initialized():
        dist.barrier()
    return summary
