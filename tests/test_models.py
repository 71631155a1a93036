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

    # Final states: state[l][j] is the state at time T - d + j (the last d steps, in time order).
    assert len(states) == len(dilations)
    for s, d, h in zip(states, dilations, model.hidden_sizes):
        hs = s[0] if cell == "lstm" else s
        assert hs.shape == (d, B, h)
    last = states[-1][0] if cell == "lstm" else states[-1]
    d = dilations[-1]
    torch.testing.assert_close(last[-1], out[:, -1])  # the newest state is the last output
    if T >= d:
        torch.testing.assert_close(last.transpose(0, 1), out[:, T - d :])
    for layer, s in enumerate(states):  # every layer's states, LSTM cell states included, vs the reference
        ref_h, ref_c = reference_states(model, x, layer)
        hs, cs = s if cell == "lstm" else (s, None)
        torch.testing.assert_close(hs, ref_h, rtol=1e-5, atol=1e-10)
        if cs is not None:
            torch.testing.assert_close(cs, ref_c, rtol=1e-5, atol=1e-10)
    no_states = model(x, need_states=False)
    assert no_states[1] is None
    torch.testing.assert_close(no_states[0], out)


def reference_states(model, x, layer):
    """Per-timestep states (h, c) of ``layer`` at times T-d .. T-1 (zeros before 0), by the reference loop."""
    sub = DilatedRNN(
        model.input_size, model.hidden_sizes[: layer + 1], model.dilations[: layer + 1], model.cell
    )
    sub = sub.to(x.dtype)
    sub.load_state_dict({k: v for k, v in model.state_dict().items() if int(k.split(".")[1]) <= layer})
    h = reference_dilated_rnn(sub, x)  # (B, T, H)
    d = model.dilations[layer]
    h = torch.cat([h.new_zeros(h.shape[0], d, h.shape[2]), h], 1)[:, -d:].transpose(0, 1)  # (d, B, H)
    c = None
    if model.cell == "lstm":  # the cell state: rerun the last layer's loop by hand from its input
        below = reference_dilated_rnn(sub_below(model, layer, x.dtype), x) if layer else x
        c = reference_lstm_cells(model.layers[layer], below, d)
    return h, c


def sub_below(model, layer, dtype):
    sub = DilatedRNN(model.input_size, model.hidden_sizes[:layer], model.dilations[:layer], model.cell).to(
        dtype
    )
    sub.load_state_dict({k: v for k, v in model.state_dict().items() if int(k.split(".")[1]) < layer})
    return sub


def reference_lstm_cells(rnn, x, d):
    """(B, T, C) -> LSTM cell states at times T-d .. T-1 as (d, B, H), one step at a time."""
    B, T, _ = x.shape
    H = rnn.hidden_size
    hs, cs = [], []
    zeros = x.new_zeros(B, H)
    for t in range(T):
        h_prev, c_prev = (hs[t - d], cs[t - d]) if t >= d else (zeros, zeros)
        g = x[:, t] @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + h_prev @ rnn.weight_hh_l0.T + rnn.bias_hh_l0
        i_, f_, g_, o_ = g.chunk(4, dim=1)
        c = torch.sigmoid(f_) * c_prev + torch.sigmoid(i_) * torch.tanh(g_)
        hs.append(torch.sigmoid(o_) * torch.tanh(c))
        cs.append(c)
    return torch.stack([zeros] * d + cs, 0)[-d:]


def test_fold_is_one_rnn_call_per_layer():
    model = DilatedRNN(1, 4, [1, 2, 4, 8], cell="gru", impl="cudnn")
    calls = []
    for layer in model.layers:
        layer.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    model(torch.randn(2, 32, 1))
    # Each layer sees the whole sequence folded to (T/d, d*B, C) in a single call.
    assert calls == [(32, 2, 1), (16, 4, 4), (8, 8, 4), (4, 16, 4)]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("cuts", [[12], [10], [5, 6, 7], [1, 2, 3, 13], [23]])
