"""The one training loop: speaker ID and the paper tasks run through :func:`fit` with a small task adapter.

The loop owns what every task shares: device and DDP set-up (torchrun), weight init, optimizer and learning-rate
schedule, AMP (float16 + GradScaler on CUDA, bfloat16 autocast on CPU), gradient clipping, progress bars,
periodic metrics rows, the best weights, and ``last.pt`` / ``best.pt`` checkpoints with a format tag that resume
a run exactly. A task adapter (:class:`Adapter`) says what a batch is, what the loss is and how to evaluate.

Time is counted in optimizer steps, grouped in epochs of ``steps_per_epoch`` steps: one metrics row per epoch,
validation every ``eval_every`` epochs (and at the end). Speaker ID's epoch is one pass over its training crops;
a paper task's stream of batches has no natural epoch, so its epoch is one evaluation interval.

Reproducibility: batch (epoch, b) is a function of the adapter's seed and (epoch, b) only, never of global RNG
state, so a resumed run (from ``last.pt``: weights, optimizer, scaler, RNG states, counters, rows, the running
statistics of the interrupted epoch and the adapter's carried state) continues with the same loss curve as an
uninterrupted one (on CPU).
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from .. import __version__
from ..checkpoint import CheckpointError, safe_load, save_atomic
from ..models.init import INITS, init_weights_  # the one init (default | normal | tf), re-exported
from ..optim import TFRMSprop

__all__ = [
    "LoopSettings",
    "Adapter",
    "LoopResult",
    "fit",
    "INITS",
    "init_weights_",
    "OPTIMIZERS",
    "make_optimizer",
    "lr_at",
    "resolve_device",
    "hardware",
    "versions",
    "finish_distributed",
]


@dataclass(frozen=True)
class LoopSettings:
    """How to optimise (every task's config maps its fields onto these)."""

    steps: int  # optimizer steps in all
    steps_per_epoch: int  # one metrics row (and maybe an evaluation) every this many steps
    batch_size: int  # global batch (split across DDP processes)
    lr: float = 1e-3
    optimizer: str = "rmsprop"  # a key of OPTIMIZERS
    rms_alpha: float = 0.9  # RMSProp decay (the paper's 0.9)
    weight_decay: float = 0.0
    lr_schedule: str = "constant"  # constant | cosine (with a short linear warm-up)
    lr_drop_at: int = 0  # from this optimizer step on the schedule's lr is multiplied by lr_drop (0 = never)
    lr_drop: float = 0.1
    clip_grad: float = 0.0  # max gradient norm (0 = off)
    eval_every: int = 1  # epochs between evaluations (the last epoch is always evaluated)
    ckpt_every: int = 0  # optimizer steps between last.pt saves (0 = at epoch ends only)
    amp: str = "off"  # auto (on with CUDA) | on | off
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0  # model initialisation (the adapter seeds its data streams itself)
    checkpoint_format: str = ""  # the "format" tag written into last.pt / best.pt
    save_checkpoints: bool = True  # write last.pt / best.pt into the run folder (when there is one)


class Adapter(Protocol):
    """What a task plugs into :func:`fit`. Batches are random access, so a resume can start anywhere."""

    def build_model(self) -> nn.Module:
        """The freshly initialised model (the loop seeds torch first)."""

    def batch(self, epoch: int, b: int, rank: int, world: int) -> Any:
        """This process's share (batch_size / world items) of global batch ``b`` of ``epoch``."""

    def loss(
        self, model: nn.Module, batch: Any, device: torch.device
    ) -> tuple[torch.Tensor, int, int | None]:
        """(mean loss, items, correct predictions or None) of one batch; runs under autocast."""

    def evaluate(self, model: nn.Module, device: torch.device, final: bool) -> dict:
        """Validation metrics (``final``: the run is over, e.g. add the test split)."""

    def score(self, row: dict) -> float | None:
        """How good the weights behind a metrics row are (higher is better); None: not comparable."""

    def checkpoint_meta(self) -> dict:
        """Keys written into every checkpoint besides the loop's own (model config, labels, ...)."""

    def check_resume(self, ckpt: dict, path: Path) -> None:
        """Raise ValueError when ``ckpt`` was written by a different run (config, seed, data)."""

    def state(self) -> Any:
        """State carried between batches (e.g. PTB's hidden states), saved for resume; None if none."""

    def load_state(self, state: Any) -> None: ...


@dataclass
class LoopResult:
    """What :func:`fit` leaves behind; ``model`` holds the best weights (eval mode) unless stopped early."""

    model: nn.Module
    device: torch.device
    rank: int
    world: int
    rows: list[dict]  # one per epoch
    epoch: int
    step: int
    best: dict | None  # {"step", "epoch", "score"} of the best weights
    train_curve: list[float]  # training loss of every optimizer step
    train_s: float  # seconds in training steps (excluding evaluation and checkpoints)
    wall_s: float
    n_samples: int
    stopped: bool = False  # stopped by ``stop_after_steps`` (a simulated crash)
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------
# Building blocks (used by fit; public so benchmarks can time the real step)


def _rmsprop(params, s: LoopSettings):
    return torch.optim.RMSprop(params, lr=s.lr, alpha=s.rms_alpha, weight_decay=s.weight_decay)


def _adam(params, s: LoopSettings):
    return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)


