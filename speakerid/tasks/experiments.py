"""The paper's experiments (``EXPERIMENTS``) as plain data, and the model each one builds.

Protocol (paper section 4): RMSProp, lr 1e-3, decay (alpha) 0.9, batch 128, no gradient clipping, no learning
rate schedule; the reported numbers are those of the weights with the best validation score. We keep PyTorch's
default initialisation (``init="default"``); ``init="normal"`` is the paper's N(0, 1) for every weight matrix.

The table (``_TABLE``) is groups of experiments that share a task, budget and paper artefact; each row is
``(name, model, label, paper's number)`` with the model written ``"<cell|cnn> <layers>x<hidden> <dilations>"``,
dilations as ``a..b`` (powers of 2 from a to b), ``1`` (no dilation) or a list ``1,4,16,64``. Add a row (or a
group) and ``train.py --config NAME`` and ``benchmarks/paper.py`` run it.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field

from torch import nn

from .. import config
from ..models import exponential_dilations
from ..models.init import INITS
from .copy_memory import N_DATA, N_SYMBOLS
from .models import StepwiseModel, init_weights_, mnist_classifier

__all__ = ["TASKS", "TaskExperiment", "EXPERIMENTS", "get_experiment", "build_experiment_model", "RENAMED"]

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
# Settings renamed when the paper tasks moved onto the one training loop (old name -> new name).
RENAMED = {"grad_clip": "clip_grad", "rmsprop_alpha": "rms_alpha", "eval_interval": "eval_every"}
CELL_LABEL = {"rnn": "Vanilla", "lstm": "LSTM", "gru": "GRU"}


@dataclass(frozen=True)
class TaskExperiment:
    """One paper experiment: task, model and optimisation budget. ``from_dict(asdict(e))`` rebuilds it."""

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
    rms_alpha: float = 0.9  # RMSProp decay (the paper's "decay rate")
    iterations: int = 2000
    eval_every: int = 100  # iterations between evaluations (a task's "epoch" in the training loop)
    clip_grad: float = 0.0  # max grad norm; 0 = off (paper)
    optimizer: str = "rmsprop"  # a key of speakerid.training.loop.OPTIMIZERS (the paper: RMSProp)
    lr_schedule: str = "constant"  # constant | cosine
    # step decay: from iteration lr_drop_at on, lr x lr_drop (0 = never; not in the paper, which keeps lr constant).
    # A resume may set or move it to an iteration not yet trained (the steps already taken stay as they were).
    lr_drop_at: int = 0
    lr_drop: float = 0.1
    weight_decay: float = 0.0
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
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if min(self.batch_size, self.iterations, self.eval_every) < 1:
            raise ValueError("batch_size, iterations and eval_every must be >= 1")
        if self.lr_drop_at < 0 or not 0.0 < self.lr_drop <= 1.0:
            raise ValueError(
                f"need lr_drop_at >= 0 and 0 < lr_drop <= 1, got {self.lr_drop_at}, {self.lr_drop}"
            )
        if self.task == "ptb" and self.arch == "rnn" and kwargs["bptt"] % math.lcm(*self.dilations):
            raise ValueError(
                f"ptb bptt={kwargs['bptt']} must be a multiple of lcm(dilations)={math.lcm(*self.dilations)} "
                "so that hidden states can be carried between chunks"
            )

    @property
    def select(self) -> tuple[str, str]:
        """(validation metric that picks the best weights, "min" or "max")."""
        return _SELECT[self.task]

    @classmethod
    def from_dict(cls, d: dict) -> TaskExperiment:
        """Rebuild from ``asdict`` (stored in results); the names used before the one training loop convert."""
        return cls(**{RENAMED.get(k, k): v for k, v in d.items()})

    def describe(self) -> str:
        """The model in words: ``dilated GRU 9x20, dilations 1..256``."""
        kind = "dilated CNN" if self.arch == "cnn" else self.cell.upper()
        if self.arch == "rnn" and len(self.dilations) > 1:
            kind = f"{'dilated' if max(self.dilations) > 1 else 'stacked'} {kind}"
        d = self.dilations
        dil = f"dilations {d[0]}..{d[-1]}" if max(d) > 1 else "no dilation"
        return f"{kind} {len(self.hidden)}x{self.hidden[0]}, {dil}"

    renamed_options: typing.ClassVar[dict] = RENAMED  # old name -> new name, for clear CLI errors

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
            elif key in RENAMED:
                raise config.ConfigError(f"experiment option {key!r} is now called {RENAMED[key]!r}")
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
# The table. Paper numbers: table 1 (MNIST test accuracy %), table 2 (PTB test BPC), figures 3-6 (curves only).
# Copy memory (fig 3): dilated 9 x h10 (1..256) vs stacked 9 x h10 vs single-layer h256; read off the figure:
# dilated vanilla ~0 after ~1000 iterations, dilated LSTM/GRU slower, every baseline stays at ln 8 = 2.079.
# copy-100: a CPU-sized copy task (7 layers reach dilation 64 >= the 110-step recall distance / 2).
# Pixel MNIST (table 1): 9 layers, h20 / h50, dilations 1..256; dilated CNN 10 layers (receptive field 1024).
# Noisy MNIST (fig 4): pixels then U[0,1] noise to T; 9 layers h20; dilated CNN 10 (T=1000) / 11 (T=2000) layers.
# Fig 5: dilated vanilla h20 with 1..9 layers; fig 6: 9 - log2(s) layers starting at dilation s (max 256), fused
# 1-by-s readout; s = 64 reached 93.5 %.
# PTB characters (table 2). The table's "5 layers, h256, 1.42 M parameters, max dilation 64" is only consistent
# as 4 recurrent GRU layers of 256 on a 50-symbol one-hot input (235,776 + 3 x 393,984 + a 256x50 softmax =
# 1.43 M; LSTM likewise 1.90 M) -- i.e. 5 layers counting the softmax -- with dilations 1, 4, 16, 64 (M = 4).
# docs/paper_benchmarks.md explains why we did not use 4..64 (a per-step LM would then see every 4th character).
# BPTT 128 (a multiple of 64, so states carry; the paper used 100).

_CE_FIG3 = "cross entropy at the end of fig 3 (read off the plot)"
_ACC, _ACC_FIG, _ACC_50K, _BPC = (
    "test accuracy %",
    "test accuracy % (figure only)",
    "test accuracy % after 50k iterations",
    "test BPC",
)
_LN8 = round(math.log(8), 3)

_TABLE: list[tuple[dict, list[tuple[str, str, str, float | None]]]] = [
    (
        {
            "task": "copy",
            "task_kwargs": {"T": 500},
            "init": "tf",  # the authors' TensorFlow defaults (models/init.py): PyTorch's plateau at CE 0.6
            "optimizer": "rmsprop-tf",  # TF 1.x RMSProp (optim.py); docs/paper_benchmarks.md has the ablation
            "iterations": 3000,
            "eval_every": 50,
            "figure": "fig3 (T=500)",
            "paper_metric": _CE_FIG3,
        },
        [
            ("copy-500-dilated-rnn", "rnn 9x10 1..256", "Dilated Vanilla", 0.0),
            ("copy-500-stacked-rnn", "rnn 9x10 1", "Stack Vanilla", _LN8),
            ("copy-500-rnn-h256", "rnn 1x256 1", "Vanilla", _LN8),
            ("copy-500-dilated-lstm", "lstm 9x10 1..256", "Dilated LSTM", None),
            ("copy-500-stacked-lstm", "lstm 9x10 1", "Stack LSTM", _LN8),
            ("copy-500-lstm-h256", "lstm 1x256 1", "LSTM", _LN8),
            ("copy-500-dilated-gru", "gru 9x10 1..256", "Dilated GRU", None),
            ("copy-500-stacked-gru", "gru 9x10 1", "Stack GRU", _LN8),
            ("copy-500-gru-h256", "gru 1x256 1", "GRU", _LN8),
        ],
    ),
    (
        {
            "task": "copy",
            "task_kwargs": {"T": 1000},
            "init": "tf",
            "optimizer": "rmsprop-tf",
            "iterations": 3000,
            "eval_every": 50,
            "figure": "fig3 (T=1000)",
            "paper_metric": _CE_FIG3,
        },
        [
            ("copy-1000-dilated-rnn", "rnn 9x10 1..256", "Dilated Vanilla", 0.0),
            ("copy-1000-stacked-rnn", "rnn 9x10 1", "Stack Vanilla", _LN8),
            ("copy-1000-rnn-h256", "rnn 1x256 1", "Vanilla", _LN8),
            ("copy-1000-dilated-lstm", "lstm 9x10 1..256", "Dilated LSTM", None),
            ("copy-1000-stacked-lstm", "lstm 9x10 1", "Stack LSTM", _LN8),
            ("copy-1000-lstm-h256", "lstm 1x256 1", "LSTM", _LN8),
            ("copy-1000-dilated-gru", "gru 9x10 1..256", "Dilated GRU", None),
            ("copy-1000-stacked-gru", "gru 9x10 1", "Stack GRU", _LN8),
            ("copy-1000-gru-h256", "gru 1x256 1", "GRU", _LN8),
        ],
    ),
    (
        {
            "task": "copy",
            "task_kwargs": {"T": 100},
            "iterations": 400,
            "eval_every": 25,
            "batch_size": 32,
            "lr": 0.003,
            "figure": "smoke test (not in the paper)",
            "paper_metric": "",
        },
        [
            ("copy-100-dilated-rnn", "rnn 7x16 1..64", "Dilated Vanilla (7 x h16)", None),
            ("copy-100-stacked-rnn", "rnn 7x16 1", "Stack Vanilla (7 x h16)", None),
            ("copy-100-dilated-gru", "gru 7x16 1..64", "Dilated GRU (7 x h16)", None),
            ("copy-100-stacked-gru", "gru 7x16 1", "Stack GRU (7 x h16)", None),
        ],
    ),
    (
        {"task": "mnist", "iterations": 50000, "eval_every": 1000, "figure": "table1", "paper_metric": _ACC},
        [
            ("mnist-dilated-rnn-h20", "rnn 9x20 1..256", "Dilated Vanilla", 97.7),
            ("mnist-dilated-rnn-h50", "rnn 9x50 1..256", "Dilated Vanilla", 98.0),
            ("mnist-dilated-lstm-h20", "lstm 9x20 1..256", "Dilated LSTM", 98.9),
            ("mnist-dilated-lstm-h50", "lstm 9x50 1..256", "Dilated LSTM", 98.9),
            ("mnist-dilated-gru-h20", "gru 9x20 1..256", "Dilated GRU", 99.0),
            ("mnist-dilated-gru-h50", "gru 9x50 1..256", "Dilated GRU", 99.2),
            ("mnist-dilated-cnn-h20", "cnn 10x20 1..512", "Dilated CNN", 98.0),
            ("mnist-dilated-cnn-h50", "cnn 10x50 1..512", "Dilated CNN", 98.3),
            ("mnist-stacked-rnn-h20", "rnn 9x20 1", "Stack Vanilla", 49.1),
            ("mnist-stacked-lstm-h20", "lstm 9x20 1", "Stack LSTM", 98.7),
            ("mnist-stacked-gru-h20", "gru 9x20 1", "Stack GRU", 98.8),
            ("mnist-rnn-h256", "rnn 1x256 1", "Vanilla", None),
            ("mnist-lstm-h256", "lstm 1x256 1", "LSTM", 98.2),
            ("mnist-gru-h256", "gru 1x256 1", "GRU", 99.1),
        ],
    ),
    (
        {
            "task": "mnist",
            "task_kwargs": {"permute": True},
            "iterations": 50000,
            "eval_every": 1000,
            "figure": "table1 (permuted)",
            "paper_metric": _ACC,
        },
        [
            ("pmnist-dilated-rnn-h20", "rnn 9x20 1..256", "Dilated Vanilla", 95.5),
            ("pmnist-dilated-rnn-h50", "rnn 9x50 1..256", "Dilated Vanilla", 96.1),
            ("pmnist-dilated-lstm-h20", "lstm 9x20 1..256", "Dilated LSTM", 94.2),
            ("pmnist-dilated-lstm-h50", "lstm 9x50 1..256", "Dilated LSTM", 95.4),
            ("pmnist-dilated-gru-h20", "gru 9x20 1..256", "Dilated GRU", 94.4),
            ("pmnist-dilated-gru-h50", "gru 9x50 1..256", "Dilated GRU", 94.6),
            ("pmnist-dilated-cnn-h20", "cnn 10x20 1..512", "Dilated CNN", 95.7),
            ("pmnist-dilated-cnn-h50", "cnn 10x50 1..512", "Dilated CNN", 96.7),
            ("pmnist-stacked-rnn-h20", "rnn 9x20 1", "Stack Vanilla", 88.5),
            ("pmnist-stacked-lstm-h20", "lstm 9x20 1", "Stack LSTM", 89.5),
            ("pmnist-stacked-gru-h20", "gru 9x20 1", "Stack GRU", 91.3),
            ("pmnist-rnn-h256", "rnn 1x256 1", "Vanilla", 71.6),
            ("pmnist-lstm-h256", "lstm 1x256 1", "LSTM", 91.7),
            ("pmnist-gru-h256", "gru 1x256 1", "GRU", 94.1),
        ],
    ),
    (
        {
            "task": "mnist",
            "task_kwargs": {"length": 1000},
            "iterations": 50000,
            "eval_every": 1000,
            "figure": "fig4 (T=1000)",
            "paper_metric": _ACC_FIG,
        },
        [
            ("noisy-mnist-1000-dilated-rnn", "rnn 9x20 1..256", "Dilated Vanilla", None),
            ("noisy-mnist-1000-stacked-rnn", "rnn 9x20 1", "Stack Vanilla", None),
            ("noisy-mnist-1000-rnn-h256", "rnn 1x256 1", "Vanilla", None),
            ("noisy-mnist-1000-dilated-lstm", "lstm 9x20 1..256", "Dilated LSTM", None),
            ("noisy-mnist-1000-stacked-lstm", "lstm 9x20 1", "Stack LSTM", None),
            ("noisy-mnist-1000-lstm-h256", "lstm 1x256 1", "LSTM", None),
            ("noisy-mnist-1000-dilated-gru", "gru 9x20 1..256", "Dilated GRU", None),
            ("noisy-mnist-1000-stacked-gru", "gru 9x20 1", "Stack GRU", None),
            ("noisy-mnist-1000-gru-h256", "gru 1x256 1", "GRU", None),
            ("noisy-mnist-1000-dilated-cnn", "cnn 10x20 1..512", "Dilated CNN (10 layers)", None),
        ],
    ),
    (
        {
            "task": "mnist",
            "task_kwargs": {"length": 2000},
            "iterations": 50000,
            "eval_every": 1000,
            "figure": "fig4 (T=2000)",
            "paper_metric": _ACC_FIG,
        },
        [
            ("noisy-mnist-2000-dilated-rnn", "rnn 9x20 1..256", "Dilated Vanilla", None),
            ("noisy-mnist-2000-stacked-rnn", "rnn 9x20 1", "Stack Vanilla", None),
            ("noisy-mnist-2000-rnn-h256", "rnn 1x256 1", "Vanilla", None),
            ("noisy-mnist-2000-dilated-lstm", "lstm 9x20 1..256", "Dilated LSTM", None),
            ("noisy-mnist-2000-stacked-lstm", "lstm 9x20 1", "Stack LSTM", None),
            ("noisy-mnist-2000-lstm-h256", "lstm 1x256 1", "LSTM", None),
            ("noisy-mnist-2000-dilated-gru", "gru 9x20 1..256", "Dilated GRU", None),
            ("noisy-mnist-2000-stacked-gru", "gru 9x20 1", "Stack GRU", None),
            ("noisy-mnist-2000-gru-h256", "gru 1x256 1", "GRU", None),
            ("noisy-mnist-2000-dilated-cnn", "cnn 11x20 1..1024", "Dilated CNN (11 layers)", None),
        ],
    ),
    (
        {
            "task": "mnist",
            "task_kwargs": {"length": 1000},
            "iterations": 50000,
            "eval_every": 1000,
            "figure": "fig5",
            "paper_metric": _ACC_FIG,
        },
        [
            ("noisy-mnist-1000-dilated-rnn-1layers", "rnn 1x20 1", "1 layers", None),
            ("noisy-mnist-1000-dilated-rnn-2layers", "rnn 2x20 1..2", "2 layers", None),
            ("noisy-mnist-1000-dilated-rnn-3layers", "rnn 3x20 1..4", "3 layers", None),
            ("noisy-mnist-1000-dilated-rnn-4layers", "rnn 4x20 1..8", "4 layers", None),
            ("noisy-mnist-1000-dilated-rnn-5layers", "rnn 5x20 1..16", "5 layers", None),
            ("noisy-mnist-1000-dilated-rnn-6layers", "rnn 6x20 1..32", "6 layers", None),
            ("noisy-mnist-1000-dilated-rnn-7layers", "rnn 7x20 1..64", "7 layers", None),
            ("noisy-mnist-1000-dilated-rnn-8layers", "rnn 8x20 1..128", "8 layers", None),
        ],
    ),
    (
        {
            "task": "mnist",
            "task_kwargs": {"length": 1000},
            "iterations": 50000,
            "eval_every": 1000,
            "figure": "fig6",
            "paper_metric": _ACC_50K,
        },
        [
            ("noisy-mnist-1000-dilated-rnn-start2", "rnn 8x20 2..256", "starts at 2", None),
            ("noisy-mnist-1000-dilated-rnn-start4", "rnn 7x20 4..256", "starts at 4", None),
            ("noisy-mnist-1000-dilated-rnn-start8", "rnn 6x20 8..256", "starts at 8", None),
            ("noisy-mnist-1000-dilated-rnn-start16", "rnn 5x20 16..256", "starts at 16", None),
            ("noisy-mnist-1000-dilated-rnn-start32", "rnn 4x20 32..256", "starts at 32", None),
            ("noisy-mnist-1000-dilated-rnn-start64", "rnn 3x20 64..256", "starts at 64", 93.5),
        ],
    ),
    (
        {"task": "ptb", "iterations": 20000, "eval_every": 500, "figure": "table2", "paper_metric": _BPC},
        [
            ("ptb-dilated-rnn", "rnn 4x256 1,4,16,64", "Dilated Vanilla", 1.37),
            ("ptb-dilated-lstm", "lstm 4x256 1,4,16,64", "Dilated LSTM", 1.31),
            ("ptb-dilated-gru", "gru 4x256 1,4,16,64", "Dilated GRU", 1.27),
            ("ptb-stacked-lstm", "lstm 4x256 1", "Stack LSTM", 1.33),
            ("ptb-stacked-gru", "gru 4x256 1", "Stack GRU", 1.33),
            ("ptb-lstm-h1000", "lstm 1x1000 1", "LSTM 1k", 1.31),
            ("ptb-gru-h1000", "gru 1x1000 1", "GRU 1k", 1.32),
        ],
    ),
]


def _model(spec: str) -> dict:
    """``"gru 9x20 1..256"`` -> {arch, cell, hidden, dilations}."""
    kind, size, dil = spec.split()
    layers, hidden = (int(v) for v in size.split("x"))
    if ".." in dil:
        lo, hi = (int(v) for v in dil.split(".."))
        dilations = exponential_dilations(layers, 2, l0=int(math.log2(lo)))
        assert dilations[-1] == hi, spec
    elif dil == "1":
        dilations = [1] * layers
    else:
        dilations = [int(v) for v in dil.split(",")]
    assert len(dilations) == layers, spec
    arch = "cnn" if kind == "cnn" else "rnn"
    return {
        "arch": arch,
        "cell": "gru" if arch == "cnn" else kind,
        "hidden": [hidden] * layers,
        "dilations": dilations,
    }


EXPERIMENTS: dict[str, TaskExperiment] = {}
for _group, _rows in _TABLE:
    for _name, _spec, _label, _paper in _rows:
        assert _name not in EXPERIMENTS, _name
        EXPERIMENTS[_name] = TaskExperiment(name=_name, label=_label, paper=_paper, **_model(_spec), **_group)


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
