"""The (generalized) Dilated RNN of Chang et al. (NeurIPS 2017), section 2.

Dim legend: B batch, T input steps, d a layer's dilation, Tp = T right-padded to a multiple of d,
C input features, H hidden size (per layer), L layers.

A layer with dilation d computes c_t = f(x_t, c_{t-d}) (eq. 1): d independent ordinary RNNs, one per
interleaved subsequence x[j], x[j+d], x[j+2d], ... With a time-major (Tp, B, C) tensor and d | Tp,

    x.view(Tp // d, d * B, C)        # (Tp, B, C) -> (Tp/d, d*B, C): row k, column j*B+b is x[k*d + j, b]

is exactly that fold, without a copy, so each layer is ONE call of the ordinary cuDNN/ATen RNN over d*B
sequences of Tp/d steps. Reshaping back is free as well. There is no per-timestep Python loop and no
``torch.cat`` of slices.

Padding is per layer (the authors' TensorFlow code does the same): a layer with dilation d right-pads its input
with (-T) % d zero steps, runs, and drops the padded outputs. Padding after the last real step can never reach a
real step (the recurrence is causal), so the outputs on the real steps are exactly eq. 1 with c_t = 0 for t < 0,
for every T, and no layer runs on padding beyond its own dilation. (Until 2026-12 the whole input was left-padded
to a multiple of the largest dilation: 520 copy-memory steps ran as 768 in every layer and the first real steps
saw the states left by the padding. Outputs are unchanged when T is a multiple of every dilation; models trained
with the old definition keep it with ``padding="period"``.)

State layout (``hx`` and the returned states): one entry per layer, shape (d, B, H_l) (LSTM: a tuple (h, c));
entry ``[j]`` is the state at time T - d + j, i.e. the newest state of the subsequence that the next chunk's
step j continues (time T + j depends on time T + j - d). States before the start are zeros. Feeding the states
back as ``hx`` continues the sequence exactly, for any chunk length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..theory import exponential_dilations
from . import cpu_rnn

__all__ = ["DilatedRNN", "exponential_dilations", "reference_dilated_rnn", "CELLS", "PADDINGS"]

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
IMPLS = ("auto", "cudnn", "cpu", "triton")
PADDINGS = ("layer", "period")


class DilatedRNN(nn.Module):
    """A stack of dilated recurrent layers (any dilations, per-layer hidden sizes, rnn/lstm/gru cells).

    Args:
        input_size: C, features per input step.
        hidden_size: H for every layer, or one H per layer.
        dilations: one positive int per layer (e.g. ``exponential_dilations(9)`` = 1, 2, ..., 256).
        cell: ``"rnn"`` (tanh), ``"lstm"`` or ``"gru"``.
        batch_first: input/output are (B, T, .) if True (default), else (T, B, .).
        dropout: dropout between layers (not after the last), as in ``nn.GRU``.
        impl: recurrence backend per layer: ``"cudnn"`` (the module's own cuDNN/ATen call), ``"cpu"`` (the
            fused CPU recurrence of ``speakerid.models.cpu_rnn``; GRU and tanh RNN, other layers use ATen),
            ``"triton"`` (the fused GPU kernels of ``speakerid.kernels``; GRU, tanh RNN, LSTM) or ``"auto"``:
            the fastest measured path per device and layer (benchmarks/train_step.py): on CPU the fused
            recurrence for layers with small steps (``cpu_rnn.faster_than_aten``) and ATen for the others,
            cuDNN on CUDA (the Triton kernels have not been measured on a GPU yet). Read at forward time;
            tracing and ONNX export always take the ATen call, which exports as one ONNX RNN node per layer.
        padding: ``"layer"`` (each layer right-pads to its own dilation: eq. 1 exactly; see the module docstring)
            or ``"period"``, the definition used until 2026-12 and by checkpoints trained with it: the whole input
            is left-padded with zeros to a multiple of ``period`` first (``hx`` then needs T to be a multiple).

    Shape:
        x: (B, T, C) -> outputs (B, T, H_last), states: a list with one entry per layer of shape (d, B, H_l)
        (LSTM: a tuple (h, c) of such tensors). Entry ``states[l][j]`` is the state at time T - d + j, i.e. the
        final state of the subsequence that ends there; feeding ``states`` back as ``hx`` continues the
        sequence exactly, for any T.
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
        padding: str = "layer",
    ):
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        self.impl = impl
        self.padding = padding
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
        self.period = math.lcm(*dilations)  # the fold's period (= max dilation for M^l lists)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        sizes = [input_size, *hidden]
        self.layers = nn.ModuleList(CELLS[cell](sizes[i], sizes[i + 1]) for i in range(len(dilations)))

    @property
    def output_size(self) -> int:
        return self.hidden_sizes[-1]

    def forward(
        self, x: torch.Tensor, hx: list | None = None, need_states: bool = True
    ) -> tuple[torch.Tensor, list | None]:
        """(B, T, C) -> ((B, T, H_last), [per-layer states (d, B, H_l)], see the module docstring).

        ``need_states=False`` returns None for the states (inference and ONNX export: one RNN call per layer
        for every cell; an LSTM layer whose T is not a multiple of d otherwise takes a second, one-row call to
        get its cell state at the last real step).
        """
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"expected input (B, T, {self.input_size}), got shape {tuple(x.shape)}")
        if hx is not None and len(hx) != len(self.layers):
            raise ValueError(f"hx must hold one state per layer ({len(self.layers)}), got {len(hx)}")
        if self.batch_first:
            x = x.transpose(0, 1)  # (B, T, C) -> (T, B, C)
        x = x.contiguous()
        lead = 0
        if self.padding == "period":
            lead = (-x.shape[0]) % self.period
            if hx is not None and lead:
                raise ValueError(
                    f"carrying states (hx) needs T to be a multiple of {self.period}; got {x.shape[0]}"
                )
            x = F.pad(
                x, (0, 0, 0, 0, lead, 0)
            )  # left-pad time: (T, B, C) -> (Tp, B, C); a pad of 0 is a no-op
        T, B = x.shape[0], x.shape[1]
        states = [] if need_states else None
        layer_call = _layer_call(self.impl, x.device)
        for i, (rnn, d) in enumerate(zip(self.layers, self.dilations)):
            if i > 0 and self.dropout is not None:
                x = self.dropout(x)
            h0 = None if hx is None else _fold_state(hx[i], d, B)
            if self.cell == "lstm" and need_states and T % d:
                y, state = _lstm_layer_split(layer_call, rnn, x, h0, d)
            else:
                y, hn = _layer(layer_call, rnn, x, h0, d)
                state = None if not need_states else _last_states(y, hn, hx, i, d)
            if need_states:
                states.append(state)
            x = y
        if self.padding == "period":
            x = x[lead:]  # (Tp, B, H) -> (T, B, H)
        if self.batch_first:
            x = x.transpose(0, 1)  # (T, B, H) -> (B, T, H)
        return x, states

    def extra_repr(self) -> str:
        return f"cell={self.cell}, dilations={self.dilations}, hidden={self.hidden_sizes}"


