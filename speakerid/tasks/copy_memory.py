"""Copy memory problem (paper section 4.1, figure 3).

Dim legend: B batch, T the delay (500 or 1000 in the paper), L = T + 20 the sequence length, K = 8 data symbols.

Each input sequence has length T + 20 (section 4.1, verbatim protocol):

    positions 0..9          10 data symbols drawn uniformly from 0..7
    positions 10..T+8       T - 1 blanks (symbol 8)
    positions T+9..T+19     11 delimiters (symbol 9); the first one signals "start recalling"

The targets are the 10 data symbols at the last 10 positions (T+10..T+19), and the loss is the average cross
entropy over those 10 steps only, so guessing gives ln 8 ~= 2.079. The earliest symbol has to be carried for
T + 10 steps.
"""

from __future__ import annotations

import torch

__all__ = [
    "N_DATA",
    "N_RECALL",
    "BLANK",
    "DELIMITER",
    "N_SYMBOLS",
    "copy_memory_batch",
    "CopyMemory",
    "mix_seed",
]

N_DATA = 8  # data symbols 0..7 (the output classes)
N_RECALL = 10  # symbols to memorise and recall
BLANK = 8
DELIMITER = 9
N_SYMBOLS = 10  # input alphabet: 8 data symbols + blank + delimiter


def copy_memory_batch(
    batch_size: int, T: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of the copy memory problem.

    Returns:
        x: (B, T + 20) int64 input symbols in 0..9.
        y: (B, 10) int64 targets in 0..7: the symbols to emit at the last 10 positions, ``y == x[:, :10]``.
    """
    if T < 1 or batch_size < 1:
        raise ValueError(f"need T >= 1 and batch_size >= 1, got T={T}, batch_size={batch_size}")
    data = torch.randint(0, N_DATA, (batch_size, N_RECALL), generator=generator)  # (B, 10)
    blanks = torch.full((batch_size, T - 1), BLANK, dtype=torch.int64)  # (B, T-1)
    delims = torch.full((batch_size, N_RECALL + 1), DELIMITER, dtype=torch.int64)  # (B, 11)
    x = torch.cat([data, blanks, delims], dim=1)  # (B, T+20)
    return x, data.clone()


class CopyMemory:
    """Deterministic streams of copy-memory batches.

    Training batch k is drawn from a generator seeded by (seed, k), so a run can resume at any batch;
    ``eval_set(n)`` is a fixed held-out set
    drawn from a separate stream (seeded by (seed, -1)), the same on every call.
    """

    def __init__(self, T: int, seed: int = 0):
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        self.T = T
        self.seed = seed

    @property
    def length(self) -> int:
        """L = T + 20 input steps."""
        return self.T + 2 * N_RECALL

    def train_batch(self, k: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Training batch number ``k``: (x (B, L), y (B, 10)), a function of (T, seed, k, batch_size) only."""
        return copy_memory_batch(batch_size, self.T, torch.Generator().manual_seed(mix_seed(self.seed, k)))

    def eval_set(self, n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed held-out set: x (n, L), y (n, 10)."""
        return copy_memory_batch(n, self.T, torch.Generator().manual_seed(mix_seed(self.seed, -1)))


def mix_seed(*ints: int) -> int:
    """A deterministic 63-bit seed from a tuple of ints (SplitMix64-style mixing), for random-access streams."""
    h = 0x9E3779B97F4A7C15
    for v in ints:
        h = ((h ^ (v & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
        h = (h * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return h & 0x7FFFFFFFFFFFFFFF