def test_carried_states_continue_the_sequence(cell, cuts):
    """Chunks of any length (also shorter than the largest dilation) continue the sequence exactly."""
    torch.manual_seed(1)
    model = DilatedRNN(2, [4, 3, 2], [2, 4, 8], cell=cell).double()
    x = torch.randn(3, 24, 2, dtype=torch.float64)
    full, full_states = model(x)
    outs, state, start = [], None, 0
    for end in [*cuts, 24]:
        o, state = model(x[:, start:end], hx=state)
        outs.append(o)
        start = end
    torch.testing.assert_close(torch.cat(outs, 1), full)
    for a, b in zip(state, full_states):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="one state per layer"):
        model(x, hx=state[:2])


def test_outputs_unchanged_when_T_is_a_multiple_of_every_dilation():
    """Per-layer right padding only changes the outputs where the old whole-input left padding was nonzero."""
    torch.manual_seed(5)
    model = DilatedRNN(2, 3, [1, 2, 4, 8], cell="gru").double()
    x = torch.randn(2, 13, 2, dtype=torch.float64)
    old = model(torch.nn.functional.pad(x, (0, 0, 3, 0)))[0][:, 3:]  # the old definition: left-pad to 16
    new = model(x)[0]
    assert not torch.allclose(old, new)  # the first real steps no longer see states left by the padding
    torch.testing.assert_close(model(x[:, :8])[0], new[:, :8])  # causal: a prefix gives the same outputs


def test_each_layer_pads_to_its_own_dilation():
    model = DilatedRNN(1, 4, [1, 2, 4, 8], cell="gru", impl="cudnn")
    calls = []
    for layer in model.layers:
        layer.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    model(torch.randn(2, 13, 1))
    assert calls == [
        (13, 2, 1),
        (7, 4, 4),
        (4, 8, 4),
        (2, 16, 4),
    ]  # 13 -> 14, 16, 16 steps; not 16 everywhere


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


@pytest.mark.parametrize("cell", ["gru", "rnn", "lstm"])
def test_fused_cpu_path_equals_aten(cell):
    """impl="cpu" (speakerid.models.cpu_rnn; LSTM falls back to ATen) = impl="cudnn": outputs, states, gradients."""
    torch.manual_seed(6)
    a = DilatedRNN(3, [5, 4, 6], [1, 3, 4], cell=cell, impl="cudnn").double()
    b = DilatedRNN(3, [5, 4, 6], [1, 3, 4], cell=cell, impl="cpu").double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 14, 3, dtype=torch.float64, requires_grad=True)
    hx = [torch.randn(d, 2, h, dtype=torch.float64) for d, h in zip(a.dilations, a.hidden_sizes)]
    if cell == "lstm":
        hx = [(h, torch.randn_like(h)) for h in hx]
    (oa, sa), (ob, sb) = a(x, hx), b(x, hx)
    torch.testing.assert_close(oa, ob)
    for u, v in zip(sa, sb):
        torch.testing.assert_close(u, v)
    w = torch.randn_like(oa)
    ga = torch.autograd.grad((oa * w).sum(), [x, *a.parameters()])
    gb = torch.autograd.grad((ob * w).sum(), [x, *b.parameters()])
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v)


@pytest.mark.parametrize("cls", [torch.nn.GRU, torch.nn.RNN])
def test_fused_cpu_layer_matches_the_module_incl_state_gradients(cls):
    from speakerid.models.cpu_rnn import cpu_layer_forward

    torch.manual_seed(7)
    layer = cls(3, 5).double()
    for T in (1, 2, 9):
        x = torch.randn(T, 4, 3, dtype=torch.float64, requires_grad=True)
        h0 = torch.randn(1, 4, 5, dtype=torch.float64, requires_grad=True)
        (a, ha), (b, hb) = layer(x, h0), cpu_layer_forward(layer, x, h0)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ha, hb)
        w, wh = torch.randn_like(a), torch.randn_like(ha)
        params = [x, h0, *layer.parameters()]
        ga = torch.autograd.grad((a * w).sum() + (ha * wh).sum(), params)
        gb = torch.autograd.grad((b * w).sum() + (hb * wh).sum(), params)
        for u, v in zip(ga, gb):
            torch.testing.assert_close(u, v)
    assert torch.autograd.gradcheck(lambda x, h0: cpu_layer_forward(layer, x, h0)[0], (x, h0))
    with pytest.raises(ValueError, match="one-layer GRU / tanh RNN"):
        cpu_layer_forward(torch.nn.RNN(3, 5, nonlinearity="relu"), x.detach())


