"""The fused Triton RNN kernels (speakerid.kernels) on CPU through Triton's interpreter, on small shapes.

TRITON_INTERPRET=1 must be set before triton and speakerid.kernels are first imported (Triton picks the
interpreter when the kernels, and triton.language's own helpers, are decorated), and Triton reads it again while
an interpreted kernel runs. So it is set around those imports and, through monkeypatch, during this module's
tests only: it must not leak into the rest of the test session (other tests start subprocesses that inherit the
environment). Under the interpreter tl.dot works in float64, so gradcheck runs in float64; bf16 tl.dot is
broken in the interpreter, so bf16 runs with fp32 dots there (the bf16 storage/casting path is still exercised).
"""

import os

import pytest
import torch
from torch import nn

_before = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"  # before triton itself: triton.language's own @jit helpers read it too
try:
    pytest.importorskip("triton")
    from speakerid.kernels import (
        TritonUnavailableError,
        UnsupportedLayerError,
        configure,
        fused_gru,
        fused_lstm,
        fused_rnn_tanh,
        kernel_config,
        rnn_layer_forward,
        triton_available,
        triton_rnn,
    )
finally:  # the kernels are decorated now; restore the environment for everything else
    if _before is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = _before
from speakerid.models import DilatedRNN, reference_dilated_rnn  # noqa: E402

pytestmark = pytest.mark.skipif(
    not triton_available(torch.device("cpu")),
    reason="speakerid.kernels was imported before TRITON_INTERPRET=1 was set (no CPU interpreter)",
)


