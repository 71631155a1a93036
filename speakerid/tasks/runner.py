"""Run a paper experiment (``run_experiment``) through the one training loop, and its command line.

Each run writes (when ``out_dir`` is given) ``history.jsonl`` (one JSON line per evaluation), ``result.json``
(the experiment, budget, hardware, per-iteration training loss, best and final metrics), ``last.pt`` (resumable,
see :mod:`speakerid.training.loop`) and ``best.pt``. Data streams are random access (batch k is a function of
(seed, k)), so ``resume=True`` continues a run exactly where ``last.pt`` left it on CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from .. import config
from ..atomic import write_atomic
from ..models import count_parameters
from ..training.loop import LoopSettings, fit, hardware, resolve_device
from .adapters import ADAPTERS, TASK_CHECKPOINT_FORMAT
from .experiments import TaskExperiment, get_experiment

__all__ = ["run_experiment", "run_experiment_cli", "shared_data_dir", "DATA_ENV"]

DATA_ENV = "SPEAKERID_SHARED_DATA"


def shared_data_dir(data_root: str | os.PathLike | None = None) -> Path:
    """The folder holding mnist/ and ptb/: ``data_root`` if given, else ``$SPEAKERID_SHARED_DATA``.

    Nothing is guessed from where the package happens to be installed; with neither set this raises a
    ValueError that says what to set.
    """
    root = data_root or os.environ.get(DATA_ENV)
    if not root:
        raise ValueError(
            f"no data folder for the MNIST / PTB tasks: pass --data_root DIR (data_root=...) or set {DATA_ENV} "
            "to the folder holding mnist/ and ptb/ (e.g. ../shared/data)"
        )
    return Path(root)


def run_experiment(
    exp: TaskExperiment | str,
    overrides: dict | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    max_iters: int | None = None,
    seed: int = 0,
    progress: bool = True,
    amp: bool = False,
    data_root: str | os.PathLike | None = None,
    resume: bool = False,
    save_checkpoints: bool = True,
    on_eval: Callable[[dict], None] | None = None,
) -> dict:
    """Train one experiment for ``max_iters`` (default ``exp.iterations``) iterations; return its result dict.

    Args:
        exp: a ``TaskExperiment`` or a name in ``EXPERIMENTS``.
        overrides: field (or task kwarg) -> value, checked like ``TaskExperiment.replace``.
        out_dir: where history.jsonl / result.json / last.pt / best.pt go (nothing is written when None).
        device: "cpu", "cuda", ...; default CUDA when available.
        max_iters: the iteration budget of this run (overrides ``exp.iterations``).
        seed: seeds the model initialisation and every data stream; equal seeds give equal runs on CPU.
        amp: mixed precision (float16 + GradScaler on CUDA, bfloat16 autocast on CPU).
        data_root: folder holding mnist/ and ptb/ (default ``$SPEAKERID_SHARED_DATA``; see ``shared_data_dir``).
        resume: continue from ``out_dir/last.pt`` when it exists.
        on_eval: called with every history record (e.g. for logging).

    Returns:
        {"name", "experiment" (asdict), "seed", "device", "hardware", "amp", "iterations", "n_params",
        "history" (eval records), "train_curve" (per-iteration training loss, nats), "best" ({iter, metric,
        value}), "final" (metrics of the best weights; MNIST/PTB include the test split), "train_s", "wall_s",
        "samples_per_s"}.
    """
    if isinstance(exp, str):
        exp = get_experiment(exp)
    if overrides:
        exp = exp.replace(**overrides)
    n_iters = int(max_iters) if max_iters else exp.iterations
    if n_iters < 1:
        raise ValueError(f"max_iters must be >= 1, got {max_iters}")
    root = shared_data_dir(data_root) if exp.task in ("mnist", "ptb") else None
    out = Path(out_dir) if out_dir is not None else None
    dev = resolve_device(device)
    task = ADAPTERS[exp.task](exp, root, seed)
    settings = LoopSettings(
        steps=n_iters,
        steps_per_epoch=exp.eval_every,
        batch_size=exp.batch_size,
        lr=exp.lr,
        optimizer=exp.optimizer,
        rms_alpha=exp.rms_alpha,
        weight_decay=exp.weight_decay,
        lr_schedule=exp.lr_schedule,
        lr_drop_at=exp.lr_drop_at,
        lr_drop=exp.lr_drop,
        clip_grad=exp.clip_grad,
        amp="on" if amp else "off",
        device=str(dev),
        seed=seed,
        checkpoint_format=TASK_CHECKPOINT_FORMAT,
        save_checkpoints=save_checkpoints,
    )
    metric, _ = exp.select

    def record(row: dict) -> dict:
        """A loop row as a history record: iteration, mean training loss since the last one, metrics."""
        skip = ("epoch", "step", "lr", "train_loss", "train_s", "samples_per_s", "world_size", "local_batch")
        rec = {"iter": row["step"], "train_loss": row["train_loss"]}
        rec.update({k: v for k, v in row.items() if k not in skip and not k.startswith("rank_samples")})
        rec.update(
            train_s=row["train_s"], samples_per_s=row["step"] * exp.batch_size / max(row["train_s"], 1e-9)
        )
        if exp.task == "ptb":
            rec["train_bpc"] = rec["train_loss"] / math.log(2)
        return rec

    def on_row(row: dict, r) -> None:
        if out is not None:  # rewritten whole: always the rows of last.pt, also after a resume
            write_atomic(out / "history.jsonl", "".join(json.dumps(record(x)) + "\n" for x in r.rows))
        if on_eval is not None:
            on_eval(record(row))

    r = fit(
        task,
        settings,
        out,
        train_config=_jsonable(asdict(exp)),
        resume=resume,
        progress=progress,
        desc=exp.name,
        on_row=on_row,
    )
    history = [record(x) for x in r.rows]
    best = None
    if r.best is not None:
        best = {"iter": r.best["step"], "metric": metric, "value": r.rows[r.best["epoch"] - 1][metric]}
    final = {"iter": best["iter"] if best else r.step, **task.evaluate(r.model, r.device, final=True)}
    result = {
        "name": exp.name,
        "experiment": _jsonable(asdict(exp)),
        "seed": seed,
        "device": str(r.device),
        "hardware": hardware(r.device),
        "amp": amp,
        "iterations": r.step,
        "n_params": count_parameters(r.model),
        "history": history,
        "train_curve": r.train_curve,
        "best": best,
        "final": final,
        "train_s": r.train_s,
        "wall_s": r.wall_s,
        "samples_per_s": r.n_samples / max(r.train_s, 1e-9),
    }
    if out is not None:
        write_atomic(out / "result.json", json.dumps(result) + "\n")
    return result


def _jsonable(d):
    return json.loads(json.dumps(d))


# ----------------------------------------------------------------------------------------------------------------
# Command line (``python train.py --config <experiment> [--key value ...]``).


def run_experiment_cli(
    name: str, argv: list[str], show_config: bool = False, resume: bool = False, progress: bool = True
) -> int:
    """``train.py --config <experiment>``: parse run options and ``--key value`` overrides, run, print a summary.

    Run options: --max-iters N, --out DIR (default runs/<name>), --device D, --seed S, --amp, --data-root DIR.
    Any other ``--key value`` overrides an experiment field or task kwarg (lists as ``1,2,4``).
    """
    p = argparse.ArgumentParser(prog=f"train.py --config {name}", add_help=False, allow_abbrev=False)
    p.add_argument("--max-iters", "--max_iters", type=int, default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amp", action="store_true")
    p.add_argument("--data-root", "--data_root", default=None)
    opts, rest = p.parse_known_args(argv)
    try:
        exp = config.override(get_experiment(name), rest)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if show_config:
        print(config.show(exp))
        return 0
    out = opts.out or str(Path("runs") / exp.name)
    try:
        result = run_experiment(
            exp,
            out_dir=out,
            device=opts.device,
            max_iters=opts.max_iters,
            seed=opts.seed,
            progress=progress,
            amp=opts.amp,
            data_root=opts.data_root,
            resume=resume,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = {
        k: result[k] for k in ("name", "iterations", "n_params", "best", "final", "train_s", "hardware")
    }
    summary["out"] = out
    print(json.dumps(summary, indent=2))
    return 0
