"""Named paper experiments (``EXPERIMENTS``) and one small training loop for all of them (``run_experiment``).

Protocol (paper section 4): RMSProp, lr 1e-3, decay (alpha) 0.9, batch 128, no gradient clipping, no learning
rate schedule; the reported numbers are those of the weights with the best validation score. We keep PyTorch's
default initialisation (``init="default"``); ``init="normal"`` is the paper's N(0, 1) for every weight matrix.

Each run writes (when ``out_dir`` is given) ``history.jsonl`` (one JSON line per evaluation), ``result.json``
(the experiment, budget, hardware, per-iteration training loss, best and final metrics), ``last.pt`` (resumable:
model, optimizer, iteration, history, carried PTB state) and ``best.pt``. Data streams are random access (batch
k is a function of (seed, k)), so ``resume=True`` continues a run exactly where ``last.pt`` left it on CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import config
from ..atomic import write_atomic
from ..checkpoint import safe_load, save_atomic
from ..models import count_parameters, exponential_dilations
from .copy_memory import N_DATA, N_RECALL, N_SYMBOLS, CopyMemory
from .mnist import PixelMNIST
from .models import StepwiseModel, detach_state, init_weights_, mnist_classifier
from .ptb import batchify, bptt_chunks, load_ptb_chars, nll_sum

__all__ = [
    "TASKS",
    "TaskExperiment",
    "EXPERIMENTS",
    "get_experiment",
    "build_experiment_model",
    "run_experiment",
    "run_experiment_cli",
    "shared_data_dir",
]

# task -> {kwarg: default}; 0 for a limit means "no limit".
TASKS: dict[str, dict[str, typing.Any]] = {
    "copy": {"T": 500, "eval_size": 512},
    "mnist": {
        "permute": False,
        "length": 784,
        "perm_seed": 0,
        "valid_size": 5000,
        "eval_limit": 0,
        "test_limit": 0,
    },
    "ptb": {"bptt": 128, "eval_batch_size": 64, "eval_chars": 0, "test_chars": 0},
}
# What "best" means per task: (metric, "min" | "max"). The paper selects by the best validation loss.
_SELECT = {"copy": ("eval_loss", "min"), "mnist": ("valid_loss", "min"), "ptb": ("valid_bpc", "min")}


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


@dataclass(frozen=True)
class TaskExperiment:
    """One paper experiment: task, model and optimisation budget. Rebuilt from ``asdict`` (stored in results)."""

    name: str = field(metadata={"fixed": True})
    task: str = field(metadata={"fixed": True})  # "copy" | "mnist" | "ptb"
    # see TASKS; missing keys take the defaults; overridden by their own names (--T 1000)
    task_kwargs: dict = field(default_factory=dict, metadata={"fixed": True})
    arch: str = "rnn"  # "rnn" (DilatedRNN; all dilations 1 = stacked baseline) or "cnn" (kernel 2)
    cell: str = "gru"  # rnn (vanilla tanh) / lstm / gru
    hidden: list[int] = field(default_factory=lambda: [20] * 9)  # one per layer
    dilations: list[int] = field(default_factory=lambda: exponential_dilations(9))  # one per layer
    batch_size: int = 128
    lr: float = 1e-3
    rmsprop_alpha: float = 0.9  # the paper's "decay rate"
    iterations: int = 2000
    eval_interval: int = 100
    grad_clip: float = 0.0  # max grad norm; 0 = off (paper)
    init: str = "default"  # "default" (PyTorch) or "normal" (paper: N(0, 1) weight matrices)
    dropout: float = 0.0  # input dropout (PTB; the paper's only regulariser there)
    label: str = ""  # legend / table label, e.g. "Dilated GRU"
    figure: str = ""  # the paper artefact it reproduces, e.g. "fig3", "table1"
    paper: float | None = None  # the paper's number for this config (see paper_metric)
    paper_metric: str = ""  # e.g. "test accuracy %", "test BPC", "final cross entropy (figure)"

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {self.task!r}")
        unknown = sorted(set(self.task_kwargs) - set(TASKS[self.task]))
        if unknown:
            raise ValueError(f"unknown {self.task} task_kwargs {unknown}; valid: {sorted(TASKS[self.task])}")
        kwargs = {**TASKS[self.task], **self.task_kwargs}
        for k, v in kwargs.items():
            want = type(TASKS[self.task][k])
            if type(v) is not want:
                raise ValueError(f"task_kwargs[{k!r}] must be {want.__name__}, got {v!r}")
        object.__setattr__(self, "task_kwargs", kwargs)
        object.__setattr__(self, "hidden", [int(h) for h in self.hidden])
        object.__setattr__(self, "dilations", [int(d) for d in self.dilations])
        if self.arch not in ("rnn", "cnn"):
            raise ValueError(f"arch must be 'rnn' or 'cnn', got {self.arch!r}")
        if self.cell not in ("rnn", "lstm", "gru"):
            raise ValueError(f"cell must be rnn, lstm or gru, got {self.cell!r}")
        if len(self.hidden) != len(self.dilations) or not self.dilations:
            raise ValueError(f"need one hidden size per dilation, got {self.hidden} and {self.dilations}")
        if self.init not in ("default", "normal"):
            raise ValueError(f"init must be 'default' or 'normal', got {self.init!r}")
        if min(self.batch_size, self.iterations, self.eval_interval) < 1:
            raise ValueError("batch_size, iterations and eval_interval must be >= 1")
        if self.task == "ptb" and self.arch == "rnn" and kwargs["bptt"] % math.lcm(*self.dilations):
            raise ValueError(
                f"ptb bptt={kwargs['bptt']} must be a multiple of lcm(dilations)={math.lcm(*self.dilations)} "
                "so that hidden states can be carried between chunks"
            )

    @property
    def select(self) -> tuple[str, str]:
        """(validation metric that picks the best weights, "min" or "max")."""
        return _SELECT[self.task]

    def extra_options(self) -> dict:
        """The task's own options (see TASKS), overridable by their names like fields (``speakerid.config``)."""
        return dict(self.task_kwargs)

    def replace(self, **changes) -> TaskExperiment:
        """A copy with fields (or task kwargs, by their own names) changed; unknown keys or wrong types raise."""
        opts = config.options(self)
        top, task_kw = {}, {}
        for key, val in changes.items():
            if key == "task_kwargs":
                task_kw.update(val)
            elif key not in opts:
                raise config.ConfigError(
                    f"unknown experiment option {key!r}; valid: {', '.join(sorted(opts))}"
                )
            elif key in TASKS[self.task]:
                task_kw[key] = val  # checked against the task's defaults in __post_init__
            else:
                top[key] = config.check_value(key, val, opts[key][0])
        return dataclasses.replace(self, task_kwargs={**self.task_kwargs, **task_kw}, **top)