@pytest.fixture(autouse=True, scope="module")
def triton_interpreter():
    """TRITON_INTERPRET=1 while this module's tests run; the environment is restored afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_INTERPRET", "1")
        yield


MODULES = {"gru": nn.GRU, "rnn": nn.RNN, "lstm": nn.LSTM}


def _layer_loss(cell, out, hn, w):
    """A functional that touches every output and the final state(s)."""
    loss = (out * w).sum()
    if cell == "lstm":
        return loss + 0.3 * hn[0].sum() + (hn[1] ** 2).sum()
    return loss + (hn**2).sum()


@pytest.mark.parametrize("cell", ["gru", "rnn", "lstm"])
@pytest.mark.parametrize(
    "S,N,C,H,with_h0",
    [
        (7, 5, 3, 6, True),
        (12, 8, 2, 16, False),  # H = HP: no padding
        (3, 20, 1, 5, True),  # two programs of 16 sequences, the second partly masked
        (1, 1, 4, 3, False),
    ],
)
def test_layer_matches_torch_module_fp32(cell, S, N, C, H, with_h0):
    torch.manual_seed(0)
    layer = MODULES[cell](C, H)
    x = torch.randn(S, N, C, requires_grad=True)
    hx = None
    if with_h0:
        hx = torch.randn(1, N, H, requires_grad=True)
        if cell == "lstm":
            hx = (hx, torch.randn(1, N, H, requires_grad=True))
    out, hn = rnn_layer_forward(layer, x, hx)
    ref, ref_hn = layer(x, hx)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(hn if cell == "lstm" else [hn], ref_hn if cell == "lstm" else [ref_hn], strict=True):
        assert a.shape == (1, N, H)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)

    w = torch.randn_like(out)
    states = [] if hx is None else (list(hx) if cell == "lstm" else [hx])
    inputs = [x, *states, *layer.parameters()]
    grads = torch.autograd.grad(_layer_loss(cell, out, hn, w), inputs)
    ref_grads = torch.autograd.grad(_layer_loss(cell, ref, ref_hn, w), inputs)
    names = ["x"] + [f"state{i}" for i in range(len(states))] + [n for n, _ in layer.named_parameters()]
    for name, g, r in zip(names, grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5, msg=f"gradient of {name} differs")


@pytest.mark.parametrize("cell", ["gru", "rnn", "lstm"])
def test_gradcheck_float64(cell):
    """torch.autograd.gradcheck of the fused op itself (gi, W_hh, b_hh, initial states) in float64."""
    torch.manual_seed(1)
    S, N, H = 4, 3, 4
    G = {"gru": 3, "rnn": 1, "lstm": 4}[cell]
    kw = dict(dtype=torch.float64, requires_grad=True)
    gi = torch.randn(S, N, G * H, **kw)
    w = (0.5 * torch.randn(G * H, H, dtype=torch.float64)).requires_grad_()
    b = torch.randn(G * H, **kw)
    h0 = torch.randn(N, H, **kw)
    if cell == "lstm":
        c0 = torch.randn(N, H, **kw)

        def fn(gi, w, b, h0, c0):
            out, (h, c) = fused_lstm(gi, w, b, h0, c0)
            return out, c

        args = (gi, w, b, h0, c0)
    else:
        fused = fused_gru if cell == "gru" else fused_rnn_tanh

        def fn(gi, w, b, h0):
            return fused(gi, w, b, h0)[0]

        args = (gi, w, b, h0)
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


def _torch_gru(gi, w, b, h0):
    """Float64 per-step reference of the fused GRU on precomputed gi (PyTorch's equations)."""
    H = w.shape[1]
    h, outs = h0, []
    for g in gi.unbind(0):
        gh = h @ w.T + b
        r = torch.sigmoid(g[:, :H] + gh[:, :H])
        z = torch.sigmoid(g[:, H : 2 * H] + gh[:, H : 2 * H])
        n = torch.tanh(g[:, 2 * H :] + r * gh[:, 2 * H :])
        h = (1 - z) * n + z * h
        outs.append(h)
    return torch.stack(outs)


def test_gru_without_h0_matches_float64_autograd():
    torch.manual_seed(2)
    S, N, H = 9, 6, 7
    gi = torch.randn(S, N, 3 * H, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3 * H, H, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3 * H, dtype=torch.float64, requires_grad=True)
    out, h_last = fused_gru(gi, w, b)
    ref = _torch_gru(gi, w, b, gi.new_zeros(N, H))
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_last, ref[-1])
    v = torch.randn_like(out)
    g = torch.autograd.grad((out * v).sum(), [gi, w, b])
    r = torch.autograd.grad((ref * v).sum(), [gi, w, b])
    for a, e in zip(g, r, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_half_precision_close_to_fp32(cell, dtype):
    torch.manual_seed(3)
    S, N, H = 8, 5, 8
    G = 3 if cell == "gru" else 4
    gi = torch.randn(S, N, G * H)
    w = 0.3 * torch.randn(G * H, H)
    b = 0.1 * torch.randn(G * H)
    fused = fused_gru if cell == "gru" else fused_lstm

    def run(dt):
        args = [t.to(dt).requires_grad_() for t in (gi, w, b)]
        out = fused(*args)[0]
        assert out.dtype == dt
        v = torch.linspace(-1, 1, out.numel()).reshape(out.shape).to(dt)
        grads = torch.autograd.grad((out * v).sum(), args)
        return [out.float(), *(g.float() for g in grads)]

    tol = 2e-2 if dtype == torch.float16 else 8e-2
    for half, ref in zip(run(dtype), run(torch.float32), strict=True):
        torch.testing.assert_close(half, ref, rtol=tol, atol=tol * max(1.0, ref.abs().max().item()))


def test_autocast_runs_recurrence_in_autocast_dtype():
    """Under autocast the input projection is half, so the kernel runs half (as cuDNN does on CUDA)."""
    torch.manual_seed(9)
    model = DilatedRNN(2, 6, [1, 2], cell="gru", impl="triton")
    x = torch.randn(2, 8, 2)
    ref, _ = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = model(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=0, atol=2e-2)
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


def test_no_grad_skips_saved_gates_and_matches():
    torch.manual_seed(4)
    layer = nn.GRU(2, 5)
    x = torch.randn(6, 4, 2)
    with torch.no_grad():
        out_ng, _ = rnn_layer_forward(layer, x)
    out_g, _ = rnn_layer_forward(layer, x)
    assert not out_ng.requires_grad and out_g.requires_grad
    torch.testing.assert_close(out_ng, out_g.detach(), rtol=0, atol=0)
    gi = torch.randn(6, 4, 15)
    out, gates = torch.ops.speakerid.gru_fwd(
        gi, layer.weight_hh_l0.detach(), layer.bias_hh_l0.detach(), None, False
    )
    assert gates.numel() == 0


def test_empty_sequence_returns_initial_state():
    h0 = torch.randn(3, 4)
    out, h = fused_gru(torch.randn(0, 3, 12), torch.randn(12, 4), torch.randn(12), h0)
    assert out.shape == (0, 3, 4)
    torch.testing.assert_close(h, h0)


DILATED_CASES = [
    # (cell, hidden, dilations, B, T)
    ("gru", 6, [1, 2, 4], 2, 13),  # T not a multiple of the largest dilation (left padding)
    ("rnn", [5, 3], [2, 4], 3, 8),
    ("lstm", 4, [1, 3], 2, 9),
    ("gru", [4, 7, 5], [3, 6, 12], 1, 24),
]


@pytest.mark.parametrize("cell,hidden,dilations,B,T", DILATED_CASES)
def test_dilated_rnn_triton_matches_cudnn_path(cell, hidden, dilations, B, T):
    torch.manual_seed(5)
    fold = DilatedRNN(3, hidden, dilations, cell=cell, impl="cudnn")
    fused = DilatedRNN(3, hidden, dilations, cell=cell, impl="triton")
    fused.load_state_dict(fold.state_dict())
    x = torch.randn(B, T, 3, requires_grad=True)
    out, states = fused(x)
    ref, ref_states = fold(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, reference_dilated_rnn(fold, x), rtol=1e-5, atol=1e-5)
    for s, r in zip(states, ref_states, strict=True):
        for a, e in zip(s if cell == "lstm" else [s], r if cell == "lstm" else [r], strict=True):
            torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)
    w = torch.randn_like(out)
    g = torch.autograd.grad((out * w).sum(), [x, *fused.parameters()])
    r = torch.autograd.grad((ref * w).sum(), [x, *fold.parameters()])
    for name, a, e in zip(["x"] + [n for n, _ in fused.named_parameters()], g, r, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5, msg=f"gradient of {name} differs")


