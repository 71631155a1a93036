"""A fused CPU recurrence for one-layer GRU and tanh-RNN layers (the ``impl="cpu"`` path of ``DilatedRNN``).

Dim legend: T' steps of the folded call, N sequences (d * B for a dilated layer), C input features, H hidden.

With hidden sizes of 10-50 the arithmetic of a step is tiny and the time goes into per-op overhead: ATen's CPU
RNN records ~15 autograd nodes per step, and the backward pass walks them one by one. Here the recurrence is one
``torch.autograd.Function`` with the work arranged so that only what truly depends on the previous step runs
inside the time loop:

- forward: one GEMM for the input projection of all T' steps, then per step one ``addmm`` (h W_hh^T, with the
  input projection of the r/z gates as its bias) and the gate math in 4 ops (GRU; tanh RNN: 2 ops in all);
- backward: the local derivatives of every gate are computed for all steps at once before the loop, so a GRU
  step needs 3 ops (tanh RNN: 2): dh_t -> dgh_t -> dh_{t-1}; the weight and input gradients are then 3 GEMMs
  over all steps.

The math is PyTorch's (GRU with the reset gate applied after the hidden matmul, ``linear_before_reset``), so the
layer's own parameters are used unchanged and results match ``nn.GRU`` / ``nn.RNN`` to float rounding (tests).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["supports", "cpu_layer_forward", "AUTO_MAX_STEP_SIZE", "faster_than_aten"]

# ``impl="auto"`` takes this path for a layer only while one step is small, N * H <= this many elements: measured on
# the 2-core VM (one GRU layer, fwd + bwd, 1 thread), the fused loop is 1.2-2.3x faster than ATen up to
# N * H ~ 10k (H 10-50, N 16-1024) and 0.25-0.8x beyond (N * H >= 20k, where ATen's per-step kernels win).
AUTO_MAX_STEP_SIZE = 12288


def faster_than_aten(layer: nn.RNNBase, n_sequences: int) -> bool:
    """``impl="auto"``'s choice for one folded call of ``layer`` over ``n_sequences`` sequences (N)."""
    return supports(layer) and n_sequences * layer.hidden_size <= AUTO_MAX_STEP_SIZE


def supports(layer: nn.RNNBase) -> bool:
    """True for the layers this path runs: one-layer, unidirectional GRU or tanh RNN with biases."""
    if layer.num_layers != 1 or layer.bidirectional or not layer.bias or getattr(layer, "proj_size", 0):
        return False
    if isinstance(layer, nn.GRU):
        return True
    return isinstance(layer, nn.RNN) and layer.nonlinearity == "tanh"


def cpu_layer_forward(layer: nn.RNNBase, x: torch.Tensor, h0: torch.Tensor | None = None):
    """Drop-in for ``layer(x, h0)`` (time-major): x (T', N, C), h0 (1, N, H) or None -> ((T', N, H), (1, N, H))."""
    if not supports(layer):
        raise ValueError(f"the fused CPU path runs one-layer GRU / tanh RNN layers with biases, got {layer}")
    if x.dim() != 3 or x.shape[-1] != layer.input_size:
        raise ValueError(f"expected (T', N, {layer.input_size}) input, got shape {tuple(x.shape)}")
    N, H = x.shape[1], layer.hidden_size
    dtype = layer.weight_hh_l0.dtype  # under autocast (bf16 inputs) the recurrence runs in the weights' dtype
    x = x.to(dtype)
    h0 = x.new_zeros(N, H) if h0 is None else h0.reshape(N, H).to(dtype)
    fn = _GRU if isinstance(layer, nn.GRU) else _TanhRNN
    with torch.autocast("cpu", enabled=False):
        out = fn.apply(x, h0, layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0)
    return out, out[-1:]