# ----------------------------------------------------------------------------------------------------------------
# The registry. Paper numbers: table 1 (MNIST test accuracy %), table 2 (PTB test BPC), figures 3-6 (curves only).

D9 = exponential_dilations(9)  # 1, 2, ..., 256
CELL_LABEL = {"rnn": "Vanilla", "lstm": "LSTM", "gru": "GRU"}
EXPERIMENTS: dict[str, TaskExperiment] = {}


def _add(**kw) -> None:
    exp = TaskExperiment(**kw)
    assert exp.name not in EXPERIMENTS, exp.name
    EXPERIMENTS[exp.name] = exp


# Copy memory (fig 3): dilated 9 x h10 (1..256) vs stacked 9 x h10 vs single-layer h256. Curves read off the figure:
# dilated vanilla ~0 after ~1000 iterations, dilated LSTM/GRU slower, every baseline stays at ln 8 = 2.079.
for _T in (500, 1000):
    for _c in ("rnn", "lstm", "gru"):
        _copy = dict(
            task="copy",
            task_kwargs={"T": _T},
            cell=_c,
            iterations=3000,
            eval_interval=50,
            figure=f"fig3 (T={_T})",
            paper_metric="cross entropy at the end of fig 3 (read off the plot)",
        )
        _add(
            name=f"copy-{_T}-dilated-{_c}",
            hidden=[10] * 9,
            dilations=D9,
            label=f"Dilated {CELL_LABEL[_c]}",
            paper=0.0 if _c == "rnn" else None,
            **_copy,
        )
        _add(
            name=f"copy-{_T}-stacked-{_c}",
            hidden=[10] * 9,
            dilations=[1] * 9,
            label=f"Stack {CELL_LABEL[_c]}",
            paper=round(math.log(8), 3),
            **_copy,
        )
        _add(
            name=f"copy-{_T}-{_c}-h256",
            hidden=[256],
            dilations=[1],
            label=CELL_LABEL[_c],
            paper=round(math.log(8), 3),
            **_copy,
        )