def test_dilated_rnn_triton_carries_states():
    torch.manual_seed(6)
    model = DilatedRNN(2, [4, 3], [2, 4], cell="gru", impl="triton")
    x = torch.randn(3, 24, 2)
    full, _ = model(x)
    a, sa = model(x[:, :12])
    b, _ = model(x[:, 12:], hx=sa)
    torch.testing.assert_close(torch.cat([a, b], 1), full, rtol=1e-5, atol=1e-6)
    model.impl = "cudnn"
    b_ref, _ = model(x[:, 12:], hx=sa)
    torch.testing.assert_close(b, b_ref, rtol=1e-5, atol=1e-6)


def test_impl_dispatch(monkeypatch):
    from speakerid.models import cpu_rnn

    model = DilatedRNN(1, 4, [1, 2], cell="gru")
    assert model.impl == "auto"
    calls, fused = [], []
    for layer in model.layers:
        layer.register_forward_hook(lambda m, i, o: calls.append(m))
    real = cpu_rnn.cpu_layer_forward
    monkeypatch.setattr(cpu_rnn, "cpu_layer_forward", lambda *a: fused.append(1) or real(*a))  # a spy
    x = torch.randn(2, 8, 1)
    model(x)
    # "auto" on CPU: small steps (N * H = 8 and 16) take the fused CPU recurrence, not the modules' forward
    assert (len(calls), len(fused)) == (0, 2)
    model.impl = "cudnn"
    model(x)
    assert (len(calls), len(fused)) == (2, 2)  # the nn.GRU modules (cuDNN/ATen)
    model.impl = "triton"
    model(x)
    assert (len(calls), len(fused)) == (2, 2)  # the fused Triton kernel bypasses both
    with pytest.raises(ValueError, match="impl must be one of"):
        DilatedRNN(1, 4, [1, 2], impl="cuda")


@pytest.mark.parametrize("fullgraph", [False, True])
def test_torch_compile_matches_eager(fullgraph):
    """The kernels are opaque custom ops with fake impls, so dynamo/AOTAutograd trace fwd+bwd around them.

    Dynamo refuses to wrap nn.GRU modules by default, which costs one graph break per layer (still correct);
    ``torch._dynamo.config.allow_rnn = True`` gives one graph for the whole impl="triton" model.
    """
    import torch._dynamo

    torch.manual_seed(7)
    model = DilatedRNN(2, 5, [1, 2, 4], cell="gru", impl="triton")
    x = torch.randn(2, 16, 2, requires_grad=True)
    out, _ = model(x)
    (gx,) = torch.autograd.grad(out.square().sum(), [x])
    torch._dynamo.reset()
    with torch._dynamo.config.patch(allow_rnn=fullgraph):
        compiled = torch.compile(model, backend="aot_eager", fullgraph=fullgraph)
        out_c, _ = compiled(x)
    (gx_c,) = torch.autograd.grad(out_c.square().sum(), [x])
    torch._dynamo.reset()
    torch.testing.assert_close(out_c, out, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gx_c, gx, rtol=1e-6, atol=1e-6)


