"""The fold implementation against a per-timestep cell loop, the generalized model, presets and baselines."""

import pytest
import torch

from speakerid.models import (
    PAPER_PARAMS,
    PRESETS,
    DilatedRNN,
    build_model,
    count_parameters,
    exponential_dilations,
    preset,
    reference_dilated_rnn,
)

CASES = [
    # (cell, hidden, dilations, B, T)
    ("rnn", 5, [1, 2, 4], 3, 16),
    ("gru", 4, [1, 2, 4, 8], 2, 13),  # T not a multiple of the largest dilation
    ("lstm", [3, 5, 4], [1, 3, 9], 1, 20),  # batch 1, per-layer hidden sizes, non-power-of-2 dilations
    ("gru", [6, 3], [2, 4], 1, 7),  # starts at 2, T < largest dilation
    ("rnn", [2, 7, 3], [1, 1, 5], 4, 11),
    ("lstm", 4, [4, 8, 16], 2, 33),
    ("gru", [5, 4, 3], [3, 6, 12], 2, 25),
]


@pytest.mark.parametrize("cell,hidden,dilations,B,T", CASES)
def test_fold_equals_per_timestep_loop(cell, hidden, dilations, B, T):
    torch.manual_seed(0)
    model = DilatedRNN(3, hidden, dilations, cell=cell).double()
    x = torch.randn(B, T, 3, dtype=torch.float64, requires_grad=True)
    out, states = model(x)
    ref = reference_dilated_rnn(model, x)
    assert out.shape == (B, T, model.output_size)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-10)

    w = torch.randn_like(out)  # a random linear functional, so every output position matters
    grads = torch.autograd.grad((out * w).sum(), [x, *model.parameters()])
    ref_grads = torch.autograd.grad((ref * w).sum(), [x, *model.parameters()])
    names = ["input"] + [n for n, _ in model.named_parameters()]
    for name, g, r in zip(names, grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-10, msg=f"gradient of {name} differs")

    # Final states: state[l][j] is the state at time Tp - d + j (the last d steps, in time order).
    assert len(states) == len(dilations)
    for s, d, h in zip(states, dilations, model.hidden_sizes):
        hs = s[0] if cell == "lstm" else s
        assert hs.shape == (d, B, h)
    last = states[-1][0] if cell == "lstm" else states[-1]
    d = dilations[-1]
    torch.testing.assert_close(last[-1], out[:, -1])  # the newest state is the last output
    if T >= d:
        torch.testing.assert_close(last.transpose(0, 1), out[:, T - d :])


def test_fold_is_one_rnn_call_per_layer():
    model = DilatedRNN(1, 4, [1, 2, 4, 8], cell="gru")
    calls = []
    for layer in model.layers:
        layer.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    model(torch.randn(2, 32, 1))
    # Each layer sees the whole sequence folded to (T/d, d*B, C) in a single call.
    assert calls == [(32, 2, 1), (16, 4, 4), (8, 8, 4), (4, 16, 4)]


def test_carried_states_continue_the_sequence():
    torch.manual_seed(1)
    model = DilatedRNN(2, [4, 3], [2, 4], cell="lstm")
    x = torch.randn(3, 24, 2)
    full, _ = model(x)
    a, sa = model(x[:, :12])
    b, _ = model(x[:, 12:], hx=sa)
    torch.testing.assert_close(torch.cat([a, b], 1), full)
    with pytest.raises(ValueError, match="multiple of 4"):
        model(x[:, :10], hx=sa)


def test_time_major_matches_batch_first():
    torch.manual_seed(2)
    bf = DilatedRNN(2, 3, [1, 2, 4], cell="gru")
    tm = DilatedRNN(2, 3, [1, 2, 4], cell="gru", batch_first=False)
    tm.load_state_dict(bf.state_dict())
    x = torch.randn(2, 10, 2)
    torch.testing.assert_close(bf(x)[0], tm(x.transpose(0, 1))[0].transpose(0, 1))


@pytest.mark.parametrize("l0", [1, 2, 3])
def test_generalized_equals_separate_subsequences(l0):
    """Dilations starting at M^l0 = M^l0 shared-weight networks, each on one interleaved subsequence."""
    torch.manual_seed(3)
    f = 2**l0
    n_layers = 4
    big = DilatedRNN(1, 5, exponential_dilations(n_layers, 2, l0=l0), cell="gru").double()
    small = DilatedRNN(1, 5, exponential_dilations(n_layers, 2, l0=0), cell="gru").double()
    small.load_state_dict(big.state_dict())  # shared weights
    T = 8 * 2 ** (n_layers - 1 + l0)
    x = torch.randn(2, T, 1, dtype=torch.float64)
    out, _ = big(x)
    for j in range(f):
        sub, _ = small(x[:, j::f])
        torch.testing.assert_close(out[:, j::f], sub, rtol=1e-10, atol=1e-12)


