"""The (generalized) Dilated RNN of Chang et al. (NeurIPS 2017), section 2.

Dim legend: B batch, T input steps, Tp = T padded to a multiple of the largest dilation, d a layer's dilation,
C input features, H hidden size (per layer), L layers.

A layer with dilation d computes c_t = f(x_t, c_{t-d}) (eq. 1): d independent ordinary RNNs, one per
interleaved subsequence x[j], x[j+d], x[j+2d], ... With a time-major (Tp, B, C) tensor and d | Tp,

    x.view(Tp // d, d * B, C)        # (Tp, B, C) -> (Tp/d, d*B, C): row k, column j*B+b is x[k*d + j, b]

is exactly that fold, without a copy, so each layer is ONE call of the ordinary cuDNN/ATen RNN over d*B
sequences of Tp/d steps. Reshaping back is free as well. There is no per-timestep Python loop and no
``torch.cat`` of slices.

Padding: the input is left-padded with zeros up to a multiple of the largest dilation, so the last step is a
real sample (classification reads the last step). The padded steps are part of the model's definition: the
per-timestep reference in ``reference_dilated_rnn`` pads the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..theory import exponential_dilations

__all__ = ["DilatedRNN", "exponential_dilations", "reference_dilated_rnn", "CELLS"]

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
IMPLS = ("auto", "cudnn", "triton")


class DilatedRNN(nn.Module):
    """A stack of dilated recurrent layers (any dilations, per-layer hidden sizes, rnn/lstm/gru cells).

    Args:
        input_size: C, features per input step.
        hidden_size: H for every layer, or one H per layer.
        dilations: one positive int per layer (e.g. ``exponential_dilations(9)`` = 1, 2, ..., 256).
        cell: ``"rnn"`` (tanh), ``"lstm"`` or ``"gru"``.
        batch_first: input/output are (B, T, .) if True (default), else (T, B, .).
        dropout: dropout between layers (not after the last), as in ``nn.GRU``.
        impl: recurrence backend per layer: ``"cudnn"`` (the module's own cuDNN/ATen call), ``"triton"`` (the
            fused kernels of ``speakerid.kernels``; GRU, tanh RNN, LSTM) or ``"auto"`` (currently always
            cuDNN: the Triton kernels have not been measured on a GPU yet). Read at forward time.

    Shape:
        x: (B, T, C) -> outputs (B, T, H_last), states: a list with one entry per layer of shape (d, B, H_l)
        (LSTM: a tuple (h, c) of such tensors). Entry ``states[l][j]`` is the state at time T - d + j, i.e. the
        final state of the subsequence that ends there; feeding ``states`` back as ``hx`` continues the
        sequence exactly when T is a multiple of the largest dilation.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int | Sequence[int],
        dilations: Sequence[int],
        cell: str = "gru",
        batch_first: bool = True,
        dropout: float = 0.0,
        impl: str = "auto",
    ):
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.impl = impl
        dilations = [int(d) for d in dilations]
        if not dilations or any(d < 1 for d in dilations):
            raise ValueError(f"dilations must be a non-empty list of positive ints, got {dilations}")
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        hidden = [int(hidden_size)] * len(dilations) if isinstance(hidden_size, int) else list(hidden_size)
        if len(hidden) != len(dilations):
            raise ValueError(f"got {len(hidden)} hidden sizes for {len(dilations)} dilations")
        self.input_size = input_size
        self.hidden_sizes = hidden
        self.dilations = dilations
        self.cell = cell
        self.batch_first = batch_first
        self.period = math.lcm(*dilations)  # pad T to a multiple of this (= max dilation for M^l lists)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        sizes = [input_size, *hidden]
        self.layers = nn.ModuleList(CELLS[cell](sizes[i], sizes[i + 1]) for i in range(len(dilations)))

    @property
    def output_size(self) -> int:
        return self.hidden_sizes[-1]

    def forward(self, x: torch.Tensor, hx: list | None = None) -> tuple[torch.Tensor, list]:
        """(B, T, C) -> ((B, T, H_last), [per-layer final states (d, B, H_l)])."""
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"expected input (B, T, {self.input_size}), got shape {tuple(x.shape)}")
        if self.batch_first:
            x = x.transpose(0, 1)  # (B, T, C) -> (T, B, C)
        T, B = x.shape[0], x.shape[1]
        pad = (-T) % self.period
        if hx is not None and pad:
            raise ValueError(f"carrying states (hx) needs T to be a multiple of {self.period}; got T={T}")
        if pad:
            x = F.pad(x, (0, 0, 0, 0, pad, 0))  # left-pad time: (T, B, C) -> (Tp, B, C)
        x = x.contiguous()
        Tp = T + pad
        states = []
        layer_call = _triton_layer_call() if self.impl == "triton" else None  # "auto" -> cuDNN for now
        for i, (rnn, d) in enumerate(zip(self.layers, self.dilations)):
            if i > 0 and self.dropout is not None:
                x = self.dropout(x)
            folded = x.reshape(Tp // d, d * B, x.shape[-1])  # (Tp, B, C) -> (Tp/d, d*B, C), no copy
            h0 = None
            if hx is not None:
                h0 = _fold_state(hx[i], d, B)
            if layer_call is not None:
                out, hn = layer_call(rnn, folded, h0)  # fused Triton kernel: (Tp/d, d*B, H)
            else:
                out, hn = rnn(folded, h0)  # one cuDNN/ATen call: (Tp/d, d*B, H)
            x = out.reshape(Tp, B, out.shape[-1])  # (Tp/d, d*B, H) -> (Tp, B, H), no copy
            states.append(_unfold_state(hn, d, B))
        if pad:
            x = x[pad:]
        if self.batch_first:
            x = x.transpose(0, 1)  # (T, B, H) -> (B, T, H)
        return x, states

    def extra_repr(self) -> str:
        return f"cell={self.cell}, dilations={self.dilations}, hidden={self.hidden_sizes}"


def _triton_layer_call():
    """``speakerid.kernels.rnn_layer_forward`` (imported lazily: triton is optional)."""
    from ..kernels import rnn_layer_forward

    return rnn_layer_forward


def _unfold_state(hn, d: int, B: int):
    """cuDNN's (1, d*B, H) final state(s) -> (d, B, H)."""
    if isinstance(hn, tuple):
        return tuple(h.reshape(d, B, h.shape[-1]) for h in hn)
    return hn.reshape(d, B, hn.shape[-1])


def _fold_state(s, d: int, B: int):
    """(d, B, H) -> (1, d*B, H) for the RNN call."""
    if isinstance(s, (tuple, list)):
        return tuple(h.reshape(1, d * B, h.shape[-1]).contiguous() for h in s)
    return s.reshape(1, d * B, s.shape[-1]).contiguous()


def reference_dilated_rnn(model: DilatedRNN, x: torch.Tensor) -> torch.Tensor:
    """Straightforward per-timestep evaluation of ``model`` (for tests): (B, T, C) -> (B, T, H_last).

    Uses the layers' own weights one cell step at a time with c_t = f(x_t, c_{t-d}), c_{t<0} = 0, over the
    same left-padded sequence. Slow by design; it exists to check the fold.
    """
    assert model.batch_first, "reference expects batch_first=True"
    B, T, _ = x.shape
    pad = (-T) % model.period
    x = F.pad(x, (0, 0, pad, 0))  # (B, Tp, C)
    seq = list(x.unbind(1))
    for rnn, d in zip(model.layers, model.dilations):
        H = rnn.hidden_size
        w_ih, w_hh, b_ih, b_hh = rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0
        zeros = x.new_zeros(B, H)
        hs, cs, out = [], [], []
        for t, xt in enumerate(seq):
            h_prev = hs[t - d] if t >= d else zeros
            gi = xt @ w_ih.T + b_ih
            gh = h_prev @ w_hh.T + b_hh
            if model.cell == "rnn":
                h = torch.tanh(gi + gh)
            elif model.cell == "gru":
                r = torch.sigmoid(gi[:, :H] + gh[:, :H])
                z = torch.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
                n = torch.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
                h = (1 - z) * n + z * h_prev
            else:  # lstm
                c_prev = cs[t - d] if t >= d else zeros
                g = gi + gh
                i_, f_, g_, o_ = g.chunk(4, dim=1)
                c = torch.sigmoid(f_) * c_prev + torch.sigmoid(i_) * torch.tanh(g_)
                h = torch.sigmoid(o_) * torch.tanh(c)
                cs.append(c)
            hs.append(h)
            out.append(h)
        seq = out
    return torch.stack(seq, 1)[:, pad:]
