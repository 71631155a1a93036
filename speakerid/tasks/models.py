"""Task heads for the paper's secondary benchmarks (copy memory, pixel MNIST, PTB characters).

Dim legend: B batch, T steps, V input symbols (10 for copy memory, 50 for PTB), H hidden of the last layer,
K output classes per step (8 for copy memory, 50 for PTB).

- ``StepwiseModel``: symbols -> one-hot (B, T, V) -> DilatedRNN / DilatedCNN -> the same Linear at every step
  -> logits (B, T, K). Copy memory scores only the last 10 steps; the PTB language model scores every step and
  carries the recurrent state across BPTT chunks. One-hot inputs match the paper's parameter counts (table 2:
  a 1k-unit GRU on 50 one-hot symbols has 3.19 M parameters).
- ``mnist_classifier``: the library's ``SequenceClassifier`` on (B, 784, 1) pixels, last-step readout (table 1).
- ``init_weights_`` (from ``speakerid.models.init``): ``"default"`` (PyTorch), ``"normal"`` (the paper's text) or
  ``"tf"`` (the authors' TensorFlow code).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models import DilatedCNN, DilatedRNN, ModelConfig, SequenceClassifier
from ..models.init import INITS, init_weights_

__all__ = ["StepwiseModel", "detach_state", "mnist_classifier", "init_weights_", "INITS"]


class StepwiseModel(nn.Module):
    """One-hot symbols -> dilated recurrent (or convolutional) body -> per-step linear readout.

    Args:
        n_symbols: V, input alphabet size (inputs are ids in [0, V)).
        n_classes: K, outputs per step.
        hidden: H per layer (an int applies to every layer).
        dilations: one per layer; all ones = the stacked baseline.
        arch: ``"rnn"`` (``DilatedRNN``) or ``"cnn"`` (``DilatedCNN``, kernel 2, no carried state).
        cell: ``"rnn"``, ``"lstm"`` or ``"gru"`` (arch ``"rnn"``).
        input_dropout: dropout on the one-hot input (the paper's only regulariser on PTB).

    Shape:
        ``forward(x (B, T) int64, state=None) -> (logits (B, T, K), state)``; ``state`` is the DilatedRNN's
        per-layer final states (None for the CNN). Passing it back continues the sequence exactly (any T).
    """

    def __init__(
        self,
        n_symbols: int,
        n_classes: int,
        hidden: int | Sequence[int],
        dilations: Sequence[int],
        arch: str = "rnn",
        cell: str = "gru",
        input_dropout: float = 0.0,
        kernel_size: int = 2,
    ):
        super().__init__()
        dilations = list(dilations)
        hidden = [int(hidden)] * len(dilations) if isinstance(hidden, int) else list(hidden)
        self.n_symbols = n_symbols
        if arch == "rnn":
            self.body = DilatedRNN(n_symbols, hidden, dilations, cell=cell)
            self.period = self.body.period
        elif arch == "cnn":
            self.body = DilatedCNN(n_symbols, hidden, dilations, kernel_size)
            self.period = 1
        else:
            raise ValueError(f"arch must be 'rnn' or 'cnn', got {arch!r}")
        self.arch = arch
        self.input_dropout = nn.Dropout(input_dropout) if input_dropout > 0 else None
        self.head = nn.Linear(hidden[-1], n_classes)

    def forward(self, x: torch.Tensor, state: list | None = None) -> tuple[torch.Tensor, list | None]:
        """x (B, T) int64 -> (logits (B, T, K), per-layer states or None)."""
        if x.dim() != 2 or x.dtype != torch.int64:
            raise ValueError(f"expected int64 symbol ids (B, T), got {x.dtype} of shape {tuple(x.shape)}")
        h = F.one_hot(x, self.n_symbols).float()  # (B, T) -> (B, T, V)
        if self.input_dropout is not None:
            h = self.input_dropout(h)
        if self.arch == "cnn":
            if state is not None:
                raise ValueError("the dilated CNN carries no state between chunks")
            out, new_state = self.body(h)  # (B, T, H), None
        else:
            out, new_state = self.body(h, state)  # (B, T, H), [(d, B, H_l)]
        return self.head(out), new_state  # (B, T, K)


def detach_state(state):
    """Cut the graph of carried states (truncated BPTT); handles LSTM (h, c) tuples and None."""
    if state is None:
        return None
    return [tuple(s.detach() for s in st) if isinstance(st, tuple) else st.detach() for st in state]


def mnist_classifier(
    arch: str, cell: str, hidden: Sequence[int], dilations: Sequence[int], n_classes: int = 10, **kw
) -> SequenceClassifier:
    """Table 1 models: (B, T, 1) pixels -> logits (B, 10) from the last step.

    Dilations starting above 1 (figure 6) make the generalized model; its last ``dilations[0]`` outputs are fused
    by the 1-by-f convolution (``fusion=0`` = automatic).
    """
    config = ModelConfig(
        arch=arch,
        cell=cell,
        hidden=list(hidden),
        dilations=list(dilations),
        n_classes=n_classes,
        frontend="none",
        input_size=1,
        fusion=0,
        normalize=False,
        **kw,
    )
    return SequenceClassifier(config)