def _rmsprop_tf(params, s: LoopSettings):  # TF 1.x semantics, what the paper's code ran (speakerid.optim)
    return TFRMSprop(params, lr=s.lr, decay=s.rms_alpha)


# name -> factory(params, settings). Add an optimizer here and every task can use it (--optimizer NAME).
OPTIMIZERS: dict[str, Callable] = {"rmsprop": _rmsprop, "rmsprop-tf": _rmsprop_tf, "adam": _adam}


def make_optimizer(s: LoopSettings, params) -> torch.optim.Optimizer:
    if s.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {s.optimizer!r}")
    return OPTIMIZERS[s.optimizer](params, s)


def lr_at(s: LoopSettings, step: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based): the schedule's, times ``lr_drop`` from
    ``lr_drop_at`` on (a step decay, e.g. to settle a constant-lr run that wanders)."""
    if s.lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be constant or cosine, got {s.lr_schedule!r}")
    lr = s.lr
    if s.lr_schedule == "cosine" and s.steps > 0:
        warm = min(100, s.steps // 20)
        if step < warm:
            lr = s.lr * (step + 1) / warm
        else:
            lr = s.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, s.steps - warm))))
    return lr * (s.lr_drop if 0 < s.lr_drop_at <= step else 1.0)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    return torch.device(device)


def _dist_setup(device: torch.device) -> tuple[int, int]:
    """(rank, world size): torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; a plain run is world size 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def hardware(device: torch.device) -> str:
    """The device in words, for results tables."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} threads, {os.cpu_count()} cores visible (torch {torch.__version__})"


def versions() -> dict:
    return {"speakerid": __version__, "torch": str(torch.__version__), "python": platform.python_version()}


def _to_device(state, device):
    """Move carried adapter state (None, a tensor, or nested lists/tuples of tensors) to ``device``."""
    if state is None:
        return None
    if torch.is_tensor(state):
        return state.to(device)
    if isinstance(state, (list, tuple)):
        return type(state)(_to_device(s, device) for s in state)
    return state


# --------------------------------------------------------------------------------------------------------------


def fit(
    adapter: Adapter,
    s: LoopSettings,
    run: Path | None,
    *,
    train_config: dict,
    resume: bool = False,
    progress: bool = True,
    desc: str = "train",
    stop_after_steps: int = 0,
    on_row: Callable[[dict, LoopResult], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> LoopResult:
    """Train ``adapter``'s model for ``s.steps`` optimizer steps; write ``run/last.pt`` and ``run/best.pt``.

    Args:
        run: the run folder (None: write nothing).
        train_config: the task's whole config as plain data, stored in every checkpoint.
        resume: continue from ``run/last.pt`` when it exists (after ``adapter.check_resume``).
        stop_after_steps: stop (and save last.pt) after this many steps, as a crash would (tests).
        on_row: called on rank 0 after each epoch's metrics row (writes metrics files, logs).
        log: where the one-line progress messages go (rank 0; default tqdm.write).
    """
    t_wall = time.perf_counter()
    device = resolve_device(s.device)
    rank, world = _dist_setup(device)
    is_main = rank == 0
    log = log or tqdm.write
    if s.batch_size % world:
        raise ValueError(f"batch_size {s.batch_size} is not divisible by the {world} processes")
    if s.steps < 1 or s.steps_per_epoch < 1:
        raise ValueError(f"need steps >= 1 and steps_per_epoch >= 1, got {s.steps} and {s.steps_per_epoch}")
    use_amp = s.amp == "on" or (s.amp == "auto" and device.type == "cuda")
    if s.amp not in ("auto", "on", "off"):
        raise ValueError(f"amp must be auto, on or off, got {s.amp!r}")
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    if run is not None and is_main:
        run.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(s.seed)
    model = adapter.build_model().to(device)
    ddp_model = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    opt = make_optimizer(s, model.parameters())
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)
    lr_at(s, 0)  # checks the schedule name before any work

    r = LoopResult(model, device, rank, world, [], 0, 0, None, [], 0.0, 0.0, 0)
    step_in_epoch, best_weights = 0, None
    epoch_stats = [0.0, 0, 0, 0.0]  # loss sum, correct, seen, train seconds: of the epoch so far
    last_path = run / "last.pt" if run is not None else None
    best_path = run / "best.pt" if run is not None else None
    if resume and last_path is not None and last_path.is_file():
        ck = safe_load(last_path)
        if not isinstance(ck, dict) or ck.get("format") != s.checkpoint_format or "loop" not in ck:
            found = ck.get("format", "no format tag") if isinstance(ck, dict) else type(ck).__name__
            raise CheckpointError(
                f"{last_path}: not a resumable checkpoint of this kind of run (expected format "
                f"{s.checkpoint_format!r}, found {found!r}; files from before the one training loop cannot be "
                "resumed: start a fresh run in another folder)"
            )
        adapter.check_resume(ck, last_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["rng"]["torch"])
        if device.type == "cuda" and ck["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ck["rng"]["cuda"], device)
        lp = ck["loop"]
        r.epoch, r.step, step_in_epoch = ck["epoch"], ck["step"], ck["step_in_epoch"]
        r.rows, r.best, best_weights = list(ck["metrics"]), lp["best"], lp["best_weights"]
        r.train_curve, r.train_s, r.n_samples = list(lp["train_curve"]), lp["train_s"], lp["n_samples"]
        epoch_stats = list(lp["epoch_stats"])
        adapter.load_state(_to_device(lp["task_state"], device))

    loss_sum, correct, seen, epoch_s = 0.0, 0, 0, 0.0

    def save(path: Path, with_loop: bool = True) -> None:
        if not (is_main and path is not None and s.save_checkpoints):
            return
        state = adapter.state()
        obj = {
            **adapter.checkpoint_meta(),
            "train_config": train_config,
            "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            },
            "epoch": r.epoch,
            "step": r.step,
            "step_in_epoch": step_in_epoch,
            "metrics": r.rows,
            "versions": versions(),
        }
        if with_loop:  # what only a resume needs
            obj["loop"] = {
                "best": r.best,
                "best_weights": best_weights,
                "train_curve": r.train_curve,
                "train_s": r.train_s,
                "n_samples": r.n_samples,
                "epoch_stats": [float(loss_sum), int(correct), int(seen), float(epoch_s)],
                "task_state": _to_device(state, "cpu"),
            }
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        wrap = getattr(adapter, "make_checkpoint", None)  # e.g. speaker ID: weights + model card
        obj = (
            wrap(weights, obj)
            if wrap is not None
            else {"format": s.checkpoint_format, "model": weights, **obj}
        )
        save_atomic(obj, path)

    local_bs = s.batch_size // world
    track_acc = getattr(adapter, "reports_accuracy", False)  # loss() returns correct predictions
    done = r.step >= s.steps
    while not done:
        model.train()
        loss_sum, correct, seen, epoch_s = epoch_stats
        epoch_stats = [0.0, 0, 0, 0.0]
        seen_here, t_here = 0, 0.0  # samples and seconds trained in this process (a resume skips the rest)
        n_batches = s.steps_per_epoch
        bar = tqdm(
            total=n_batches,
            initial=step_in_epoch,
            desc=f"{desc} epoch {r.epoch + 1}",
            disable=not (progress and is_main),
            leave=False,
        )
        for b in range(step_in_epoch, n_batches):
            t0 = time.perf_counter()
            batch = adapter.batch(r.epoch, b, rank, world)
            for g in opt.param_groups:
                g["lr"] = lr_at(s, r.step)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                loss, n, n_correct = adapter.loss(ddp_model, batch, device)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if s.clip_grad:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), s.clip_grad)
            scaler.step(opt)
            scaler.update()
            lv = float(loss.detach())
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0
            r.train_s += dt
            t_here += dt
            epoch_s += dt
            r.step += 1
            step_in_epoch = b + 1
            r.n_samples += n
            seen += n
            seen_here += n
            loss_sum += lv * n
            correct += int(n_correct or 0)
            r.train_curve.append(lv)
            bar.update(1)
            bar.set_postfix(loss=f"{lv:.3f}")
            if s.ckpt_every and r.step % s.ckpt_every == 0:
                save(last_path)
            if stop_after_steps and r.step >= stop_after_steps:
                bar.close()
                save(last_path)
                r.stopped = True
                return r
            if r.step >= s.steps:
                done = True
                break
        bar.close()
        # The epoch's row: statistics all-reduced across ranks; rank 0 evaluates.
        stats = torch.tensor([loss_sum, correct, seen, seen_here, t_here], dtype=torch.float64)
        per_rank = torch.zeros(world, dtype=torch.float64)  # (world,): samples each rank trained on
        per_rank[rank] = seen
        loss_sum, correct, seen, epoch_s = 0.0, 0, 0, 0.0  # a checkpoint from here on starts the next epoch
        if world > 1:
            dist.all_reduce(stats)
            dist.all_reduce(per_rank)
            stats[4] /= world
        row = {
            "epoch": r.epoch + 1,
            "step": r.step,
            "lr": lr_at(s, max(r.step - 1, 0)),
            "train_loss": stats[0].item() / max(stats[2].item(), 1),
        }
        if track_acc:
            row["train_acc"] = stats[1].item() / max(stats[2].item(), 1)
        row.update(
            samples_per_s=stats[3].item() / max(stats[4].item(), 1e-9),  # the steps this process ran
            train_s=round(r.train_s, 3),
            world_size=world,
            local_batch=local_bs,
            rank_samples_min=int(per_rank.min().item()),
            rank_samples_max=int(per_rank.max().item()),
        )
        if is_main and ((r.epoch + 1) % s.eval_every == 0 or done):
            model.eval()
            row.update(adapter.evaluate(model, device, final=False))
            model.train()
        r.epoch += 1
        step_in_epoch = 0
        if is_main:
            r.rows.append(row)
            score = adapter.score(row)
            if score is not None and (r.best is None or score > r.best["score"]):
                r.best = {"step": r.step, "epoch": r.epoch, "score": score}
                best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                save(best_path, with_loop=False)
            save(last_path)
            if on_row is not None:
                on_row(row, r)

    if best_weights is not None:
        model.load_state_dict(best_weights)
    model.eval()
    r.wall_s = time.perf_counter() - t_wall
    return r


def finish_distributed() -> None:
    """Wait for every rank (call at the very end of a torchrun run)."""
    if dist.is_initialized():
        dist.barrier()