def _layer(layer_call, rnn, x: torch.Tensor, h0, d: int):
    """One dilated layer as ONE RNN call: (T, B, C) -> ((T, B, H), final states of the folded call)."""
    T, B = x.shape[0], x.shape[1]
    if d == 1:
        return layer_call(rnn, x, h0)
    pad = (-T) % d  # always applied (a pad of 0 is a no-op): no length-dependent branch in traced graphs
    xp = F.pad(x, (0, 0, 0, 0, 0, pad))  # right-pad time: (T, B, C) -> (Tp, B, C)
    folded = xp.reshape(xp.shape[0] // d, d * B, x.shape[-1])  # (Tp, B, C) -> (Tp/d, d*B, C), no copy
    out, hn = layer_call(rnn, folded, h0)  # (Tp/d, d*B, H)
    return out.reshape(-1, B, out.shape[-1])[:T], hn  # (Tp/d, d*B, H) -> (Tp, B, H) -> (T, B, H)


def _last_states(y: torch.Tensor, hn, hx, i: int, d: int):
    """GRU/RNN (h = output), or LSTM with d | T: the states at times T-d .. T-1 as (d, B, H)."""
    T, B = y.shape[0], y.shape[1]
    if isinstance(hn, tuple):  # LSTM, T a multiple of d: the folded call's final states are already in order
        return _unfold_state(hn, d, B)
    if T >= d:
        return y[T - d :]  # (d, B, H)
    prev = hx[i] if hx is not None else y.new_zeros(d, B, y.shape[-1])  # states before this chunk
    return torch.cat([prev, y])[-d:]  # (d + T, B, H) -> (d, B, H)


def _lstm_layer_split(layer_call, rnn, x: torch.Tensor, h0, d: int):
    """LSTM layer with T % d = r != 0, with exact final (h, c): full rows in one call, the last r steps in another.

    (T, B, C) -> ((T, B, H), (h, c) each (d, B, H) in the state layout of the module docstring).
    """
    T, B, C = x.shape
    q, r = divmod(T, d)
    H = rnn.hidden_size
    if q:
        out1, (h1, c1) = layer_call(rnn, x[: q * d].reshape(q, d * B, C), h0)  # (q, d*B, H)
        y1 = out1.reshape(q * d, B, H)
    else:
        zeros = x.new_zeros(1, d * B, H)
        h1, c1 = h0 if h0 is not None else (zeros, zeros)
        y1 = x.new_zeros(0, B, H)
    s1 = (h1[:, r * B :], c1[:, r * B :])  # subsequences r..d-1 end in the full rows
    out2, (h2, c2) = layer_call(rnn, x[q * d :].reshape(1, r * B, C), (h1[:, : r * B], c1[:, : r * B]))
    y = torch.cat([y1, out2.reshape(r, B, H)])  # (T, B, H)
    # Time T-d+j belongs to subsequence (r + j) % d: j < d-r -> s1 column r+j, j >= d-r -> s2 column j-(d-r).
    state = tuple(torch.cat([a, b], 1).reshape(d, B, H) for a, b in zip(s1, (h2, c2)))
    return y, state


def _layer_call(impl: str, device: torch.device):
    """The per-layer recurrence for ``impl`` on ``device`` (see ``DilatedRNN``'s ``impl``)."""
    if impl == "triton":
        return _triton_layer_call()
    if device.type == "cpu" and not _exporting():
        if impl == "cpu":
            return _cpu_layer_call
        if impl == "auto":
            return _auto_cpu_layer_call
    return _aten_layer_call


def _auto_cpu_layer_call(rnn, x, h0):
    """The fused CPU recurrence where it is the faster path (small steps: ``cpu_rnn.faster_than_aten``).

    Under CPU autocast (bf16/fp16) ATen's RNN is used: it follows autocast's casting rules, the fused path is fp32.
    """
    if cpu_rnn.faster_than_aten(rnn, x.shape[1]) and not torch.is_autocast_enabled("cpu"):
        return cpu_rnn.cpu_layer_forward(rnn, x, h0)
    return rnn(x, h0)


def _exporting() -> bool:
    """Tracing or ONNX export: the graph needs the ATen RNN ops (one ONNX GRU/RNN/LSTM node per layer)."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def _cpu_layer_call(rnn, x, h0):
    """The fused CPU recurrence where it applies (GRU, tanh RNN), else the ATen call."""
    if cpu_rnn.supports(rnn) and x.device.type == "cpu":
        return cpu_rnn.cpu_layer_forward(rnn, x, h0)
    return rnn(x, h0)


def _aten_layer_call(rnn, x, h0):
    """The module's own cuDNN/ATen call: (T', N, C) -> ((T', N, H), final state(s) (1, N, H))."""
    return rnn(x, h0)


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

    Uses the layers' own weights one cell step at a time with c_t = f(x_t, c_{t-d}), c_{t<0} = 0 (eq. 1, no
    padding). Slow by design; it exists to check the fold.
    """
    assert model.batch_first, "reference expects batch_first=True"
    lead = (-x.shape[1]) % model.period if model.padding == "period" else 0
    x = F.pad(x, (0, 0, lead, 0))  # "period": the legacy whole-input left padding
    B, T, _ = x.shape
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
    return torch.stack(seq, 1)[:, lead:]
