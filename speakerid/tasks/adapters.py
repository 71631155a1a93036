"""The paper tasks as adapters of the one training loop (:func:`speakerid.training.loop.fit`).

Each adapter builds the experiment's model, gives training batch k = epoch * eval_every + b as a function of
(seed, k) only (so a resumed run sees the same stream), computes the loss and evaluates. A task's "epoch" in the
loop is one evaluation interval (``eval_every`` iterations).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .copy_memory import N_DATA, N_RECALL, CopyMemory
from .experiments import TaskExperiment, build_experiment_model
from .mnist import PixelMNIST
from .models import detach_state
from .ptb import batchify, bptt_chunks, load_ptb_chars, nll_sum

__all__ = ["ADAPTERS", "TASK_CHECKPOINT_FORMAT"]

TASK_CHECKPOINT_FORMAT = "speakerid-task-checkpoint-v1"


def _mine(t: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This process's rows of a global batch (B, ...) -> (B / world, ...)."""
    n = t.shape[0] // world
    return t[rank * n : (rank + 1) * n]


class _Task:
    """Defaults for a task adapter: the experiment's model, best = lowest validation loss, no carried state."""

    exp: TaskExperiment
    seed: int

    def build_model(self) -> nn.Module:
        return build_experiment_model(self.exp)

    def _k(self, epoch: int, b: int) -> int:
        return epoch * self.exp.eval_every + b

    def score(self, row: dict) -> float | None:
        metric, mode = self.exp.select
        if metric not in row:
            return None
        return -row[metric] if mode == "min" else row[metric]

    def checkpoint_meta(self) -> dict:
        return {"experiment": _jsonable(asdict(self.exp)), "seed": self.seed}

    def check_resume(self, ckpt: dict, path: Path) -> None:
        """Same experiment and seed as the checkpoint, except the step decay, which may be set or moved to an
        iteration not yet trained (fields added since the checkpoint was written take their defaults)."""
        try:
            was = TaskExperiment.from_dict(ckpt["experiment"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path} holds no readable experiment ({e}); not resuming") from None
        future_only = ("lr_drop_at", "lr_drop")
        now_d, was_d = _jsonable(asdict(self.exp)), _jsonable(asdict(was))
        for k in future_only:
            now_d.pop(k), was_d.pop(k)
        if now_d != was_d or ckpt.get("seed") != self.seed:
            raise ValueError(f"{path} was written by a different experiment or seed; not resuming")
        step = int(ckpt["step"])

        def past(e: TaskExperiment) -> tuple:  # the decay as the steps already taken saw it
            return (e.lr_drop_at, e.lr_drop) if 0 < e.lr_drop_at < step else None

        if past(was) != past(self.exp):
            raise ValueError(
                f"{path}: lr_drop_at={self.exp.lr_drop_at} (lr_drop={self.exp.lr_drop}) would change the learning "
                f"rate of iterations already trained (the run is at {step}; it was trained with "
                f"lr_drop_at={was.lr_drop_at}); set lr_drop_at >= {step} or keep the saved value; not resuming"
            )

    def state(self):
        return None

    def load_state(self, s) -> None:
        pass


class _CopyTask(_Task):
    def __init__(self, exp: TaskExperiment, data_root: Path | None, seed: int):
        self.exp, self.seed = exp, seed
        self.data = CopyMemory(exp.task_kwargs["T"], seed)
        self.eval_x, self.eval_y = self.data.eval_set(exp.task_kwargs["eval_size"])

    def batch(self, epoch: int, b: int, rank: int, world: int):
        x, y = self.data.train_batch(self._k(epoch, b), self.exp.batch_size)
        return _mine(x, rank, world), _mine(y, rank, world)

    def loss(self, model, batch, device) -> tuple[torch.Tensor, int]:
        x, y = (t.to(device) for t in batch)
        logits, _ = model(x)  # (B, T+20, 8)
        return F.cross_entropy(logits[:, -N_RECALL:].reshape(-1, N_DATA).float(), y.reshape(-1)), len(y), None

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
    def __init__(self, exp: TaskExperiment, data_root: Path | None, seed: int):
        kw = exp.task_kwargs
        self.exp, self.seed = exp, seed
        self.data = PixelMNIST(
            data_root / "mnist",
            permute=kw["permute"],
            length=kw["length"],
            perm_seed=kw["perm_seed"],
            valid_size=kw["valid_size"],
        )

    def batch(self, epoch: int, b: int, rank: int, world: int):
        x, y = self.data.train_batch(self._k(epoch, b), self.exp.batch_size, self.seed)
        return _mine(x, rank, world), _mine(y, rank, world)

    def loss(self, model, batch, device) -> tuple[torch.Tensor, int]:
        x, y = (t.to(device) for t in batch)
        return F.cross_entropy(model(x).float(), y), len(y), None

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
    def __init__(self, exp: TaskExperiment, data_root: Path | None, seed: int):
        self.exp, self.seed = exp, seed
        self.corpus = load_ptb_chars(data_root / "ptb")
        self.train = batchify(self.corpus.train, exp.batch_size)  # (B, N/B)
        self.bptt = exp.task_kwargs["bptt"]
        self.n_chunks = (self.train.shape[1] - 1) // self.bptt  # full chunks per epoch
        self.hidden = None  # carried across chunks (truncated BPTT)

    def build_model(self) -> nn.Module:
        return build_experiment_model(self.exp, self.corpus.n_vocab)

    def batch(self, epoch: int, b: int, rank: int, world: int):
        i = (self._k(epoch, b) % self.n_chunks) * self.bptt
        if i == 0:
            self.hidden = None  # a new pass over the training streams
        streams = _mine(self.train, rank, world)  # (B / world, N/B): this process's streams
        return streams[:, i : i + self.bptt], streams[:, i + 1 : i + 1 + self.bptt]

    def loss(self, model, batch, device) -> tuple[torch.Tensor, int]:
        x, y = (t.to(device) for t in batch)
        logits, hidden = model(x, self.hidden)  # (B, L, V)
        self.hidden = detach_state(hidden)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1)), len(y), None

    @torch.no_grad()
    def bpc(self, model, device, split: str, limit: int = 0) -> tuple[float, int]:
        """(bits per character, characters scored) of ``split`` ("valid" | "test"), its first ``limit``
        characters (0 = all), as the benchmark scores it: parallel streams, hidden states carried across chunks."""
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
        bpc, n = self.bpc(model, device, "valid", 0 if final else kw["eval_chars"])
        out = {"valid_bpc": bpc, "valid_chars": n}
        if final:
            bpc, n = self.bpc(model, device, "test", kw["test_chars"])
            out.update(test_bpc=bpc, test_chars=n)
        return out

    def state(self):
        return self.hidden

    def load_state(self, s) -> None:
        self.hidden = s


def _jsonable(d):
    return json.loads(json.dumps(d))


ADAPTERS = {"copy": _CopyTask, "mnist": _MNISTTask, "ptb": _PTBTask}
