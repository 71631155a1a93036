"""Penn Treebank character-level language modelling (paper section 4.3, table 2).

Dim legend: N characters in a split, B parallel streams (batch), L BPTT chunk length, V = 50 vocabulary.

Data: Mikolov's ``ptb.char.{train,valid,test}.txt``: one sentence per line, characters separated by spaces,
word boundaries written as ``_``. The vocabulary is the 49 symbols of the training file plus an end-of-line
symbol ``<eol>`` appended to every line (V = 50, as in the paper's parameter counts: a one-hot 50-dim input).
Symbols are sorted, ``<eol>`` last.

Training uses the usual truncated-BPTT layout: a split is cut into B contiguous streams (``batchify``), which are
read in chunks of L characters; the hidden state is carried from chunk to chunk (the DilatedRNN needs L to be a
multiple of its largest dilation to carry it; we use L = 128 for dilations up to 64, the paper's 100 is not).
BPC is the mean negative log2-likelihood of every predicted character.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["EOL", "PTBChars", "load_ptb_chars", "batchify", "bptt_chunks", "bits_per_char", "nll_sum"]

EOL = "<eol>"
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class PTBChars:
    """The three splits as int64 id tensors (N,) and the vocabulary (``vocab[id]`` is the symbol)."""

    vocab: tuple[str, ...]
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor

    @property
    def n_vocab(self) -> int:
        return len(self.vocab)

    def split(self, name: str) -> torch.Tensor:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return getattr(self, name)

    def decode(self, ids: torch.Tensor) -> str:
        """ids (N,) -> text with ``_`` as space and ``<eol>`` as newline (for eyeballing samples)."""
        return "".join(
            "\n" if s == EOL else " " if s == "_" else s for s in (self.vocab[i] for i in ids.tolist())
        )


def _read_symbols(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise OSError(f"cannot read PTB character file {path}: {e}") from e
    symbols: list[str] = []
    for line in text.splitlines():
        if line.strip():
            symbols.extend(line.split())
            symbols.append(EOL)
    return symbols


def load_ptb_chars(root: str | Path) -> PTBChars:
    """Read ``ptb.char.{train,valid,test}.txt`` from ``root`` (raises FileNotFoundError naming missing files).

    Cached per (folder, file sizes and mtimes); the returned tensors are shared, do not modify them in place.
    """
    root = Path(root).resolve()
    stamp = tuple(
        (p.stat().st_size, p.stat().st_mtime_ns)
        for p in (root / f"ptb.char.{s}.txt" for s in SPLITS)
        if p.exists()
    )
    return _load_ptb_chars(root, stamp)


@lru_cache(maxsize=2)
def _load_ptb_chars(root: Path, stamp: tuple) -> PTBChars:
    paths = {s: root / f"ptb.char.{s}.txt" for s in SPLITS}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"PTB character files not found: {missing}")
    symbols = {s: _read_symbols(p) for s, p in paths.items()}
    vocab = (*sorted(set(symbols["train"]) - {EOL}), EOL)
    index = {s: i for i, s in enumerate(vocab)}
    ids = {}
    for s, syms in symbols.items():
        unknown = sorted(set(syms) - set(index))
        if unknown:
            raise ValueError(f"{paths[s]} has symbols not in the training vocabulary: {unknown}")
        ids[s] = torch.tensor([index[c] for c in syms], dtype=torch.int64)
    return PTBChars(vocab=vocab, **ids)


def batchify(data: torch.Tensor, n_streams: int) -> torch.Tensor:
    """(N,) -> (B, N // B): B contiguous streams; the last N mod B characters are dropped."""
    if data.dim() != 1:
        raise ValueError(f"expected a 1-D id tensor, got shape {tuple(data.shape)}")
    n = data.numel() // n_streams
    if n < 2:
        raise ValueError(f"{data.numel()} characters are too few for {n_streams} streams")
    return data[: n * n_streams].view(n_streams, n)


def bptt_chunks(
    streams: torch.Tensor, length: int, multiple: int = 1, start: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive (x (B, L), y (B, L)) chunks of ``streams`` (B, N) with y the next character of x.

    Every chunk has L = ``length`` steps except the last, which is right-padded with id 0 up to a multiple of
    ``multiple`` and whose padded targets are -100 (ignored by the loss), so that carried states stay valid and
    every character but the first of each stream is predicted exactly once. ``start`` skips characters.
    """
    if length % multiple:
        raise ValueError(f"BPTT length {length} must be a multiple of {multiple} to carry states")
    B, N = streams.shape
    for i in range(start, N - 1, length):
        n = min(length, N - 1 - i)
        x, y = streams[:, i : i + n], streams[:, i + 1 : i + 1 + n]
        pad = (-n) % multiple
        if pad:
            x = F.pad(x, (0, pad), value=0)  # right-pad: the real steps never see the padding (causal)
            y = F.pad(y, (0, pad), value=-100)
        yield x, y


def nll_sum(logits: torch.Tensor, targets: torch.Tensor) -> tuple[float, int]:
    """logits (..., V), targets (...) with -100 = ignore -> (summed NLL in nats, number of predicted chars)."""
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return float(loss), int((targets != -100).sum())


def bits_per_char(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean negative log2-likelihood: logits (..., V), targets (...) (ids, -100 = ignore) -> BPC."""
    total, count = nll_sum(logits, targets)
    if count == 0:
        raise ValueError("no targets to score (all are -100)")
    return total / count / math.log(2)