# A CPU-sized copy task (T = 100; 7 layers reach dilation 64 >= the 110-step recall distance / 2).
for _c in ("rnn", "gru"):
    _add(
        name=f"copy-100-dilated-{_c}",
        task="copy",
        task_kwargs={"T": 100},
        cell=_c,
        hidden=[16] * 7,
        dilations=exponential_dilations(7),
        batch_size=32,
        lr=3e-3,
        iterations=400,
        eval_interval=25,
        label=f"Dilated {CELL_LABEL[_c]} (7 x h16)",
        figure="smoke test (not in the paper)",
    )
    _add(
        name=f"copy-100-stacked-{_c}",
        task="copy",
        task_kwargs={"T": 100},
        cell=_c,
        hidden=[16] * 7,
        dilations=[1] * 7,
        batch_size=32,
        lr=3e-3,
        iterations=400,
        eval_interval=25,
        label=f"Stack {CELL_LABEL[_c]} (7 x h16)",
        figure="smoke test (not in the paper)",
    )

# Pixel MNIST (table 1): 9 layers, h20 / h50, dilations 1..256; dilated CNN 10 layers (receptive field 1024).
_TABLE1 = {  # label: ({h: (unpermuted, permuted)})
    "dilated-rnn": {20: (97.7, 95.5), 50: (98.0, 96.1)},
    "dilated-lstm": {20: (98.9, 94.2), 50: (98.9, 95.4)},
    "dilated-gru": {20: (99.0, 94.4), 50: (99.2, 94.6)},
    "dilated-cnn": {20: (98.0, 95.7), 50: (98.3, 96.7)},
    "stacked-rnn": {20: (49.1, 88.5)},
    "stacked-lstm": {20: (98.7, 89.5)},
    "stacked-gru": {20: (98.8, 91.3)},
    "rnn": {256: (None, 71.6)},
    "lstm": {256: (98.2, 91.7)},
    "gru": {256: (99.1, 94.1)},
}
_MNIST_BUDGET = dict(iterations=50_000, eval_interval=1000, paper_metric="test accuracy %")
for _variant, _permute in (("mnist", False), ("pmnist", True)):
    for _key, _by_h in _TABLE1.items():
        for _h, _paper in _by_h.items():
            _p = _paper[1 if _permute else 0]
            _common = dict(
                task="mnist",
                task_kwargs={"permute": _permute},
                paper=_p,
                figure="table1 (permuted)" if _permute else "table1",
                **_MNIST_BUDGET,
            )
            if _key == "dilated-cnn":
                _add(
                    name=f"{_variant}-dilated-cnn-h{_h}",
                    arch="cnn",
                    hidden=[_h] * 10,
                    dilations=exponential_dilations(10),
                    label="Dilated CNN",
                    **_common,
                )
                continue
            _kind, _, _c = _key.rpartition("-")
            if _kind == "dilated":
                _arch = dict(hidden=[_h] * 9, dilations=D9, label=f"Dilated {CELL_LABEL[_c]}")
            elif _kind == "stacked":
                _arch = dict(hidden=[_h] * 9, dilations=[1] * 9, label=f"Stack {CELL_LABEL[_c]}")
            else:
                _arch = dict(hidden=[_h], dilations=[1], label=CELL_LABEL[_c])
            _add(name=f"{_variant}-{_key}-h{_h}", cell=_c, **_arch, **_common)

