"""Fused Triton kernels for the recurrent part of one (folded) dilated GRU / tanh-RNN / LSTM layer.

Dim legend: S time steps of the folded layer (Tp / d), N independent sequences (d * B), H hidden size,
G gates (GRU 3: r, z, n; LSTM 4: i, f, g, o; RNN 1), HP = H padded to a power of two >= 16 (tl.dot tiles),
BLOCK_N sequences per program.

A dilated layer folded to (S, N, C) is N independent ordinary RNNs. The input projection of all steps,
``gi = x @ W_ih^T + b_ih`` (S, N, G*H), is ONE big matmul done by PyTorch outside the kernel. The forward
kernel then gives each program BLOCK_N sequences, keeps W_hh (as G padded HP x HP tiles) and b_hh on chip
for the whole sequence, loops over the S steps inside the kernel and writes, per step, only the output h
(S, N, H) and, when a gradient is needed, the gate activations backward needs (GRU: r, z, n and
hn = h W_hn^T + b_hn; LSTM: i, f, g, o and the cell state c). The backward kernel runs time in reverse and
writes d(gi) (S, N, G*H) (for the GRU also d(hn) (S, N, H), the n-gate part of d(gh)), plus dh0 (and dc0);
dW_hh and db_hh are then big tensor-core matmuls / reductions outside the loop
(sum_t dgh_t^T h_{t-1}), and dx, dW_ih, db_ih come from PyTorch's autograd of the input projection.

Equations and gate order are exactly PyTorch's (``nn.GRU``, ``nn.RNN`` (tanh), ``nn.LSTM``), so weights
are interchangeable. Precision: the recurrent state, gate math and the dot accumulators are fp32 for
fp32/fp16/bf16 inputs (fp64 for fp64 inputs); fp16/bf16 inputs use half-precision tensor-core dots with
fp32 accumulation and store outputs/saved activations in the input dtype. fp32 dots use 3xTF32
tensor-core MMAs (``input_precision="tf32x3"``, about fp32 accurate; plain TF32 when
``torch.backends.cuda.matmul.allow_tf32`` is set; see ``KernelConfig.fp32_precision``).

Backends: on a CUDA device the kernels are compiled by Triton. Without a GPU they run on CPU tensors under
Triton's interpreter, which is chosen when this module is *imported*: set ``TRITON_INTERPRET=1`` before
the first import (tests do). ``triton_available(device)`` says whether a launch can work.

Each kernel launch is wrapped in a ``torch.library.custom_op`` (opaque to torch.compile, with a fake
implementation for tracing) and the ops are tied together by ``torch.autograd.Function``s, so the layer
works with torch.compile off and on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

try:  # Triton is optional: the module imports without it, and the ops raise TritonUnavailableError.
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - depends on the environment
    triton = None
    tl = None
    HAS_TRITON = False

__all__ = [
    "HAS_TRITON",
    "KernelConfig",
    "TritonUnavailableError",
    "UnsupportedLayerError",
    "compile_offline",
    "configure",
    "fused_gru",
    "fused_lstm",
    "fused_rnn_tanh",
    "interpreter_active",
    "kernel_config",
    "rnn_layer_forward",
    "triton_available",
]


class TritonUnavailableError(RuntimeError):
    """The Triton kernels cannot run here (no triton, or a CPU tensor without TRITON_INTERPRET=1)."""


class UnsupportedLayerError(ValueError):
    """The nn.RNN/GRU/LSTM layer has a configuration the fused kernels do not implement."""


_FP32_PRECISIONS = ("auto", "ieee", "tf32", "tf32x3")


@dataclass
class KernelConfig:
    """Launch parameters: GPU tuning knobs. Defaults are spill-free on sm_90 (checked offline with ptxas,
    see docs/triton_kernel.md) but have not been timed on a GPU yet.

    block_n: sequences per program, a power of two >= 16 (tl.dot needs M >= 16); 0 = default (16).
    num_warps: warps per program (8: every kernel/dtype fits in registers at block_n = 16).
    num_stages: software-pipelining depth (GPU only; the kernels also prefetch step t+1 themselves).
    fp32_precision: tl.dot mode for fp32 inputs on a GPU: "tf32x3" (3 TF32 tensor-core MMAs, about fp32
        accurate), "tf32" (1 MMA, 10-bit mantissa), "ieee" (CUDA-core FMA: spills, LSTM does not compile
        with Triton 3.9 on sm_90) or "auto" = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "tf32x3".
        The interpreter always computes exact fp32.
    """

    block_n: int = 0
    num_warps: int = 8
    num_stages: int = 2
    fp32_precision: str = "auto"


_CONFIG = KernelConfig()


def configure(
    block_n: int | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
    fp32_precision: str | None = None,
) -> None:
    """Set the launch parameters used by all later launches (see :class:`KernelConfig`)."""
    if block_n is not None:
        if block_n != 0 and (block_n < 16 or block_n & (block_n - 1)):
            raise ValueError(f"block_n must be 0 (default) or a power of two >= 16, got {block_n}")
        _CONFIG.block_n = int(block_n)
    if num_warps is not None:
        if num_warps < 1 or num_warps & (num_warps - 1):
            raise ValueError(f"num_warps must be a power of two, got {num_warps}")
        _CONFIG.num_warps = int(num_warps)
    if num_stages is not None:
        if num_stages < 1:
            raise ValueError(f"num_stages must be >= 1, got {num_stages}")
        _CONFIG.num_stages = int(num_stages)
    if fp32_precision is not None:
        if fp32_precision not in _FP32_PRECISIONS:
            raise ValueError(f"fp32_precision must be one of {_FP32_PRECISIONS}, got {fp32_precision!r}")
        _CONFIG.fp32_precision = fp32_precision


def kernel_config() -> KernelConfig:
    """A copy of the current launch parameters."""
    return KernelConfig(**vars(_CONFIG))


def interpreter_active() -> bool:
    """True when the kernels were built for Triton's CPU interpreter (TRITON_INTERPRET=1 at import)."""
    if not HAS_TRITON:
        return False
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_gru_fwd_kernel, InterpretedFunction)


def triton_available(device: torch.device | str | None = None) -> bool:
    """Whether the fused kernels can run on ``device`` (default: the current CUDA device if any).

    False when triton is not importable, and on CPU-only machines unless TRITON_INTERPRET=1 was set
    before this module was imported (then CPU tensors run in the interpreter).
    """
    if not HAS_TRITON:
        return False
    if interpreter_active():
        return True
    if device is not None and torch.device(device).type != "cuda":
        return False
    return torch.cuda.is_available()


# ----------------------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------------------