def test_fusion_reads_one_output_per_subsequence():
    torch.manual_seed(4)
    model = build_model(
        preset("dilated-gru-l0-3", n_classes=5, hidden=[6] * 3, dilations=[8, 16, 32])
    ).double()
    # Random, non-uniform weights: at the initial 1/f any order of the f inputs gives the same sum.
    with torch.no_grad():
        model.fusion.weight.copy_(torch.randn(model.fusion.weight.shape, dtype=torch.float64))
        model.fusion.bias.normal_()
    x = torch.randn(2, 256, dtype=torch.float64)
    out, _ = model.body(model.frontend(x))
    w = model.fusion.weight.view(-1)  # (f,)
    assert w.unique().numel() == 8
    expected = (out[:, -8:, :] * w[:, None]).sum(1) + model.fusion.bias
    torch.testing.assert_close(model.features(x), expected)
    logits, emb = model.forward_with_embedding(x)
    assert logits.shape == (2, 5) and emb.shape == (2, 6)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("T", [256, 250])  # 250: the first T % f steps are left out of the averages
def test_mean_fusion_fuses_each_subsequence_time_average(T):
    torch.manual_seed(5)
    cfg = preset(
        "dilated-gru-l0-3", n_classes=5, hidden=[6] * 3, dilations=[8, 16, 32], readout="mean-fusion"
    )
    model = build_model(cfg).double()
    x = torch.randn(2, T, dtype=torch.float64)
    out, _ = model.body(model.frontend(x))  # (2, T, 6)
    tail = out[:, T % 8 :]
    torch.testing.assert_close(model.features(x), tail.mean(1))  # initial weights 1/f: the plain mean
    with torch.no_grad():
        model.fusion.weight.copy_(torch.randn(model.fusion.weight.shape, dtype=torch.float64))
        model.fusion.bias.normal_()
    w = model.fusion.weight.view(-1)  # (f,): column j = steps T - 8 + j, T - 16 + j, ...
    means = torch.stack([tail[:, j::8].mean(1) for j in range(8)], 1)  # (2, 8, 6)
    expected = (means * w[None, :, None]).sum(1) + model.fusion.bias
    torch.testing.assert_close(model.features(x), expected)
    with pytest.raises(ValueError, match="readout must be one of"):
        preset("dilated-gru-l0-3", readout="max")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_and_run(name):
    model = build_model(preset(name, n_classes=7))
    model.eval()
    T = 4096 if model.config.frontend != "none" else 64
    x = torch.randn(2, T)
    with torch.no_grad():
        logits = model(x)
        single = model(x[:1])
    assert logits.shape == (2, 7)
    torch.testing.assert_close(single, logits[:1], rtol=1e-4, atol=1e-5)  # batched == single


def test_parameter_counts_near_paper():
    """Our Table 3 models with 109 classes are within 15 % of the paper's counts (README explains the gap)."""
    for name, paper in PAPER_PARAMS.items():
        ours = count_parameters(build_model(preset(name, n_classes=109)))
        assert abs(ours - paper) / paper < 0.15, (name, ours, paper)
    # Exact counts for the GRU stacks: 3 * (H*C + H*H + 2H) per layer.
    assert count_parameters(build_model(preset("fused-gru-8", n_classes=109))) == (
        3 * (256 * 1 + 256 * 256 + 2 * 256) + (8 + 1) + 256 * 109 + 109  # GRU + 1x8 fusion conv + head
    )


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="positive ints"):
        DilatedRNN(1, 4, [1, 0])
    with pytest.raises(ValueError, match="cell must be one of"):
        DilatedRNN(1, 4, [1], cell="transformer")
    with pytest.raises(ValueError, match="2 hidden sizes for 3 dilations"):
        DilatedRNN(1, [4, 4], [1, 2, 4])
    with pytest.raises(ValueError, match=r"expected input \(B, T, 1\), got shape \(2, 5\)"):
        DilatedRNN(1, 4, [1])(torch.randn(2, 5))
    with pytest.raises(ValueError, match="unknown model preset 'nope'"):
        preset("nope")


def test_dilated_cnn_is_causal():
    torch.manual_seed(0)  # some inits of 4 ReLU units are dead for every input (the output cannot change)
    model = build_model(preset("dilated-cnn", n_classes=3, hidden=[4] * 4, dilations=[1, 2, 4, 8]))
    x = torch.randn(1, 40, 1)
    out, _ = model.body(x)
    x2 = x.clone()
    x2[:, 30:] += 1.0  # changing the future must not change the past
    out2, _ = model.body(x2)
    torch.testing.assert_close(out[:, :30], out2[:, :30])
    assert not torch.allclose(out[:, 30:], out2[:, 30:])


@pytest.mark.parametrize("name", ["dilated-gru-l0-3", "mfcc-gru-1x128"])
def test_answers_do_not_depend_on_recording_level(name):
    """A clip recorded 12 dB quieter or 6 dB louder gets the same logits (per-clip RMS normalisation)."""
    torch.manual_seed(5)
    cfg = preset(name, n_classes=4)
    if name.startswith("dilated"):
        cfg = preset(name, n_classes=4, hidden=[8] * 3, dilations=[8, 16, 32])
    model = build_model(cfg).eval()
    t = torch.arange(4096) / 16000
    x = (0.2 * torch.sin(2 * torch.pi * 180 * t) * (1 + torch.sin(2 * torch.pi * 3 * t)))[None]
    x = x + 0.01 * torch.randn_like(x)
    with torch.no_grad():
        ref = model(x)
        for gain_db in (-12.0, 6.0):
            torch.testing.assert_close(model(x * 10 ** (gain_db / 20)), ref, rtol=1e-3, atol=1e-4)