# Noisy MNIST (fig 4): pixels then U[0,1] noise to T; 9 layers h20; dilated CNN 10 (T=1000) / 11 (T=2000) layers.
for _T in (1000, 2000):
    _noisy = dict(
        task="mnist",
        task_kwargs={"length": _T},
        figure=f"fig4 (T={_T})",
        paper_metric="test accuracy % (figure only)",
        **{k: v for k, v in _MNIST_BUDGET.items() if k != "paper_metric"},
    )
    for _c in ("rnn", "lstm", "gru"):
        _add(
            name=f"noisy-mnist-{_T}-dilated-{_c}",
            cell=_c,
            hidden=[20] * 9,
            dilations=D9,
            label=f"Dilated {CELL_LABEL[_c]}",
            **_noisy,
        )
        _add(
            name=f"noisy-mnist-{_T}-stacked-{_c}",
            cell=_c,
            hidden=[20] * 9,
            dilations=[1] * 9,
            label=f"Stack {CELL_LABEL[_c]}",
            **_noisy,
        )
        _add(
            name=f"noisy-mnist-{_T}-{_c}-h256",
            cell=_c,
            hidden=[256],
            dilations=[1],
            label=CELL_LABEL[_c],
            **_noisy,
        )
    _n_cnn = 10 if _T == 1000 else 11
    _add(
        name=f"noisy-mnist-{_T}-dilated-cnn",
        arch="cnn",
        hidden=[20] * _n_cnn,
        dilations=exponential_dilations(_n_cnn),
        label=f"Dilated CNN ({_n_cnn} layers)",
        **_noisy,
    )
# Fig 5: dilated vanilla h20 with 1..9 layers (dilations 1..2^(L-1)) on noisy MNIST T=1000.
# Fig 6: 9 - log2(s) layers starting at dilation s (max 256), fused 1-by-s readout; s = 64 reached 93.5 %.
for _L in range(1, 9):
    _add(
        name=f"noisy-mnist-1000-dilated-rnn-{_L}layers",
        task="mnist",
        task_kwargs={"length": 1000},
        cell="rnn",
        hidden=[20] * _L,
        dilations=exponential_dilations(_L),
        label=f"{_L} layers",
        figure="fig5",
        paper_metric="test accuracy % (figure only)",
        **{k: v for k, v in _MNIST_BUDGET.items() if k != "paper_metric"},
    )
for _l0 in range(1, 7):
    _s = 2**_l0
    _add(
        name=f"noisy-mnist-1000-dilated-rnn-start{_s}",
        task="mnist",
        task_kwargs={"length": 1000},
        cell="rnn",
        hidden=[20] * (9 - _l0),
        dilations=exponential_dilations(9 - _l0, 2, l0=_l0),
        label=f"starts at {_s}",
        figure="fig6",
        paper=93.5 if _s == 64 else None,
        paper_metric="test accuracy % after 50k iterations",
        iterations=50_000,
        eval_interval=1000,
    )

# PTB characters (table 2). The table's "5 layers, h256, 1.42 M parameters, max dilation 64" is only consistent
# as 4 recurrent GRU layers of 256 on a 50-symbol one-hot input (235,776 + 3 x 393,984 + a 256x50 softmax =
# 1.43 M; LSTM likewise 1.90 M) -- i.e. 5 layers counting the softmax -- with dilations 1, 4, 16, 64 (M = 4).
# docs/paper_benchmarks.md explains why we did not use 4..64 (a per-step LM would then see every 4th character).
# BPTT 128 (a multiple of 64, so states carry; the paper used 100).
_PTB = dict(
    task="ptb",
    task_kwargs={"bptt": 128},
    iterations=20_000,
    eval_interval=500,
    figure="table2",
    paper_metric="test BPC",
)
for _c, _p in (("rnn", 1.37), ("lstm", 1.31), ("gru", 1.27)):
    _add(
        name=f"ptb-dilated-{_c}",
        cell=_c,
        hidden=[256] * 4,
        dilations=[1, 4, 16, 64],
        label=f"Dilated {CELL_LABEL[_c]}",
        paper=_p,
        **_PTB,
    )
for _c, _p in (("lstm", 1.33), ("gru", 1.33)):
    _add(
        name=f"ptb-stacked-{_c}",
        cell=_c,
        hidden=[256] * 4,
        dilations=[1] * 4,
        label=f"Stack {CELL_LABEL[_c]}",
        paper=_p,
        **_PTB,
    )
for _c, _p in (("lstm", 1.31), ("gru", 1.32)):
    _add(
        name=f"ptb-{_c}-h1000",
        cell=_c,
        hidden=[1000],
        dilations=[1],
        label=f"{CELL_LABEL[_c]} 1k",
        paper=_p,
        **_PTB,
    )


