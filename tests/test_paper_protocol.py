"""The paper-protocol pieces: TF-1.x RMSProp (speakerid.optim) and the initialisations (speakerid.models.init)."""

import math

import pytest
import torch
from torch import nn

from speakerid.models import DilatedRNN
from speakerid.models.init import init_weights_
from speakerid.optim import TFRMSprop, make_optimizer


def test_tf_rmsprop_follows_the_tf1_update_rule():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(5, dtype=torch.float64))
    opt = TFRMSprop([w], lr=0.01, decay=0.9)
    ref, ms = w.detach().clone(), torch.ones(5, dtype=torch.float64)  # TF starts the accumulator at 1
    for _ in range(4):
        g = torch.randn(5, dtype=torch.float64)
        w.grad = g.clone()
        opt.step()
        ms = 0.9 * ms + 0.1 * g * g
        ref = ref - 0.01 * g / torch.sqrt(ms + 1e-10)
        torch.testing.assert_close(w.detach(), ref)


def test_tf_rmsprop_first_steps_scale_with_the_gradient_unlike_torch():
    """TF's first step is lr * g / sqrt(0.9 + 0.1 g^2) ~ lr * g; PyTorch's ~3.2 lr whatever the gradient's size."""
    steps = {}
    for name in ("rmsprop", "rmsprop-tf"):
        w = nn.Parameter(torch.zeros(2))
        opt = make_optimizer(name, [w], lr=1e-3, decay=0.9)
        w.grad = torch.tensor([1e-4, 1e-2])
        opt.step()
        steps[name] = -w.detach()
    torch.testing.assert_close(steps["rmsprop"], torch.full((2,), 1e-3 / math.sqrt(0.1)), rtol=1e-3, atol=0)
    g = torch.tensor([1e-4, 1e-2])
    torch.testing.assert_close(
        steps["rmsprop-tf"], 1e-3 * g / torch.sqrt(0.9 + 0.1 * g * g), rtol=1e-5, atol=0
    )
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer("adam", [w], 1e-3, 0.9)


def test_tf_rmsprop_resumes_from_its_state_dict(tmp_path):
    torch.manual_seed(1)
    a, b = nn.Parameter(torch.randn(3)), nn.Parameter(torch.zeros(3))
    opt_a = TFRMSprop([a], lr=0.1)
    a.grad = torch.randn(3)
    opt_a.step()
    b.data.copy_(a.data)
    opt_b = TFRMSprop([b], lr=0.1)
    torch.save(opt_a.state_dict(), tmp_path / "opt.pt")  # as a resumed run does (last.pt)
    opt_b.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    g = torch.randn(3)
    a.grad, b.grad = g.clone(), g.clone()
    opt_a.step()
    opt_b.step()
    torch.testing.assert_close(a, b)


class _Net(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.body = DilatedRNN(10, 10, [1, 2, 4], cell=cell)
        self.head = nn.Linear(10, 8)


@pytest.mark.parametrize("cell,gates", [("rnn", 1), ("gru", 3), ("lstm", 4)])
def test_tf_init_is_glorot_kernels_zero_biases_normal_head(cell, gates):
    torch.manual_seed(2)
    net = init_weights_(_Net(cell), "tf")
    H = 10
    for layer in net.body.layers:
        fan_in = layer.input_size + H
        w = torch.cat([layer.weight_ih_l0, layer.weight_hh_l0], 1)  # TF's [C + H] kernel, per gate block
        parts = [(0, 2 * H, 2 * H), (2 * H, 3 * H, H)] if gates == 3 else [(0, gates * H, gates * H)]
        for lo, hi, fan_out in parts:
            a = math.sqrt(6 / (fan_in + fan_out))
            assert w[lo:hi].abs().max() <= a and w[lo:hi].abs().max() > 0.8 * a
        b = layer.bias_ih_l0 + layer.bias_hh_l0
        expected = torch.zeros(gates * H)
        if cell == "lstm":
            expected[H : 2 * H] = 1.0  # BasicLSTMCell's forget bias
        if cell == "gru":
            expected[: 2 * H] = 1.0  # GRUCell's gate bias
        torch.testing.assert_close(b, expected)
    head = torch.cat([net.head.weight.flatten(), net.head.bias])
    assert 0.7 < float(head.std()) < 1.3  # N(0, 1), not PyTorch's U(-1/sqrt(10), 1/sqrt(10))
    with pytest.raises(ValueError, match="init must be one of"):
        init_weights_(net, "xavier")


def test_results_tables_are_generated_from_the_results_files():
    """README.md and docs/paper_benchmarks.md show exactly what docs/results/*.jsonl hold."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "results_table.py"
    spec = importlib.util.spec_from_file_location("results_table", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--check"]) == 0, "run python benchmarks/results_table.py"
    rows = mod.rows(Path(mod.ROOT) / "docs" / "results")
    assert len(rows) > 2 and all(r.count("|") == 7 for r in rows)
