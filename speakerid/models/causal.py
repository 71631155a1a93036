"""Causal, chunkable forward of a :class:`DilatedRNN` stack: every layer's state is carried between calls.

Dim legend: B batch, S steps in this chunk, Sp = S rounded up to a multiple of d, d a layer's dilation,
C input features, H hidden size.

A dilated layer computes h_t = f(x_t, h_{t-d}), so its whole state at a chunk boundary is its last d outputs
(GRU and tanh RNN: the output *is* the state). With ``buf`` = those d outputs in time order (``buf[:, j]`` is
h at time t0 - d + j) a chunk of any length S runs as ONE ordinary RNN call over d*B sequences: right-pad the
chunk to Sp (the padded steps come after every real one, so they change nothing real), fold
(Sp, B, C) -> (Sp/d, d*B, C) as ``DilatedRNN`` does, and start column j*B + b from ``buf[b, j]``. The first
call starts from zeros, i.e. c_t = 0 for t < 0 exactly as eq. (1): unlike ``DilatedRNN.forward`` (which
left-pads the whole input to a multiple of its period), the outputs do not depend on how the stream is cut.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .dilated_rnn import DilatedRNN

__all__ = ["causal_rnn", "initial_buffers", "check_causal"]


def check_causal(body) -> None:
    """Raise ValueError unless ``body`` is a DilatedRNN of GRU / tanh-RNN cells (LSTMs carry a cell state that
    is not their output; the dilated CNN has no state)."""
    if not isinstance(body, DilatedRNN) or body.cell not in ("gru", "rnn"):
        what = f"a {body.cell} DilatedRNN" if isinstance(body, DilatedRNN) else type(body).__name__
        raise ValueError(f"causal streaming needs a GRU or RNN DilatedRNN, got {what}")


def initial_buffers(body: DilatedRNN, batch: int, device=None) -> list[torch.Tensor]:
    """Zero states: one (B, d, H) tensor per layer."""
    return [torch.zeros(batch, d, h, device=device) for d, h in zip(body.dilations, body.hidden_sizes)]


def causal_rnn(
    body: DilatedRNN, x: torch.Tensor, buffers: list[torch.Tensor] | None = None
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(B, S, C) input, per-layer (B, d, H) states (None = zeros) -> ((B, S, H_last), new states)."""
    check_causal(body)
    B, S, _ = x.shape
    if buffers is None:
        buffers = initial_buffers(body, B, x.device)
    x = x.transpose(0, 1)  # (B, S, C) -> (S, B, C)
    new = []
    for i, (rnn, d, buf) in enumerate(zip(body.layers, body.dilations, buffers)):
        if i > 0 and body.dropout is not None:
            x = body.dropout(x)
        pad = (-S) % d
        xp = F.pad(x, (0, 0, 0, 0, 0, pad)).contiguous()  # right-pad: (S, B, C) -> (Sp, B, C)
        folded = xp.reshape((S + pad) // d, d * B, xp.shape[-1])  # (Sp, B, C) -> (Sp/d, d*B, C)
        h0 = buf.transpose(0, 1).reshape(1, d * B, buf.shape[-1]).contiguous()  # (B, d, H) -> (1, d*B, H)
        out, _ = rnn(folded, h0)  # one RNN call: (Sp/d, d*B, H)
        x = out.reshape(S + pad, B, out.shape[-1])[:S]  # (Sp/d, d*B, H) -> (S, B, H)
        new.append(torch.cat([buf, x.transpose(0, 1)], dim=1)[:, -d:])  # last d outputs: (B, d, H)
    return x.transpose(0, 1), new  # (B, S, H)