class _GRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh):
        T, N, C = x.shape
        H = w_hh.shape[1]
        gi = torch.addmm(b_ih, x.reshape(T * N, C), w_ih.t()).view(T, N, 3 * H)  # all steps in one GEMM
        # The step's addmm starts from [gi_r + b_hr, gi_z + b_hz, b_hn], so it yields the r/z pre-activations and
        # h W_hn^T + b_hn (needed apart: r multiplies it) at once.
        pre = torch.cat([gi[..., : 2 * H] + b_hh[: 2 * H], b_hh[2 * H :].expand(T, N, H)], 2)  # (T, N, 3H)
        w_hh_t = w_hh.t()
        gh = x.new_empty(T, N, 3 * H)  # [r/z pre-activations, h_{t-1} W_hn^T + b_hn], kept for backward
        rz = x.new_empty(T, N, 2 * H)  # reset and update gates
        n = x.new_empty(T, N, H)  # candidate
        out = x.new_empty(T, N, H)
        # Per-step views made once (one unbind each), so the loop does no tensor indexing.
        pre_t, gi_n = pre.unbind(0), gi[..., 2 * H :].unbind(0)
        gh_t, gh_rz, gh_n = gh.unbind(0), gh[..., : 2 * H].unbind(0), gh[..., 2 * H :].unbind(0)
        rz_t, r_t, z_t = rz.unbind(0), rz[..., :H].unbind(0), rz[..., H:].unbind(0)
        n_t, out_t = n.unbind(0), out.unbind(0)
        h = h0
        for t in range(T):  # 5 ops per step
            torch.addmm(pre_t[t], h, w_hh_t, out=gh_t[t])
            torch.sigmoid(gh_rz[t], out=rz_t[t])
            torch.addcmul(gi_n[t], r_t[t], gh_n[t], out=n_t[t]).tanh_()
            h = torch.lerp(n_t[t], h, z_t[t], out=out_t[t])  # n + z (h - n) = (1 - z) n + z h
        ctx.save_for_backward(x, h0, w_ih, w_hh, gh, rz, n, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, h0, w_ih, w_hh, gh, rz, n, out = ctx.saved_tensors
        T, N, C = x.shape
        H = w_hh.shape[1]
        h_prev = torch.cat([h0[None], out[:-1]])  # (T, N, H)
        r, z, ghn = rz[..., :H], rz[..., H:], gh[..., 2 * H :]
        # Local derivatives for all steps at once: d(pre-activation) = dh_t * G.
        p = (1 - z) * (1 - n * n)  # candidate pre-activation
        g_gh = torch.stack([p * ghn * r * (1 - r), (h_prev - n) * z * (1 - z), p * r], 2)  # (T, N, 3, H)
        dh_all = x.new_empty(T, N, 1, H)  # dL/dh_t, total (from the output and from step t + 1)
        dgh = x.new_empty(T, N, 3, H)
        grad_out = grad_out.contiguous()
        go_t, z_t, g_t = grad_out.unbind(0), z.unbind(0), g_gh.unbind(0)
        dh_t, dgh_t, dgh2_t = dh_all.unbind(0), dgh.unbind(0), dgh.view(T, N, 3 * H).unbind(0)
        dh_t[T - 1].copy_(go_t[T - 1][:, None])
        for t in range(T - 1, 0, -1):
            torch.mul(dh_t[t], g_t[t], out=dgh_t[t])
            torch.addcmul(go_t[t - 1], dh_t[t][:, 0], z_t[t], out=dh_t[t - 1][:, 0]).addmm_(dgh2_t[t], w_hh)
        torch.mul(dh_t[0], g_t[0], out=dgh_t[0])
        dh = torch.addmm(dh_t[0][:, 0] * z_t[0], dgh2_t[0], w_hh)
        dh_all = dh_all.view(T, N, H)
        dgh = dgh.view(T * N, 3 * H)
        dgi = dgh.clone().view(T, N, 3, H)
        dgi[:, :, 2].copy_(dh_all * p)  # the input part of the candidate is not scaled by r
        dgi = dgi.view(T * N, 3 * H)
        grad_x = (dgi @ w_ih).view(T, N, C) if ctx.needs_input_grad[0] else None
        grad_w_ih = dgi.t() @ x.reshape(T * N, C)
        grad_w_hh = dgh.t() @ h_prev.reshape(T * N, H)
        return grad_x, dh, grad_w_ih, grad_w_hh, dgi.sum(0), dgh.sum(0)


class _TanhRNN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh):
        T, N, C = x.shape
        H = w_hh.shape[1]
        out = torch.addmm(b_ih + b_hh, x.reshape(T * N, C), w_ih.t()).view(T, N, H)  # all steps in one GEMM
        w_hh_t = w_hh.t()
        h = h0
        for o in out.unbind(0):
            h = o.addmm_(h, w_hh_t).tanh_()
        ctx.save_for_backward(x, h0, w_ih, w_hh, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, h0, w_ih, w_hh, out = ctx.saved_tensors
        T, N, C = x.shape
        H = w_hh.shape[1]
        p = 1 - out * out  # tanh'
        da = x.new_empty(T, N, H)  # d(pre-activation)
        dh_all = x.new_empty(T, N, H)  # dL/dh_t, total
        grad_out = grad_out.contiguous()
        go_t, p_t, da_t, dh_t = grad_out.unbind(0), p.unbind(0), da.unbind(0), dh_all.unbind(0)
        dh_t[T - 1].copy_(go_t[T - 1])
        for t in range(T - 1, 0, -1):
            torch.addmm(go_t[t - 1], torch.mul(dh_t[t], p_t[t], out=da_t[t]), w_hh, out=dh_t[t - 1])
        dh = torch.mul(dh_t[0], p_t[0], out=da_t[0]) @ w_hh
        da = da.view(T * N, H)
        h_prev = torch.cat([h0[None], out[:-1]]).view(T * N, H)
        grad_x = (da @ w_ih).view(T, N, C) if ctx.needs_input_grad[0] else None
        db = da.sum(0)
        return grad_x, dh, da.t() @ x.reshape(T * N, C), da.t() @ h_prev, db, db