def test_errors(monkeypatch):
    with pytest.raises(UnsupportedLayerError, match="RNN_RELU"):
        rnn_layer_forward(nn.RNN(2, 3, nonlinearity="relu"), torch.randn(4, 2, 2))
    with pytest.raises(UnsupportedLayerError, match="single-layer"):
        rnn_layer_forward(nn.GRU(2, 3, num_layers=2), torch.randn(4, 2, 2))
    with pytest.raises(ValueError, match=r"w_hh must be \(12, 4\)"):
        fused_gru(torch.randn(2, 3, 12), torch.randn(4, 4))
    with pytest.raises(ValueError, match="initial states"):
        fused_gru(torch.randn(2, 3, 12), torch.randn(12, 4), None, torch.randn(2, 4))
    with pytest.raises(TypeError, match="dtypes"):
        fused_rnn_tanh(torch.zeros(2, 3, 4, dtype=torch.int32), torch.zeros(4, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="block_n"):
        configure(block_n=8)
    monkeypatch.setattr(triton_rnn, "interpreter_active", lambda: False)
    assert not triton_available("cpu")
    with pytest.raises(TritonUnavailableError, match="TRITON_INTERPRET"):
        fused_gru(torch.randn(2, 3, 12), torch.randn(12, 4))


def test_configure_roundtrip():
    old = kernel_config()
    try:
        configure(block_n=32, num_warps=4, num_stages=3, fp32_precision="tf32")
        cfg = kernel_config()
        assert (cfg.block_n, cfg.num_warps, cfg.num_stages, cfg.fp32_precision) == (32, 4, 3, "tf32")
        # block_n=32 under the interpreter: one program covers all 20 sequences; the interpreter computes
        # exact fp32 whatever fp32_precision says.
        torch.manual_seed(8)
        layer = nn.GRU(2, 5)
        x = torch.randn(3, 20, 2)
        torch.testing.assert_close(rnn_layer_forward(layer, x)[0], layer(x)[0], rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="fp32_precision"):
            configure(fp32_precision="fp32")
    finally:
        configure(**vars(old))
    assert kernel_config() == old


_OFFLINE = """
import json, torch
from speakerid.kernels import compile_offline
rows = compile_offline(kernels=("gru_fwd", "gru_bwd"), dtypes=(torch.float32, torch.bfloat16))
print(json.dumps(rows))
"""


def test_kernels_compile_for_sm90_without_spills():
    """The GPU code path (not the interpreter) compiles for an H100 with Triton's bundled ptxas, no GPU
    needed, and the default launch config (BLOCK_N=16, 8 warps) fits in registers."""
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, "-c", _OFFLINE], env=env, capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0 and ("ptxas" in proc.stderr or "cuobjdump" in proc.stderr):
        pytest.skip(f"no CUDA toolchain in the triton wheel: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(rows) == 4
    for row in rows:
        assert row["stack"] == 0, f"register spills: {row}"
        assert row["registers"] <= 255


_CUDA_CHECK = """
import torch
from speakerid.kernels import interpreter_active
from speakerid.models import DilatedRNN

assert not interpreter_active()
torch.backends.cudnn.allow_tf32 = False  # an fp32 cuDNN reference
torch.backends.cuda.matmul.allow_tf32 = False  # fp32 kernels use 3xTF32 dots
torch.manual_seed(0)
for cell in ("gru", "rnn", "lstm"):
    for amp in (False, True):
        ref = DilatedRNN(3, 50, [8, 16, 32, 64], cell=cell, impl="cudnn").cuda()
        fused = DilatedRNN(3, 50, [8, 16, 32, 64], cell=cell, impl="triton").cuda()
        fused.load_state_dict(ref.state_dict())
        x = torch.randn(4, 1000, 3, device="cuda", requires_grad=True)
        outs = []
        for m in (ref, fused):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                out, _ = m(x)
            w = torch.linspace(-1, 1, out.numel(), device="cuda").reshape(out.shape)
            outs.append([out.float(), *torch.autograd.grad((out.float() * w).sum(), [x, *m.parameters()])])
        tol = 5e-2 if amp else 1e-4
        for a, b in zip(outs[0], outs[1], strict=True):
            torch.testing.assert_close(b, a, rtol=tol, atol=tol * max(1.0, a.abs().max().item()))
print("ok")
"""


@pytest.mark.requires_cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_kernels_match_cudnn():
    """On a GPU: the compiled kernels (a fresh process, no interpreter) against cuDNN, fp32 and bf16 AMP."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, "-c", _CUDA_CHECK], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