def get_experiment(name: str) -> TaskExperiment:
    """The named experiment; an unknown name raises ValueError listing close and all names."""
    if name not in EXPERIMENTS:
        close = [n for n in EXPERIMENTS if name.split("-")[0] == n.split("-")[0]][:12]
        raise ValueError(
            f"unknown experiment {name!r}; "
            + (f"similar: {', '.join(close)}; " if close else "")
            + f"all: {', '.join(EXPERIMENTS)}"
        )
    return EXPERIMENTS[name]


def build_experiment_model(exp: TaskExperiment, n_vocab: int = 50) -> nn.Module:
    """The experiment's model, without loading data (``n_vocab``: PTB's 49 symbols + <eol>).

    copy: ``StepwiseModel`` (B, T+20) ids -> (B, T+20, 8); mnist: ``SequenceClassifier`` (B, T, 1) -> (B, 10);
    ptb: ``StepwiseModel`` (B, L) ids -> (B, L, V) with carried states. ``exp.init`` is applied.
    """
    e = exp
    if e.task == "copy":
        model = StepwiseModel(N_SYMBOLS, N_DATA, e.hidden, e.dilations, arch=e.arch, cell=e.cell)
    elif e.task == "mnist":
        model = mnist_classifier(e.arch, e.cell, e.hidden, e.dilations, dropout=e.dropout)
    else:
        model = StepwiseModel(
            n_vocab, n_vocab, e.hidden, e.dilations, arch=e.arch, cell=e.cell, input_dropout=e.dropout
        )
    return init_weights_(model, e.init)


# ----------------------------------------------------------------------------------------------------------------
# Task adapters: build the model, give training batch k, compute the loss, evaluate.


class _Task:
    """Defaults for a task adapter: the experiment's model, and no state carried between batches."""

    exp: TaskExperiment

    def build_model(self) -> nn.Module:
        return build_experiment_model(self.exp)

    def state(self):
        return None

    def load_state(self, s) -> None:
        pass


class _CopyTask(_Task):
    def __init__(self, exp: TaskExperiment, data_root: Path, seed: int):
        self.exp = exp
        self.data = CopyMemory(exp.task_kwargs["T"], seed)
        self.eval_x, self.eval_y = self.data.eval_set(exp.task_kwargs["eval_size"])

    def batch(self, k: int):
        return self.data.train_batch(k, self.exp.batch_size)

    def loss(self, model, batch, device) -> tuple[torch.Tensor, int]:
        x, y = (t.to(device) for t in batch)
        logits, _ = model(x)  # (B, T+20, 8)
        return F.cross_entropy(logits[:, -N_RECALL:].reshape(-1, N_DATA).float(), y.reshape(-1)), len(y)

    @torch.no_grad()
    def evaluate(self, model, device, final: bool) -> dict:
        total, correct, n = 0.0, 0, 0
        for i in range(0, len(self.eval_y), self.exp.batch_size):
            x, y = (
                self.eval_x[i : i + self.exp.batch_size].to(device),
                self.eval_y[i : i + self.exp.batch_size],
            )
            logits = model(x)[0][:, -N_RECALL:].float().cpu()  # (B, 10, 8)
            total += float(F.cross_entropy(logits.reshape(-1, N_DATA), y.reshape(-1), reduction="sum"))
            correct += int((logits.argmax(-1) == y).sum())
            n += y.numel()
        return {"eval_loss": total / n, "eval_acc": correct / n}


class _MNISTTask(_Task):
    def __init__(self, exp: TaskExperiment, data_root: Path, seed: int):
        kw = exp.task_kwargs
        self.exp, self.seed = exp, seed
        self.data = PixelMNIST(
            data_root / "mnist",
            permute=kw["permute"],
            length=kw["length"],
            perm_seed=kw["perm_seed"],
            valid_size=kw["valid_size"],
        )

    def batch(self, k: int):
        return self.data.train_batch(k, self.exp.batch_size, self.seed)

    def loss(self, model, batch, device) -> tuple[torch.Tensor, int]:
        x, y = (t.to(device) for t in batch)
        return F.cross_entropy(model(x).float(), y), len(y)

    @torch.no_grad()
    def _score(self, model, device, split: str, limit: int) -> tuple[float, float, int]:
        total, correct, n = 0.0, 0, 0
        for x, y in self.data.batches(split, 2 * self.exp.batch_size, limit=limit or None):
            logits = model(x.to(device)).float().cpu()  # (B, 10)
            total += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(-1) == y).sum())
            n += len(y)
        return total / n, 100.0 * correct / n, n

    def evaluate(self, model, device, final: bool) -> dict:
        kw = self.exp.task_kwargs
        loss, acc, n = self._score(model, device, "valid", 0 if final else kw["eval_limit"])
        out = {"valid_loss": loss, "valid_acc": acc, "valid_n": n}
        if final:
            loss, acc, n = self._score(model, device, "test", kw["test_limit"])
            out.update(test_loss=loss, test_acc=acc, test_n=n)
        return out