if HAS_TRITON:

    @triton.jit
    def _sigmoid(x):
        return 1.0 / (1.0 + tl.exp(-x))

    @triton.jit
    def _tanh(x):
        # tanh(|x|) = (1 - e^{-2|x|}) / (1 + e^{-2|x|}): no overflow, portable (GPU and interpreter).
        e = tl.exp(-2.0 * tl.abs(x))
        t = (1.0 - e) / (1.0 + e)
        return tl.where(x >= 0, t, -t)

    @triton.jit
    def _load_w(w_ptr, gate, H: tl.constexpr, HP: tl.constexpr, TRANSPOSE: tl.constexpr):
        """Gate ``gate``'s (H, H) block of W_hh (G*H, H), zero-padded to (HP, HP).

        TRANSPOSE: tile[k, j] = W[gate*H + j, k] (for h @ W_g^T), else tile[j, k] = W[gate*H + j, k].
        Loaded once per program; as a loop-invariant tl.dot operand it stays in shared memory on a GPU.
        """
        i = tl.arange(0, HP)[:, None]
        j = tl.arange(0, HP)[None, :]
        m = (i < H) & (j < H)
        if TRANSPOSE:
            ptrs = w_ptr + (gate * H + j) * H + i
        else:
            ptrs = w_ptr + (gate * H + i) * H + j
        return tl.load(ptrs, mask=m, other=0.0)

    @triton.jit
    def _load_bias(b_ptr, gate, H: tl.constexpr, HP: tl.constexpr, ACC: tl.constexpr):
        """(1, HP) row of b_hh for one gate, zero-padded, in the accumulator dtype."""
        cols = tl.arange(0, HP)
        return tl.load(b_ptr + gate * H + cols, mask=cols < H, other=0.0).to(ACC)[None, :]

    @triton.jit
    def _step_ptr(ptr, t, step):
        """ptr + t * step with 64-bit arithmetic (t, step 32-bit scalars)."""
        return ptr + tl.cast(t, tl.int64) * step

    # Conventions shared by all kernels. Per-step tensors are (S, N, K) contiguous, K = G*H; a program owns
    # rows [pid*BLOCK_N, pid*BLOCK_N + BLOCK_N) of N; ``off`` / ``goff`` are the (BLOCK_N, HP) element
    # offsets inside one step (32-bit: N*K < 2**31 is checked on the host) and scalar pointers advance by
    # N*K per step (64-bit), so no per-element 64-bit offsets live in registers. The loads of step t+1 (which
    # do not depend on the recurrence) are issued before step t's math: a register double buffer that takes
    # global-memory latency off the serial chain. Padded rows/columns load zeros and are never stored.

    @triton.jit
    def _rnn_fwd_kernel(
        gi_ptr,  # (S, N, H)
        w_ptr,  # (H, H)
        b_ptr,  # (H,)
        h0_ptr,  # (N, H) if HAS_H0
        out_ptr,  # (S, N, H)
        S,
        N,
        H: tl.constexpr,
        HP: tl.constexpr,
        BLOCK_N: tl.constexpr,
        HAS_H0: tl.constexpr,
        ACC: tl.constexpr,
        DOT: tl.constexpr,
        PREC: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        cols = tl.arange(0, HP)
        mask = (rows[:, None] < N) & (cols[None, :] < H)
        wt = _load_w(w_ptr, 0, H, HP, True).to(DOT)
        b = _load_bias(b_ptr, 0, H, HP, ACC)
        off = rows[:, None] * H + cols[None, :]
        if HAS_H0:
            h = tl.load(h0_ptr + off, mask=mask, other=0.0).to(ACC)
        else:
            h = tl.zeros((BLOCK_N, HP), ACC)
        step = N * H
        x = tl.load(gi_ptr + off, mask=mask, other=0.0)
        for t in range(S):
            nxt = mask & ((rows[:, None] * 0 + t) < S - 1)
            x_next = tl.load(_step_ptr(gi_ptr, t + 1, step) + off, mask=nxt, other=0.0)
            a = tl.dot(h.to(DOT), wt, input_precision=PREC, out_dtype=ACC)
            h = _tanh(x.to(ACC) + a + b)
            tl.store(_step_ptr(out_ptr, t, step) + off, h.to(out_ptr.dtype.element_ty), mask=mask)
            x = x_next

    @triton.jit
    def _rnn_bwd_kernel(
        w_ptr,  # (H, H)
        out_ptr,  # (S, N, H)
        dout_ptr,  # (S, N, H)
        dgi_ptr,  # (S, N, H) written
        dh0_ptr,  # (N, H) written
        S,
        N,
        H: tl.constexpr,
        HP: tl.constexpr,
        BLOCK_N: tl.constexpr,
        ACC: tl.constexpr,
        DOT: tl.constexpr,
        PREC: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        cols = tl.arange(0, HP)
        mask = (rows[:, None] < N) & (cols[None, :] < H)
        w = _load_w(w_ptr, 0, H, HP, False).to(DOT)
        off = rows[:, None] * H + cols[None, :]
        step = N * H
        g = tl.load(_step_ptr(dout_ptr, S - 1, step) + off, mask=mask, other=0.0)
        h = tl.load(_step_ptr(out_ptr, S - 1, step) + off, mask=mask, other=0.0)
        dh = tl.zeros((BLOCK_N, HP), ACC)
        for i in range(S):
            t = S - 1 - i
            nxt = mask & ((rows[:, None] * 0 + t) > 0)
            g_next = tl.load(_step_ptr(dout_ptr, t - 1, step) + off, mask=nxt, other=0.0)
            h_next = tl.load(_step_ptr(out_ptr, t - 1, step) + off, mask=nxt, other=0.0)
            hf = h.to(ACC)
            dpre = (dh + g.to(ACC)) * (1.0 - hf * hf)
            tl.store(_step_ptr(dgi_ptr, t, step) + off, dpre.to(dgi_ptr.dtype.element_ty), mask=mask)
            dh = tl.dot(dpre.to(DOT), w, input_precision=PREC, out_dtype=ACC)
            g = g_next
            h = h_next
        tl.store(dh0_ptr + off, dh.to(dh0_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _gru_fwd_kernel(
        gi_ptr,  # (S, N, 3H): x W_ih^T + b_ih, gates r, z, n
        w_ptr,  # (3H, H)
        b_ptr,  # (3H,)
        h0_ptr,  # (N, H) if HAS_H0
        out_ptr,  # (S, N, H)
        gates_ptr,  # (S, N, 4H): r, z, n, hn  if STORE_GATES
        S,
        N,
        H: tl.constexpr,
        HP: tl.constexpr,
        BLOCK_N: tl.constexpr,
        HAS_H0: tl.constexpr,
        STORE_GATES: tl.constexpr,
        ACC: tl.constexpr,
        DOT: tl.constexpr,
        PREC: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        cols = tl.arange(0, HP)
        mask = (rows[:, None] < N) & (cols[None, :] < H)
        wt_r = _load_w(w_ptr, 0, H, HP, True).to(DOT)
        wt_z = _load_w(w_ptr, 1, H, HP, True).to(DOT)
        wt_n = _load_w(w_ptr, 2, H, HP, True).to(DOT)
        b_r = _load_bias(b_ptr, 0, H, HP, ACC)
        b_z = _load_bias(b_ptr, 1, H, HP, ACC)
        b_n = _load_bias(b_ptr, 2, H, HP, ACC)
        off = rows[:, None] * H + cols[None, :]
        goff = rows[:, None] * (3 * H) + cols[None, :]
        soff = rows[:, None] * (4 * H) + cols[None, :]
        if HAS_H0:
            h = tl.load(h0_ptr + off, mask=mask, other=0.0).to(ACC)
        else:
            h = tl.zeros((BLOCK_N, HP), ACC)
        x_r = tl.load(gi_ptr + goff, mask=mask, other=0.0)
        x_z = tl.load(gi_ptr + goff + H, mask=mask, other=0.0)
        x_n = tl.load(gi_ptr + goff + 2 * H, mask=mask, other=0.0)
        for t in range(S):
            nxt = mask & ((rows[:, None] * 0 + t) < S - 1)
            p = _step_ptr(gi_ptr, t + 1, N * (3 * H)) + goff
            y_r = tl.load(p, mask=nxt, other=0.0)
            y_z = tl.load(p + H, mask=nxt, other=0.0)
            y_n = tl.load(p + 2 * H, mask=nxt, other=0.0)
            hd = h.to(DOT)
            a_r = tl.dot(hd, wt_r, input_precision=PREC, out_dtype=ACC)
            a_z = tl.dot(hd, wt_z, input_precision=PREC, out_dtype=ACC)
            hn = tl.dot(hd, wt_n, input_precision=PREC, out_dtype=ACC) + b_n
            r = _sigmoid(x_r.to(ACC) + a_r + b_r)
            z = _sigmoid(x_z.to(ACC) + a_z + b_z)
            n = _tanh(x_n.to(ACC) + r * hn)
            h = (1.0 - z) * n + z * h
            tl.store(_step_ptr(out_ptr, t, N * H) + off, h.to(out_ptr.dtype.element_ty), mask=mask)
            if STORE_GATES:
                gty = gates_ptr.dtype.element_ty
                q = _step_ptr(gates_ptr, t, N * (4 * H)) + soff
                tl.store(q, r.to(gty), mask=mask)
                tl.store(q + H, z.to(gty), mask=mask)
                tl.store(q + 2 * H, n.to(gty), mask=mask)
                tl.store(q + 3 * H, hn.to(gty), mask=mask)
            x_r = y_r
            x_z = y_z
            x_n = y_n

    @triton.jit
    def _gru_bwd_kernel(
        w_ptr,  # (3H, H)
        gates_ptr,  # (S, N, 4H): r, z, n, hn
        out_ptr,  # (S, N, H)
        h0_ptr,  # (N, H) if HAS_H0
        dout_ptr,  # (S, N, H)
        dgi_ptr,  # (S, N, 3H) written: d(gi) = d(gh) for r, z; d(gi_n) for n
        dghn_ptr,  # (S, N, H) written: d(hn) = d(gi_n) * r
        dh0_ptr,  # (N, H) written
        S,
        N,
        H: tl.constexpr,
        HP: tl.constexpr,
        BLOCK_N: tl.constexpr,
        HAS_H0: tl.constexpr,
        ACC: tl.constexpr,
        DOT: tl.constexpr,
        PREC: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        cols = tl.arange(0, HP)
        mask = (rows[:, None] < N) & (cols[None, :] < H)
        w_r = _load_w(w_ptr, 0, H, HP, False).to(DOT)
        w_z = _load_w(w_ptr, 1, H, HP, False).to(DOT)
        w_n = _load_w(w_ptr, 2, H, HP, False).to(DOT)
        off = rows[:, None] * H + cols[None, :]
        goff = rows[:, None] * (3 * H) + cols[None, :]
        soff = rows[:, None] * (4 * H) + cols[None, :]
        if HAS_H0:
            h0 = tl.load(h0_ptr + off, mask=mask, other=0.0)
        # Step S-1's inputs: dout, saved gates and h_{t-1} (= out[t-1], or h0 at t = 0).
        has_prev = mask & ((rows[:, None] * 0 + S) > 1)
        g = tl.load(_step_ptr(dout_ptr, S - 1, N * H) + off, mask=mask, other=0.0)
        q = _step_ptr(gates_ptr, S - 1, N * (4 * H)) + soff
        r = tl.load(q, mask=mask, other=0.0)
        z = tl.load(q + H, mask=mask, other=0.0)
        n = tl.load(q + 2 * H, mask=mask, other=0.0)
        hn = tl.load(q + 3 * H, mask=mask, other=0.0)
        hp = tl.load(_step_ptr(out_ptr, S - 2, N * H) + off, mask=has_prev, other=0.0)
        if HAS_H0:
            hp = tl.where(has_prev, hp, h0)
        dh = tl.zeros((BLOCK_N, HP), ACC)
        for i in range(S):
            t = S - 1 - i
            # prefetch step t-1
            nxt = mask & ((rows[:, None] * 0 + t) > 0)
            nxt_prev = mask & ((rows[:, None] * 0 + t) > 1)
            g2 = tl.load(_step_ptr(dout_ptr, t - 1, N * H) + off, mask=nxt, other=0.0)
            q = _step_ptr(gates_ptr, t - 1, N * (4 * H)) + soff
            r2 = tl.load(q, mask=nxt, other=0.0)
            z2 = tl.load(q + H, mask=nxt, other=0.0)
            n2 = tl.load(q + 2 * H, mask=nxt, other=0.0)
            hn2 = tl.load(q + 3 * H, mask=nxt, other=0.0)
            hp2 = tl.load(_step_ptr(out_ptr, t - 2, N * H) + off, mask=nxt_prev, other=0.0)
            if HAS_H0:
                hp2 = tl.where(nxt_prev, hp2, h0)
            # step t
            rf = r.to(ACC)
            zf = z.to(ACC)
            nf = n.to(ACC)
            dh += g.to(ACC)
            dn = dh * (1.0 - zf) * (1.0 - nf * nf)  # d(gi_n)
            dz = dh * (hp.to(ACC) - nf) * zf * (1.0 - zf)  # d(gi_z) = d(gh_z)
            dhn = dn * rf  # d(gh_n)
            dr = dn * hn.to(ACC) * rf * (1.0 - rf)  # d(gi_r) = d(gh_r)
            dty = dgi_ptr.dtype.element_ty
            p = _step_ptr(dgi_ptr, t, N * (3 * H)) + goff
            tl.store(p, dr.to(dty), mask=mask)
            tl.store(p + H, dz.to(dty), mask=mask)
            tl.store(p + 2 * H, dn.to(dty), mask=mask)
            tl.store(_step_ptr(dghn_ptr, t, N * H) + off, dhn.to(dty), mask=mask)
            dh = dh * zf
            dh += tl.dot(dr.to(DOT), w_r, input_precision=PREC, out_dtype=ACC)
            dh += tl.dot(dz.to(DOT), w_z, input_precision=PREC, out_dtype=ACC)
            dh += tl.dot(dhn.to(DOT), w_n, input_precision=PREC, out_dtype=ACC)
            g = g2
            r = r2
            z = z2
            n = n2
            hn = hn2
            hp = hp2
        tl.store(dh0_ptr + off, dh.to(dh0_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _lstm_fwd_kernel(
        gi_ptr,  # (S, N, 4H): gates i, f, g, o
        w_ptr,  # (4H, H)
        b_ptr,  # (4H,)
        h0_ptr,  # (N, H) if HAS_H0
        c0_ptr,  # (N, H) if HAS_C0
        out_ptr,  # (S, N, H)
        cs_ptr,  # (S, N, H) cell states
        gates_ptr,  # (S, N, 4H): activated i, f, g, o  if STORE_GATES
        S,
        N,
        H: tl.constexpr,
        HP: tl.constexpr,
        BLOCK_N: tl.constexpr,
        HAS_H0: tl.constexpr,
        HAS_C0: tl.constexpr,
        STORE_GATES: tl.constexpr,
        ACC: tl.constexpr,
        DOT: tl.constexpr,
        PREC: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        cols = tl.arange(0, HP)
        mask = (rows[:, None] < N) & (cols[None, :] < H)
        wt_i = _load_w(w_ptr, 0, H, HP, True).to(DOT)
        wt_f = _load_w(w_ptr, 1, H, HP, True).to(DOT)
        wt_g = _load_w(w_ptr, 2, H, HP, True).to(DOT)
        wt_o = _load_w(w_ptr, 3, H, HP, True).to(DOT)
        b_i = _load_bias(b_ptr, 0, H, HP, ACC)
        b_f = _load_bias(b_ptr, 1, H, HP, ACC)
        b_g = _load_bias(b_ptr, 2, H, HP, ACC)
        b_o = _load_bias(b_ptr, 3, H, HP, ACC)
        off = rows[:, None] * H + cols[None, :]
        goff = rows[:, None] * (4 * H) + cols[None, :]
        if HAS_H0:
            h = tl.load(h0_ptr + off, mask=mask, other=0.0).to(ACC)
        else:
            h = tl.zeros((BLOCK_N, HP), ACC)
        if HAS_C0:
            c = tl.load(c0_ptr + off, mask=mask, other=0.0).to(ACC)
        else:
            c = tl.zeros((BLOCK_N, HP), ACC)
        x_i = tl.load(gi_ptr + goff, mask=mask, other=0.0)
        x_f = tl.load(gi_ptr + goff + H, mask=mask, other=0.0)
        x_g = tl.load(gi_ptr + goff + 2 * H, mask=mask, other=0.0)
        x_o = tl.load(gi_ptr + goff + 3 * H, mask=mask, other=0.0)
        for t in range(S):
            nxt = mask & ((rows[:, None] * 0 + t) < S - 1)
            p = _step_ptr(gi_ptr, t + 1, N * (4 * H)) + goff
            y_i = tl.load(p, mask=nxt, other=0.0)
            y_f = tl.load(p + H, mask=nxt, other=0.0)
            y_g = tl.load(p + 2 * H, mask=nxt, other=0.0)
            y_o = tl.load(p + 3 * H, mask=nxt, other=0.0)
            hd = h.to(DOT)
            ig = _sigmoid(x_i.to(ACC) + b_i + tl.dot(hd, wt_i, input_precision=PREC, out_dtype=ACC))
            fg = _sigmoid(x_f.to(ACC) + b_f + tl.dot(hd, wt_f, input_precision=PREC, out_dtype=ACC))
            gg = _tanh(x_g.to(ACC) + b_g + tl.dot(hd, wt_g, input_precision=PREC, out_dtype=ACC))
            og = _sigmoid(x_o.to(ACC) + b_o + tl.dot(hd, wt_o, input_precision=PREC, out_dtype=ACC))
            c = fg * c + ig * gg
            h = og * _tanh(c)
            tl.store(_step_ptr(out_ptr, t, N * H) + off, h.to(out_ptr.dtype.element_ty), mask=mask)
            tl.store(_step_ptr(cs_ptr, t, N * H) + off, c.to(cs_ptr.dtype.element_ty), mask=mask)
            if STORE_GATES:
                gty = gates_ptr.dtype.element_ty
                q = _step_ptr(gates_ptr, t, N * (4 * H)) + goff
                tl.store(q, ig.to(gty), mask=mask)
                tl.store(q + H, fg.to(gty), mask=mask)
                tl.store(q + 2 * H, gg.to(gty), mask=mask)
                tl.store(q + 3 * H, og.to(gty), mask=mask)
            x_i = y_i
            x_f = y_f
            x_g = y_g
            x_o = y_o

    @triton.jit
    def _lstm_bwd_kernel(
        w_ptr,  # (4H, H)
        gates_ptr,  # (S, N, 4H): activated i, f, g, o
        cs_ptr,  # (S, N, H)
        c0_ptr,  # (N, H) if HAS_C0
        dout_ptr,  # (S, N, H)
        dcs_ptr,  # (S, N, H) if HAS_DC
        dgi_ptr,  # (S, N, 4H) written
        dh0_ptr,  # (N, H) written
        dc0_ptr,  # (N, H) written
        S,
        N,
        H: tl.constexpr,
        HP: tl.constexpr,
        BLOCK_N: tl.constexpr,
        HAS_C0: tl.constexpr,
        HAS_DC: tl.constexpr,
        ACC: tl.constexpr,
        DOT: tl.constexpr,
        PREC: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        cols = tl.arange(0, HP)
        mask = (rows[:, None] < N) & (cols[None, :] < H)
        w_i = _load_w(w_ptr, 0, H, HP, False).to(DOT)
        w_f = _load_w(w_ptr, 1, H, HP, False).to(DOT)
        w_g = _load_w(w_ptr, 2, H, HP, False).to(DOT)
        w_o = _load_w(w_ptr, 3, H, HP, False).to(DOT)
        off = rows[:, None] * H + cols[None, :]
        goff = rows[:, None] * (4 * H) + cols[None, :]
        if HAS_C0:
            c0 = tl.load(c0_ptr + off, mask=mask, other=0.0)
        # Step S-1's inputs: dout (+ dcs), saved gates, c_t and c_{t-1} (= cs[t-1], or c0 at t = 0).
        g = tl.load(_step_ptr(dout_ptr, S - 1, N * H) + off, mask=mask, other=0.0)
        if HAS_DC:
            gc = tl.load(_step_ptr(dcs_ptr, S - 1, N * H) + off, mask=mask, other=0.0)
        q = _step_ptr(gates_ptr, S - 1, N * (4 * H)) + goff
        ig = tl.load(q, mask=mask, other=0.0)
        fg = tl.load(q + H, mask=mask, other=0.0)
        gg = tl.load(q + 2 * H, mask=mask, other=0.0)
        og = tl.load(q + 3 * H, mask=mask, other=0.0)
        c = tl.load(_step_ptr(cs_ptr, S - 1, N * H) + off, mask=mask, other=0.0)
        has_prev = mask & ((rows[:, None] * 0 + S) > 1)
        cp = tl.load(_step_ptr(cs_ptr, S - 2, N * H) + off, mask=has_prev, other=0.0)
        if HAS_C0:
            cp = tl.where(has_prev, cp, c0)
        dh = tl.zeros((BLOCK_N, HP), ACC)
        dc = tl.zeros((BLOCK_N, HP), ACC)
        for i in range(S):
            t = S - 1 - i
            # prefetch step t-1 (its c_t is this step's c_{t-1})
            nxt = mask & ((rows[:, None] * 0 + t) > 0)
            nxt_prev = mask & ((rows[:, None] * 0 + t) > 1)
            g2 = tl.load(_step_ptr(dout_ptr, t - 1, N * H) + off, mask=nxt, other=0.0)
            if HAS_DC:
                gc2 = tl.load(_step_ptr(dcs_ptr, t - 1, N * H) + off, mask=nxt, other=0.0)
            q = _step_ptr(gates_ptr, t - 1, N * (4 * H)) + goff
            ig2 = tl.load(q, mask=nxt, other=0.0)
            fg2 = tl.load(q + H, mask=nxt, other=0.0)
            gg2 = tl.load(q + 2 * H, mask=nxt, other=0.0)
            og2 = tl.load(q + 3 * H, mask=nxt, other=0.0)
            cp2 = tl.load(_step_ptr(cs_ptr, t - 2, N * H) + off, mask=nxt_prev, other=0.0)
            if HAS_C0:
                cp2 = tl.where(nxt_prev, cp2, c0)
            # step t
            dh += g.to(ACC)
            if HAS_DC:
                dc += gc.to(ACC)
            i_f = ig.to(ACC)
            f_f = fg.to(ACC)
            g_f = gg.to(ACC)
            o_f = og.to(ACC)
            tc = _tanh(c.to(ACC))
            do = dh * tc * o_f * (1.0 - o_f)
            dc += dh * o_f * (1.0 - tc * tc)
            di = dc * g_f * i_f * (1.0 - i_f)
            df = dc * cp.to(ACC) * f_f * (1.0 - f_f)
            dg = dc * i_f * (1.0 - g_f * g_f)
            dty = dgi_ptr.dtype.element_ty
            p = _step_ptr(dgi_ptr, t, N * (4 * H)) + goff
            tl.store(p, di.to(dty), mask=mask)
            tl.store(p + H, df.to(dty), mask=mask)
            tl.store(p + 2 * H, dg.to(dty), mask=mask)
            tl.store(p + 3 * H, do.to(dty), mask=mask)
            dh = tl.dot(di.to(DOT), w_i, input_precision=PREC, out_dtype=ACC)
            dh += tl.dot(df.to(DOT), w_f, input_precision=PREC, out_dtype=ACC)
            dh += tl.dot(dg.to(DOT), w_g, input_precision=PREC, out_dtype=ACC)
            dh += tl.dot(do.to(DOT), w_o, input_precision=PREC, out_dtype=ACC)
            dc = dc * f_f
            g = g2
            if HAS_DC:
                gc = gc2
            ig = ig2
            fg = fg2
            gg = gg2
            og = og2
            c = cp
            cp = cp2
        tl.store(dh0_ptr + off, dh.to(dh0_ptr.dtype.element_ty), mask=mask)
        tl.store(dc0_ptr + off, dc.to(dc0_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------------------------
# Launch helpers
# ----------------------------------------------------------------------------------------------------------

_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _check_launchable(t: torch.Tensor) -> None:
    if not HAS_TRITON:
        raise TritonUnavailableError("the fused RNN kernels need triton (pip install triton)")
    if t.device.type != "cuda" and not interpreter_active():
        raise TritonUnavailableError(
            f"the fused RNN kernels need a CUDA tensor (got {t.device}); to run them on CPU through "
            "Triton's interpreter set TRITON_INTERPRET=1 before importing speakerid.kernels"
        )
    if t.dtype not in _DTYPES:
        raise TypeError(f"fused RNN kernels support {_DTYPES}, got {t.dtype}")


def _compile_meta(dtype: torch.dtype, H: int, interp: bool) -> dict:
    """Compile-time parameters of every kernel for inputs of ``dtype`` and hidden size H."""
    if dtype == torch.float64:
        acc, dot, prec = tl.float64, tl.float64, "ieee"
    elif dtype == torch.float32:
        acc, dot = tl.float32, tl.float32
        prec = _CONFIG.fp32_precision
        if interp:
            prec = "ieee"
        elif prec == "auto":
            prec = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "tf32x3"
    elif dtype == torch.float16:
        acc, dot, prec = tl.float32, tl.float16, None
    else:  # bfloat16; Triton's interpreter mis-computes bf16 tl.dot (3.x), so it gets fp32 dots there.
        acc, prec = tl.float32, None
        dot = tl.float32 if interp else tl.bfloat16
    hp = max(16, triton.next_power_of_2(H))
    return dict(H=H, HP=hp, BLOCK_N=_CONFIG.block_n or 16, ACC=acc, DOT=dot, PREC=prec)


def _launch_params(t: torch.Tensor, N: int, H: int) -> dict:
    """Grid and compile-time/launch parameters for a (., N, .) problem of hidden size H with tensors like t."""
    interp = interpreter_active()
    meta = _compile_meta(t.dtype, H, interp)
    if not interp:
        meta.update(num_warps=_CONFIG.num_warps, num_stages=_CONFIG.num_stages)
    return {"grid": (triton.cdiv(N, meta["BLOCK_N"]),), "meta": meta}


def _dummy(t: torch.Tensor) -> torch.Tensor:
    return t.new_empty(1)


# ----------------------------------------------------------------------------------------------------------
# Custom ops (opaque to torch.compile; one kernel launch each)
# ----------------------------------------------------------------------------------------------------------


@torch.library.custom_op("speakerid::rnn_tanh_fwd", mutates_args=())
def _rnn_fwd_op(gi: torch.Tensor, w: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    S, N, H = gi.shape
    out = gi.new_empty(S, N, H)
    if S and N:
        _check_launchable(gi)
        p = _launch_params(gi, N, H)
        _rnn_fwd_kernel[p["grid"]](
            gi, w, b, h0 if h0 is not None else _dummy(gi), out, S, N, HAS_H0=h0 is not None, **p["meta"]
        )
    return out


@_rnn_fwd_op.register_fake
def _(gi, w, b, h0):
    return gi.new_empty(gi.shape)


@torch.library.custom_op("speakerid::rnn_tanh_bwd", mutates_args=())
def _rnn_bwd_op(w: torch.Tensor, out: torch.Tensor, dout: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    S, N, H = out.shape
    dgi = out.new_empty(S, N, H)
    dh0 = out.new_zeros(N, H)
    if S and N:
        _check_launchable(out)
        p = _launch_params(out, N, H)
        _rnn_bwd_kernel[p["grid"]](w, out, dout, dgi, dh0, S, N, **p["meta"])
    return dgi, dh0


@_rnn_bwd_op.register_fake
def _(w, out, dout):
    S, N, H = out.shape
    return out.new_empty(S, N, H), out.new_empty(N, H)


@torch.library.custom_op("speakerid::gru_fwd", mutates_args=())
def _gru_fwd_op(
    gi: torch.Tensor, w: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, store_gates: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    S, N, G = gi.shape
    H = G // 3
    out = gi.new_empty(S, N, H)
    gates = gi.new_empty(S, N, 4 * H) if store_gates else gi.new_empty(0)
    if S and N:
        _check_launchable(gi)
        p = _launch_params(gi, N, H)
        _gru_fwd_kernel[p["grid"]](
            gi,
            w,
            b,
            h0 if h0 is not None else _dummy(gi),
            out,
            gates if store_gates else _dummy(gi),
            S,
            N,
            HAS_H0=h0 is not None,
            STORE_GATES=store_gates,
            **p["meta"],
        )
    return out, gates


@_gru_fwd_op.register_fake
def _(gi, w, b, h0, store_gates):
    S, N, G = gi.shape
    H = G // 3
    return gi.new_empty(S, N, H), (gi.new_empty(S, N, 4 * H) if store_gates else gi.new_empty(0))


@torch.library.custom_op("speakerid::gru_bwd", mutates_args=())
def _gru_bwd_op(
    w: torch.Tensor, gates: torch.Tensor, out: torch.Tensor, h0: torch.Tensor | None, dout: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    S, N, H = out.shape
    dgi = out.new_empty(S, N, 3 * H)
    dghn = out.new_empty(S, N, H)
    dh0 = out.new_zeros(N, H)
    if S and N:
        _check_launchable(out)
        p = _launch_params(out, N, H)
        _gru_bwd_kernel[p["grid"]](
            w,
            gates,
            out,
            h0 if h0 is not None else _dummy(out),
            dout,
            dgi,
            dghn,
            dh0,
            S,
            N,
            HAS_H0=h0 is not None,
            **p["meta"],
        )
    return dgi, dghn, dh0


@_gru_bwd_op.register_fake
def _(w, gates, out, h0, dout):
    S, N, H = out.shape
    return out.new_empty(S, N, 3 * H), out.new_empty(S, N, H), out.new_empty(N, H)


@torch.library.custom_op("speakerid::lstm_fwd", mutates_args=())
def _lstm_fwd_op(
    gi: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    h0: torch.Tensor | None,
    c0: torch.Tensor | None,
    store_gates: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    S, N, G = gi.shape
    H = G // 4
    out = gi.new_empty(S, N, H)
    cs = gi.new_empty(S, N, H)
    gates = gi.new_empty(S, N, 4 * H) if store_gates else gi.new_empty(0)
    if S and N:
        _check_launchable(gi)
        p = _launch_params(gi, N, H)
        _lstm_fwd_kernel[p["grid"]](
            gi,
            w,
            b,
            h0 if h0 is not None else _dummy(gi),
            c0 if c0 is not None else _dummy(gi),
            out,
            cs,
            gates if store_gates else _dummy(gi),
            S,
            N,
            HAS_H0=h0 is not None,
            HAS_C0=c0 is not None,
            STORE_GATES=store_gates,
            **p["meta"],
        )
    return out, cs, gates


@_lstm_fwd_op.register_fake
def _(gi, w, b, h0, c0, store_gates):
    S, N, G = gi.shape
    H = G // 4
    gates = gi.new_empty(S, N, 4 * H) if store_gates else gi.new_empty(0)
    return gi.new_empty(S, N, H), gi.new_empty(S, N, H), gates


@torch.library.custom_op("speakerid::lstm_bwd", mutates_args=())
def _lstm_bwd_op(
    w: torch.Tensor,
    gates: torch.Tensor,
    cs: torch.Tensor,
    c0: torch.Tensor | None,
    dout: torch.Tensor,
    dcs: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    S, N, H = cs.shape
    dgi = cs.new_empty(S, N, 4 * H)
    dh0 = cs.new_zeros(N, H)
    dc0 = cs.new_zeros(N, H)
    if S and N:
        _check_launchable(cs)
        p = _launch_params(cs, N, H)
        _lstm_bwd_kernel[p["grid"]](
            w,
            gates,
            cs,
            c0 if c0 is not None else _dummy(cs),
            dout,
            dcs if dcs is not None else _dummy(cs),
            dgi,
            dh0,
            dc0,
            S,
            N,
            HAS_C0=c0 is not None,
            HAS_DC=dcs is not None,
            **p["meta"],
        )
    return dgi, dh0, dc0


@_lstm_bwd_op.register_fake
def _(w, gates, cs, c0, dout, dcs):
    S, N, H = cs.shape
    return cs.new_empty(S, N, 4 * H), cs.new_empty(N, H), cs.new_empty(N, H)


# ----------------------------------------------------------------------------------------------------------
# Autograd
# ----------------------------------------------------------------------------------------------------------


def _sum_outer(dg: torch.Tensor, out: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    """sum_t dg_t^T h_{t-1} with h_{-1} = h0 (or 0): (S, N, K), (S, N, H) -> (K, H), as big matmuls."""
    S, N, K = dg.shape
    H = out.shape[-1]
    dw = dg.new_zeros(K, H)
    if S > 1:
        dw = dw + dg[1:].reshape(-1, K).T @ out[:-1].reshape(-1, H)  # (K, (S-1)N) @ ((S-1)N, H)
    if h0 is not None and S > 0:
        dw = dw + dg[0].T @ h0
    return dw


def _sum_rows(dg: torch.Tensor) -> torch.Tensor:
    """(S, N, K) -> (K,), accumulated in fp32 or better."""
    acc = torch.float64 if dg.dtype == torch.float64 else torch.float32
    return dg.sum(dim=(0, 1), dtype=acc).to(dg.dtype)


class _RNNTanhFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gi, w, b, h0):
        out = torch.ops.speakerid.rnn_tanh_fwd(gi, w, b, h0)
        ctx.save_for_backward(w, h0, out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        w, h0, out = ctx.saved_tensors
        dgi, dh0 = torch.ops.speakerid.rnn_tanh_bwd(w, out, dout.contiguous())
        dw = _sum_outer(dgi, out, h0)
        db = _sum_rows(dgi)
        return dgi, dw, db, (dh0 if h0 is not None else None)


class _GRUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gi, w, b, h0, store_gates):
        out, gates = torch.ops.speakerid.gru_fwd(gi, w, b, h0, store_gates)
        ctx.save_for_backward(w, h0, out, gates)
        ctx.store_gates = store_gates
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        w, h0, out, gates = ctx.saved_tensors
        if not ctx.store_gates:
            raise RuntimeError("fused_gru ran without saving gates (no input required grad)")
        H = out.shape[-1]
        dgi, dghn, dh0 = torch.ops.speakerid.gru_bwd(w, gates, out, h0, dout.contiguous())
        drz = dgi[..., : 2 * H]  # d(gh) = d(gi) for the r and z gates
        dw = torch.cat([_sum_outer(drz, out, h0), _sum_outer(dghn, out, h0)])
        db = torch.cat([_sum_rows(drz), _sum_rows(dghn)])
        return dgi, dw, db, (dh0 if h0 is not None else None), None


class _LSTMFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gi, w, b, h0, c0, store_gates):
        out, cs, gates = torch.ops.speakerid.lstm_fwd(gi, w, b, h0, c0, store_gates)
        ctx.save_for_backward(w, h0, c0, out, cs, gates)
        ctx.store_gates = store_gates
        ctx.set_materialize_grads(False)
        return out, cs

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dcs):
        w, h0, c0, out, cs, gates = ctx.saved_tensors
        if not ctx.store_gates:
            raise RuntimeError("fused_lstm ran without saving gates (no input required grad)")
        dout = torch.zeros_like(out) if dout is None else dout.contiguous()
        dcs = None if dcs is None else dcs.contiguous()
        dgi, dh0, dc0 = torch.ops.speakerid.lstm_bwd(w, gates, cs, c0, dout, dcs)
        dw = _sum_outer(dgi, out, h0)
        db = _sum_rows(dgi)
        return (
            dgi,
            dw,
            db,
            (dh0 if h0 is not None else None),
            (dc0 if c0 is not None else None),
            None,
        )


# ----------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------


def _prepare(
    name: str, gi: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor | None, gates: int, states: list
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]:
    """Validate shapes, cast weights/states to gi's dtype (autograd-tracked), make all contiguous."""
    if gi.dim() != 3 or gi.shape[-1] % gates:
        raise ValueError(f"{name}: gi must be (S, N, {gates}*H), got shape {tuple(gi.shape)}")
    S, N, GH = gi.shape
    H = GH // gates
    if w_hh.shape != (GH, H):
        raise ValueError(f"{name}: w_hh must be ({GH}, {H}), got {tuple(w_hh.shape)}")
    if b_hh is not None and b_hh.shape != (GH,):
        raise ValueError(f"{name}: b_hh must be ({GH},), got {tuple(b_hh.shape)}")
    if gi.dtype not in _DTYPES:
        raise TypeError(f"{name}: supported dtypes are {_DTYPES}, got {gi.dtype}")
    if N * max(GH, 4 * H) >= 2**31:
        raise ValueError(f"{name}: one step of {N} sequences x {GH} features exceeds 32-bit offsets")
    for s in states:
        if s is not None and s.shape != (N, H):
            raise ValueError(f"{name}: initial states must be ({N}, {H}), got {tuple(s.shape)}")
    tensors = [w_hh, b_hh, *states]
    if any(t is not None and t.device != gi.device for t in tensors):
        raise ValueError(f"{name}: all tensors must be on {gi.device}")
    _check_launchable(gi)
    w = w_hh.to(gi.dtype).contiguous()
    b = b_hh.to(gi.dtype).contiguous() if b_hh is not None else gi.new_zeros(GH)
    states = [s.to(gi.dtype).contiguous() if s is not None else None for s in states]
    return gi.contiguous(), w, b, states


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def fused_rnn_tanh(
    gi: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor | None = None, h0: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Elman RNN recurrence h_t = tanh(gi_t + h_{t-1} W_hh^T + b_hh) over N independent sequences.

    Args:
        gi: (S, N, H) precomputed x_t W_ih^T + b_ih.
        w_hh: (H, H); b_hh: (H,) or None; h0: (N, H) or None (zeros).

    Returns:
        out (S, N, H) all hidden states, h_last (N, H) = out[-1] (h0, or zeros, when S = 0).
    """
    gi, w, b, (h0,) = _prepare("fused_rnn_tanh", gi, w_hh, b_hh, 1, [h0])
    out = _RNNTanhFunction.apply(gi, w, b, h0)
    return out, _last(out, h0)


def fused_gru(
    gi: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor | None = None, h0: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRU recurrence (PyTorch's equations and r, z, n gate order) over N independent sequences.

    r = sigmoid(gi_r + h W_hr^T + b_hr), z = sigmoid(gi_z + h W_hz^T + b_hz),
    n = tanh(gi_n + r * (h W_hn^T + b_hn)), h' = (1 - z) * n + z * h.

    Args:
        gi: (S, N, 3H) precomputed x_t W_ih^T + b_ih.
        w_hh: (3H, H); b_hh: (3H,) or None; h0: (N, H) or None (zeros).

    Returns:
        out (S, N, H) all hidden states, h_last (N, H) = out[-1].
    """
    gi, w, b, (h0,) = _prepare("fused_gru", gi, w_hh, b_hh, 3, [h0])
    out = _GRUFunction.apply(gi, w, b, h0, _needs_grad(gi, w, b, h0))
    return out, _last(out, h0)


def fused_lstm(
    gi: torch.Tensor,
    w_hh: torch.Tensor,
    b_hh: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    c0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """LSTM recurrence (PyTorch's equations and i, f, g, o gate order) over N independent sequences.

    Args:
        gi: (S, N, 4H) precomputed x_t W_ih^T + b_ih.
        w_hh: (4H, H); b_hh: (4H,) or None; h0, c0: (N, H) or None (zeros).

    Returns:
        out (S, N, H) all hidden states, (h_last, c_last) each (N, H).
    """
    gi, w, b, (h0, c0) = _prepare("fused_lstm", gi, w_hh, b_hh, 4, [h0, c0])
    out, cs = _LSTMFunction.apply(gi, w, b, h0, c0, _needs_grad(gi, w, b, h0, c0))
    return out, (_last(out, h0), _last(cs, c0))


def _last(seq: torch.Tensor, init: torch.Tensor | None) -> torch.Tensor:
    """(S, N, H) -> (N, H): the last step, or the initial state (zeros if None) when S = 0."""
    if seq.shape[0]:
        return seq[-1]
    return init if init is not None else seq.new_zeros(seq.shape[1:])


def rnn_layer_forward(layer: nn.RNNBase, x: torch.Tensor, hx=None):
    """Drop-in for ``layer(x, hx)`` on a single-layer, unidirectional, time-major nn.GRU / nn.RNN / nn.LSTM.

    Shape:
        x: (S, N, C); hx: (1, N, H) (LSTM: a tuple of two) or None.
        Returns out (S, N, H) and h_n (1, N, H) (LSTM: (h_n, c_n)), like the module.

    The input projection x W_ih^T + b_ih of all steps is one matmul; the recurrence is the fused kernel.
    """
    _check_layer(layer)
    if x.dim() != 3 or x.shape[-1] != layer.input_size:
        raise ValueError(f"expected input (S, N, {layer.input_size}), got shape {tuple(x.shape)}")
    b_ih = layer.bias_ih_l0 if layer.bias else None
    b_hh = layer.bias_hh_l0 if layer.bias else None
    gi = F.linear(x, layer.weight_ih_l0, b_ih)  # (S, N, C) -> (S, N, G*H): one big matmul
    w_hh = layer.weight_hh_l0
    if layer.mode == "LSTM":
        h0, c0 = (None, None) if hx is None else (hx[0][0], hx[1][0])
        out, (h, c) = fused_lstm(gi, w_hh, b_hh, h0, c0)
        return out, (h.unsqueeze(0), c.unsqueeze(0))
    h0 = None if hx is None else hx[0]
    fn = fused_gru if layer.mode == "GRU" else fused_rnn_tanh
    out, h = fn(gi, w_hh, b_hh, h0)
    return out, h.unsqueeze(0)


def _check_layer(layer: nn.Module) -> None:
    if not isinstance(layer, nn.RNNBase):
        raise UnsupportedLayerError(f"expected an nn.RNN/GRU/LSTM, got {type(layer).__name__}")
    if layer.mode not in ("GRU", "LSTM", "RNN_TANH"):
        raise UnsupportedLayerError(f"fused kernels support GRU, LSTM and tanh RNN, not {layer.mode}")
    if layer.num_layers != 1 or layer.bidirectional or layer.batch_first or getattr(layer, "proj_size", 0):
        raise UnsupportedLayerError(
            "fused kernels support single-layer, unidirectional, time-major layers without projections"
        )


_PTR_TYPES = {torch.float32: "fp32", torch.float64: "fp64", torch.float16: "fp16", torch.bfloat16: "bf16"}


def compile_offline(
    kernels: tuple[str, ...] = ("gru_fwd", "gru_bwd", "rnn_fwd", "rnn_bwd", "lstm_fwd", "lstm_bwd"),
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16),
    hidden: int = 50,
    arch: int = 90,
) -> list[dict]:
    """Compile kernels for CUDA sm_``arch`` without a GPU (Triton's bundled ptxas) and report resources.

    Uses the current :class:`KernelConfig` (block_n, num_warps, num_stages, fp32_precision). All optional
    inputs (h0, c0, saved gates, dcs) are switched on. Needs the kernels built for a GPU, i.e.
    TRITON_INTERPRET unset at import.

    Returns one dict per (kernel, dtype): kernel, dtype, registers, stack (bytes of spill stack per thread),
    shared (bytes), seconds (compile time).
    """
    import subprocess
    import tempfile
    import time

    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if not HAS_TRITON or interpreter_active():
        raise TritonUnavailableError("compile_offline needs triton with the kernels built for a GPU")
    flags = dict(HAS_H0=True, HAS_C0=True, HAS_DC=True, STORE_GATES=True)
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    rows = []
    for name in kernels:
        fn = globals()[f"_{name}_kernel"]
        for dtype in dtypes:
            meta = _compile_meta(dtype, hidden, interp=False)
            consts = {k: v for k, v in {**meta, **flags}.items() if k in fn.arg_names}
            sig = {
                a: "constexpr" if a in consts else ("*" + _PTR_TYPES[dtype] if a.endswith("_ptr") else "i32")
                for a in fn.arg_names
            }
            t0 = time.perf_counter()
            k = triton.compile(
                ASTSource(fn, sig, consts),
                target=GPUTarget("cuda", arch, 32),
                options=dict(num_warps=_CONFIG.num_warps, num_stages=_CONFIG.num_stages),
            )
            row = dict(kernel=name, dtype=str(dtype).removeprefix("torch."), seconds=time.perf_counter() - t0)
            row["shared"] = k.metadata.shared
            with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
                f.write(k.asm["cubin"])
                f.flush()
                usage = subprocess.run(
                    [cuobjdump, "--dump-resource-usage", f.name], capture_output=True, text=True, check=True
                ).stdout
            fields = dict(
                item.split(":", 1) for line in usage.splitlines() if "REG:" in line for item in line.split()
            )
            row["registers"] = int(fields["REG"])
            row["stack"] = int(fields["STACK"])
            rows.append(row)
    return rows


def _env_config() -> None:
    """Launch overrides from SPEAKERID_TRITON_BLOCK_N / _NUM_WARPS / _NUM_STAGES / _FP32_PRECISION."""
    vals: dict = {}
    for key in ("block_n", "num_warps", "num_stages", "fp32_precision"):
        v = os.environ.get(f"SPEAKERID_TRITON_{key.upper()}")
        if v:
            vals[key] = v if key == "fp32_precision" else int(v)
    if vals:
        configure(**vals)


_env_config()