def test_auto_takes_the_fused_cpu_path_only_for_small_steps():
    from speakerid.models import cpu_rnn

    small, big = torch.nn.GRU(4, 20), torch.nn.GRU(4, 50)
    assert cpu_rnn.faster_than_aten(small, 16) and cpu_rnn.faster_than_aten(big, 128)
    assert not cpu_rnn.faster_than_aten(small, 4096) and not cpu_rnn.faster_than_aten(torch.nn.LSTM(4, 5), 1)
    torch.manual_seed(8)
    auto = DilatedRNN(2, 20, [1, 1024], cell="gru")  # layer 2 runs 1024 * B sequences: ATen
    aten = DilatedRNN(2, 20, [1, 1024], cell="gru", impl="cudnn")
    aten.load_state_dict(auto.state_dict())
    x = torch.randn(2, 2050, 2)
    torch.testing.assert_close(auto(x)[0], aten(x)[0])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_legacy_period_padding_keeps_the_old_definition(cell):
    """padding="period" (checkpoints saved before the key existed) = left-pad the input to a multiple of the period."""
    torch.manual_seed(9)
    model = DilatedRNN(2, 3, [1, 2, 4, 8], cell=cell, padding="period").double()
    x = torch.randn(2, 13, 2, dtype=torch.float64)
    out, _ = model(x)
    torch.testing.assert_close(out, reference_dilated_rnn(model, x))
    model.padding = "layer"
    torch.testing.assert_close(out, model(torch.nn.functional.pad(x, (0, 0, 3, 0)))[0][:, 3:])
    model.padding = "period"
    with pytest.raises(ValueError, match="multiple of 8"):
        model(x, hx=model(x[:, :8])[1])


def test_model_configs_saved_without_padding_load_with_the_old_definition():
    from speakerid.models import ModelConfig

    cfg = preset("dilated-gru-l0-3", n_classes=5)
    assert cfg.padding == "layer" and build_model(cfg).body.padding == "layer"
    legacy = {k: v for k, v in cfg.to_dict().items() if k != "padding"}
    assert ModelConfig.from_dict(legacy).padding == "period"
    assert build_model(legacy).body.padding == "period"


def test_mfcc_batch_norm_keeps_the_spectral_envelope_and_old_configs_keep_layer_norm():
    """feature_norm "batch" normalises each coefficient over the batch (a fixed per-coefficient affine map in eval
    mode: one clip's features do not depend on its neighbours); configs saved before the key load as "layer"."""
    from speakerid.models import ModelConfig

    cfg = preset("mfcc-gru-1x128", n_classes=3)
    assert cfg.feature_norm == "batch"
    model = build_model(cfg)
    assert isinstance(model.mfcc_norm, torch.nn.BatchNorm1d)
    torch.manual_seed(0)
    x = torch.randn(4, 4000)
    model.train()
    z = model.frontend(x)  # (B, F, N)
    flat = z.reshape(-1, z.shape[-1])
    assert torch.allclose(flat.mean(0), torch.zeros(z.shape[-1]), atol=1e-4)  # per coefficient, over batch
    model.eval()
    alone = model.frontend(x[:1])
    together = model.frontend(torch.cat([x[:1], 100 * torch.randn(3, 4000)]))[:1]
    assert torch.allclose(alone, together, atol=1e-5)
    legacy = {k: v for k, v in cfg.to_dict().items() if k != "feature_norm"}
    assert ModelConfig.from_dict(legacy).feature_norm == "layer"
    assert isinstance(build_model(legacy).mfcc_norm, torch.nn.LayerNorm)
    with pytest.raises(ValueError, match="feature_norm must be one of batch, layer"):
        preset("mfcc-gru-1x128", feature_norm="instance")


def test_stats_readout_is_time_mean_and_std():
    cfg = preset("mfcc-gru-5x20", n_classes=4, readout="stats")
    model = build_model(cfg).eval()
    assert model.embedding_size == 2 * 20 and model.head.in_features == 40
    x = torch.randn(2, 3000)
    out, _ = model.body(model.frontend(x), need_states=False)  # (B, F, H)
    want = torch.cat([out.mean(1), out.std(1, unbiased=False)], dim=-1)
    assert torch.allclose(model.features(x), want, atol=1e-3)
    assert model.embed(x).shape == (2, 40)
    with pytest.raises(ValueError, match="causal=True needs"):
        preset("mfcc-gru-5x20", readout="stats", causal=True)