class _PTBTask(_Task):
    def __init__(self, exp: TaskExperiment, data_root: Path, seed: int):
        self.exp = exp
        self.corpus = load_ptb_chars(data_root / "ptb")
        self.train = batchify(self.corpus.train, exp.batch_size)  # (B, N/B)
        self.bptt = exp.task_kwargs["bptt"]
        self.n_chunks = (self.train.shape[1] - 1) // self.bptt  # full chunks per epoch
        self.hidden = None  # carried across chunks (truncated BPTT)

    def build_model(self) -> nn.Module:
        return build_experiment_model(self.exp, self.corpus.n_vocab)

    def batch(self, k: int):
        i = (k % self.n_chunks) * self.bptt
        if i == 0:
            self.hidden = None  # a new pass over the training streams
        return self.train[:, i : i + self.bptt], self.train[:, i + 1 : i + 1 + self.bptt]

    def loss(self, model, batch, device) -> tuple[torch.Tensor, int]:
        x, y = (t.to(device) for t in batch)
        logits, hidden = model(x, self.hidden)  # (B, L, V)
        self.hidden = detach_state(hidden)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1)), len(y)

    @torch.no_grad()
    def _bpc(self, model, device, split: str, limit: int) -> tuple[float, int]:
        data = self.corpus.split(split)
        if limit:
            data = data[:limit]
        streams = batchify(data, min(self.exp.task_kwargs["eval_batch_size"], max(1, len(data) // 256)))
        total, count, hidden = 0.0, 0, None
        multiple = getattr(model, "period", 1)
        for x, y in bptt_chunks(streams, self.bptt, multiple=multiple):
            logits, hidden = model(x.to(device), hidden)
            t, c = nll_sum(logits.cpu(), y)
            total, count = total + t, count + c
        return total / count / math.log(2), count

    def evaluate(self, model, device, final: bool) -> dict:
        kw = self.exp.task_kwargs
        bpc, n = self._bpc(model, device, "valid", 0 if final else kw["eval_chars"])
        out = {"valid_bpc": bpc, "valid_chars": n}
        if final:
            bpc, n = self._bpc(model, device, "test", kw["test_chars"])
            out.update(test_bpc=bpc, test_chars=n)
        return out

    def state(self):
        return self.hidden

    def load_state(self, s) -> None:
        self.hidden = s


_ADAPTERS = {"copy": _CopyTask, "mnist": _MNISTTask, "ptb": _PTBTask}


# ----------------------------------------------------------------------------------------------------------------
# The loop.


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} threads, {os.cpu_count()} cores visible (torch {torch.__version__})"


def _to_device_state(s, device):
    if s is None:
        return None
    return [tuple(t.to(device) for t in st) if isinstance(st, (tuple, list)) else st.to(device) for st in s]


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
        amp: fp16 autocast + GradScaler (CUDA only).
        data_root: folder holding mnist/ and ptb/ (default ``shared_data_dir()``).
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
    dev = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    if amp and dev.type != "cuda":
        raise ValueError(f"amp=True needs a CUDA device, got {dev}")
    root = shared_data_dir(data_root) if exp.task in ("mnist", "ptb") else None
    out = Path(out_dir) if out_dir is not None else None

    task = _ADAPTERS[exp.task](exp, root, seed)
    torch.manual_seed(seed)
    model = task.build_model().to(dev)
    opt = torch.optim.RMSprop(model.parameters(), lr=exp.lr, alpha=exp.rmsprop_alpha)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    metric, mode = exp.select
    better = (lambda a, b: a < b) if mode == "min" else (lambda a, b: a > b)

    it, history, curve, best, train_s, n_samples = 0, [], [], None, 0.0, 0
    best_weights = None
    if resume and out is not None and (out / "last.pt").exists():
        ck = safe_load(out / "last.pt")  # CheckpointError (a ValueError) for refused or unreadable files
        if not isinstance(ck, dict) or not {"experiment", "seed", "iter", "model", "task_state"} <= set(ck):
            raise ValueError(f"{out / 'last.pt'}: not a checkpoint of a paper benchmark run; not resuming")
        if ck["experiment"] != _jsonable(asdict(exp)) or ck["seed"] != seed:
            raise ValueError(f"{out / 'last.pt'} was written by a different experiment or seed; not resuming")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["rng"])
        it, history, curve, best = ck["iter"], ck["history"], ck["train_curve"], ck["best"]
        train_s, n_samples, best_weights = ck["train_s"], ck["n_samples"], ck["best_weights"]
        task.load_state(_to_device_state(ck["task_state"], dev))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if not resume or it == 0:
            (out / "history.jsonl").write_text("")

    from tqdm import tqdm

    bar = tqdm(total=n_iters, initial=it, desc=exp.name, disable=not progress, file=sys.stderr, leave=False)
    t_wall = time.perf_counter()
    since_eval: list[float] = []
    while it < n_iters:
        model.train()
        t0 = time.perf_counter()
        batch = task.batch(it)
        with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
            loss, b = task.loss(model, batch, dev)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if exp.grad_clip > 0:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), exp.grad_clip)
        scaler.step(opt)
        scaler.update()
        lv = float(loss.detach())
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        train_s += time.perf_counter() - t0
        n_samples += b
        it += 1
        curve.append(lv)
        since_eval.append(lv)
        bar.update(1)
        if it % exp.eval_interval == 0 or it == n_iters:
            model.eval()
            metrics = task.evaluate(model, dev, final=False)
            rec = {
                "iter": it,
                "train_loss": sum(since_eval) / len(since_eval),
                **metrics,
                "train_s": round(train_s, 3),
                "samples_per_s": n_samples / max(train_s, 1e-9),
            }
            if exp.task == "ptb":
                rec["train_bpc"] = rec["train_loss"] / math.log(2)
            since_eval = []
            history.append(rec)
            if best is None or better(rec[metric], best["value"]):
                best = {"iter": it, "metric": metric, "value": rec[metric]}
                best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                if out is not None and save_checkpoints:
                    save_atomic(
                        {"experiment": _jsonable(asdict(exp)), "model": best_weights, "best": best},
                        out / "best.pt",
                    )
            if out is not None:
                with open(out / "history.jsonl", "a") as f:
                    f.write(json.dumps(rec) + "\n")
                if save_checkpoints:
                    _save_last(
                        out,
                        exp,
                        seed,
                        model,
                        opt,
                        scaler,
                        it,
                        history,
                        curve,
                        best,
                        best_weights,
                        train_s,
                        n_samples,
                        task,
                    )
            bar.set_postfix({k: round(v, 4) for k, v in rec.items() if k in (metric, "train_loss")})
            if on_eval is not None:
                on_eval(rec)
    bar.close()

    if best_weights is not None:
        model.load_state_dict(best_weights)
    model.eval()
    final = {"iter": best["iter"] if best else it, **task.evaluate(model, dev, final=True)}
    result = {
        "name": exp.name,
        "experiment": _jsonable(asdict(exp)),
        "seed": seed,
        "device": str(dev),
        "hardware": _hardware(dev),
        "amp": amp,
        "iterations": it,
        "n_params": count_parameters(model),
        "history": history,
        "train_curve": curve,
        "best": best,
        "final": final,
        "train_s": train_s,
        "wall_s": time.perf_counter() - t_wall,
        "samples_per_s": n_samples / max(train_s, 1e-9),
    }
    if out is not None:
        write_atomic(out / "result.json", json.dumps(result) + "\n")
    return result


def _jsonable(d):
    return json.loads(json.dumps(d))


def _save_last(
    out, exp, seed, model, opt, scaler, it, history, curve, best, best_weights, train_s, n_samples, task
):

    state = task.state()
    save_atomic(
        {
            "experiment": _jsonable(asdict(exp)),
            "seed": seed,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": torch.get_rng_state(),
            "iter": it,
            "history": history,
            "train_curve": curve,
            "best": best,
            "best_weights": best_weights,
            "train_s": train_s,
            "n_samples": n_samples,
            "task_state": None if state is None else _to_device_state(state, "cpu"),
        },
        out / "last.pt",
    )


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
