"""The paper's secondary benchmarks: loaders (shapes, determinism), copy-memory labels, BPC, task heads, the
experiment registry, the training loop (determinism, resume) and a real learning check on copy memory T = 100.

MNIST / PTB tests read the shared data (``$SPEAKERID_SHARED_DATA`` or the checkout's sibling ``../shared/data``)
and skip with the reason when it is absent.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _crash import count_optimizer_steps, kill_during_step

from speakerid.models import count_parameters
from speakerid.tasks import (
    BLANK,
    DELIMITER,
    EOL,
    EXPERIMENTS,
    CopyMemory,
    PixelMNIST,
    StepwiseModel,
    batchify,
    bits_per_char,
    bptt_chunks,
    build_experiment_model,
    copy_memory_batch,
    get_experiment,
    load_mnist,
    load_ptb_chars,
    mnist_classifier,
    pixel_permutation,
    read_idx,
    run_experiment,
    run_experiment_cli,
    shared_data_dir,
)
from speakerid.training.loop import LoopSettings, lr_at

REPO = Path(__file__).resolve().parents[1]
DATA = Path(
    os.environ.get("SPEAKERID_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)
MNIST = DATA / "mnist"
PTB = DATA / "ptb"
needs_mnist = pytest.mark.skipif(
    not (MNIST / "t10k-labels-idx1-ubyte.gz").exists(),
    reason=f"MNIST IDX files not found in {MNIST} (set SPEAKERID_SHARED_DATA to the folder holding mnist/)",
)
needs_ptb = pytest.mark.skipif(
    not (PTB / "ptb.char.test.txt").exists(),
    reason=f"PTB character files not found in {PTB} (set SPEAKERID_SHARED_DATA to the folder holding ptb/)",
)
LN8 = math.log(8)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny recurrent steps run fastest on one thread (and do not fight other jobs on a shared 2-core box)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------------------------------------------
# Copy memory


def test_copy_memory_labels():
    T = 30
    x, y = copy_memory_batch(5, T, torch.Generator().manual_seed(0))
    assert x.shape == (5, T + 20) and y.shape == (5, 10)
    assert x.dtype == y.dtype == torch.int64
    assert ((x[:, :10] >= 0) & (x[:, :10] < 8)).all()  # 10 data symbols from 0..7
    assert (x[:, 10 : T + 9] == BLANK).all()  # T - 1 blanks
    assert (x[:, T + 9 :] == DELIMITER).all() and x[:, T + 9 :].shape[1] == 11  # 11 delimiters
    torch.testing.assert_close(y, x[:, :10])  # recall the first 10 symbols at the last 10 steps
    assert len(torch.unique(y)) > 4  # actually random


def test_copy_memory_streams_are_deterministic():
    a, b = CopyMemory(50, seed=3), CopyMemory(50, seed=3)
    for k in (0, 7):
        torch.testing.assert_close(a.train_batch(k, 4), b.train_batch(k, 4))
    assert not torch.equal(a.train_batch(0, 4)[0], a.train_batch(1, 4)[0])
    assert not torch.equal(a.train_batch(0, 4)[0], CopyMemory(50, seed=4).train_batch(0, 4)[0])
    torch.testing.assert_close(a.eval_set(16), b.eval_set(16))
    assert not torch.equal(a.eval_set(4)[1], a.train_batch(0, 4)[1])
    with pytest.raises(ValueError, match="need T >= 1"):
        copy_memory_batch(2, 0)


# ----------------------------------------------------------------------------------------------------------------
# MNIST


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_roundtrip_and_errors(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="is not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3)
    with pytest.raises(ValueError, match=r"header says \(10,\) = 10 bytes, found 3"):
        read_idx(tmp_path / "short")


def test_mnist_splits_from_synthetic_idx(tmp_path):
    """The split protocol on a tiny fake dataset: valid = the first images of train, test = t10k."""
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (12, 28, 28))
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(12) % 10)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs[:3])
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1, 2, 3]))
    splits = load_mnist(tmp_path, valid_size=4)
    assert [len(splits[s][1]) for s in ("train", "valid", "test")] == [8, 4, 3]
    torch.testing.assert_close(
        splits["valid"][0], torch.from_numpy(imgs[:4].reshape(4, 784).astype(np.uint8))
    )
    assert splits["train"][1].tolist() == [4, 5, 6, 7, 8, 9, 0, 1]
    data = PixelMNIST(tmp_path, valid_size=4)
    x, y = data.sequences("test", torch.tensor([2, 0]))
    assert x.shape == (2, 784, 1) and x.dtype == torch.float32 and y.tolist() == [3, 1]
    torch.testing.assert_close(x[1, :, 0], torch.from_numpy(imgs[0].reshape(-1) / 255.0).float())


@needs_mnist
def test_mnist_loader_real_files():
    splits = load_mnist(MNIST)
    assert {s: tuple(v[0].shape) for s, v in splits.items()} == {
        "train": (55000, 784),
        "valid": (5000, 784),
        "test": (10000, 784),
    }
    assert splits["test"][1][:8].tolist() == [7, 2, 1, 0, 4, 1, 4, 9]  # the well-known first t10k labels
    assert splits["valid"][1][:5].tolist() == [5, 0, 4, 1, 9]  # the first training labels
    assert torch.bincount(splits["train"][1], minlength=10).min() > 4500

    data = PixelMNIST(MNIST)
    x, y = data.train_batch(3, 16, seed=1)
    assert x.shape == (16, 784, 1) and y.shape == (16,) and 0.0 <= x.min() and x.max() <= 1.0
    torch.testing.assert_close(data.train_batch(3, 16, seed=1), (x, y))  # deterministic
    assert not torch.equal(data.train_batch(4, 16, seed=1)[1], y)
    batches = list(data.batches("valid", 2000))
    assert [len(b[1]) for b in batches] == [2000, 2000, 1000]  # one ordered pass, last batch smaller


@needs_mnist
def test_permuted_and_noisy_mnist():
    perm = pixel_permutation(0)
    assert sorted(perm.tolist()) == list(range(784)) and torch.equal(perm, pixel_permutation(0))
    assert not torch.equal(perm, pixel_permutation(1))
    plain, permuted = PixelMNIST(MNIST), PixelMNIST(MNIST, permute=True)
    idx = torch.tensor([0, 9])
    xp, _ = plain.sequences("test", idx)
    xq, yq = permuted.sequences("test", idx)
    torch.testing.assert_close(xq, xp[:, perm])

    noisy = PixelMNIST(MNIST, length=1000)
    xn, yn = noisy.sequences("test", idx)
    assert xn.shape == (2, 1000, 1) and torch.equal(yn, yq)
    torch.testing.assert_close(xn[:, :784], xp)  # pixels first, then noise
    tail = xn[:, 784:]
    assert 0.0 <= tail.min() and tail.max() <= 1.0 and abs(float(tail.mean()) - 0.5) < 0.05
    # The noise of an example does not depend on the batch it is in, and is fixed for evaluation splits ...
    torch.testing.assert_close(noisy.sequences("test", torch.tensor([9]))[0][0], xn[1])
    # ... while training noise is fresh every epoch.
    e0 = noisy.sequences("train", torch.tensor([5]), epoch=0)[0]
    e1 = noisy.sequences("train", torch.tensor([5]), epoch=1)[0]
    torch.testing.assert_close(e0[:, :784], e1[:, :784])
    assert not torch.equal(e0, e1)
    with pytest.raises(ValueError, match="noisy MNIST is defined on unpermuted pixels"):
        PixelMNIST(MNIST, permute=True, length=1000)


# ----------------------------------------------------------------------------------------------------------------
# PTB characters


def test_bits_per_char_known_cases():
    V = 50
    assert bits_per_char(torch.zeros(3, 7, V), torch.randint(0, V, (3, 7))) == pytest.approx(math.log2(50))
    # Two predictions with probabilities 1/2 and 1/4 for the true symbol: (1 + 2) / 2 = 1.5 bits per char.
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]])
    targets = torch.tensor([0, 1])
    assert bits_per_char(probs.log(), targets) == pytest.approx(1.5)
    # Ignored (-100) targets do not count.
    assert bits_per_char(probs.log(), torch.tensor([0, -100])) == pytest.approx(1.0)


def test_batchify_and_bptt_chunks_cover_every_character_once():
    data = torch.arange(95)
    streams = batchify(data, 4)  # (4, 23): 3 characters dropped
    assert streams.shape == (4, 23) and streams[1, 0] == 23
    chunks = list(bptt_chunks(streams, 8, multiple=4))  # 22 targets per stream: 8 + 8 + 6 (padded to 8)
    assert [tuple(x.shape) for x, _ in chunks] == [(4, 8), (4, 8), (4, 8)]
    x_last, y_last = chunks[-1]
    assert (y_last[:, 6:] == -100).all() and (x_last[:, 6:] == 0).all() and (y_last[:, :6] != -100).all()
    predicted = torch.cat([y[y != -100] for _, y in chunks])
    expected = streams[:, 1:].reshape(-1)
    assert sorted(predicted.tolist()) == sorted(expected.tolist())  # each next-char target exactly once
    for x, y in chunks:
        real = y != -100
        torch.testing.assert_close(y[real], (x + 1)[real])  # y is x shifted by one (data = arange)
    with pytest.raises(ValueError, match="multiple of 4"):
        list(bptt_chunks(streams, 6, multiple=4))


def test_load_ptb_chars_tiny_folder(tmp_path):
    (tmp_path / "ptb.char.train.txt").write_text("a b _ c\nb a\n")
    (tmp_path / "ptb.char.valid.txt").write_text("a _ b\n")
    (tmp_path / "ptb.char.test.txt").write_text("c\n")
    c = load_ptb_chars(tmp_path)
    assert c.vocab == ("_", "a", "b", "c", EOL)
    assert c.train.tolist() == [1, 2, 0, 3, 4, 2, 1, 4]
    assert c.valid.tolist() == [1, 0, 2, 4] and c.test.tolist() == [3, 4]
    assert c.decode(c.train) == "ab c\nba\n"
    (tmp_path / "ptb.char.test.txt").write_text("z\n")
    with pytest.raises(ValueError, match=r"symbols not in the training vocabulary: \['z'\]"):
        load_ptb_chars(tmp_path)


@needs_ptb
def test_ptb_vocabulary_is_49_symbols_plus_eol():
    c = load_ptb_chars(PTB)
    assert c.n_vocab == 50 and c.vocab[-1] == EOL and len(set(c.vocab[:-1])) == 49
    assert "_" in c.vocab and "a" in c.vocab
    raw = (PTB / "ptb.char.valid.txt").read_text()
    n_lines = sum(1 for line in raw.splitlines() if line.strip())
    assert len(c.valid) == len(raw.split()) + n_lines  # every symbol, plus one <eol> per line
    assert int((c.valid == c.vocab.index(EOL)).sum()) == n_lines
    assert c.decode(c.valid[:13]) == "consumers may"
    torch.testing.assert_close(load_ptb_chars(PTB).train[:1000], c.train[:1000])  # deterministic


# ----------------------------------------------------------------------------------------------------------------
# Task heads


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_language_model_carries_state_and_is_causal(cell):
    torch.manual_seed(0)
    model = StepwiseModel(50, 50, [6, 5], [1, 4], cell=cell).eval()
    x = torch.randint(0, 50, (3, 16))
    full, _ = model(x)
    assert full.shape == (3, 16, 50)
    a, s = model(x[:, :8])
    b, _ = model(x[:, 8:], s)
    torch.testing.assert_close(torch.cat([a, b], 1), full)  # truncated BPTT chunks = one long sequence
    x2 = x.clone()
    x2[:, 10:] = (x2[:, 10:] + 1) % 50
    changed, _ = model(x2)
    torch.testing.assert_close(changed[:, :10], full[:, :10])  # the future never leaks into the past


def test_heads_shapes():
    cnn = StepwiseModel(10, 8, 4, [1, 2, 4], arch="cnn")
    assert cnn(torch.randint(0, 10, (2, 30)))[0].shape == (2, 30, 8)
    with pytest.raises(ValueError, match="expected int64 symbol ids"):
        cnn(torch.randn(2, 30))
    for arch, dil in (("rnn", [1, 2, 4]), ("cnn", [1, 2, 4]), ("rnn", [4, 8])):
        clf = mnist_classifier(arch, "gru", [5] * len(dil), dil)
        assert clf(torch.rand(3, 40, 1)).shape == (3, 10)


def test_registry_matches_the_paper():
    names = [
        "copy-500-dilated-rnn",
        "copy-1000-stacked-gru",
        "mnist-dilated-gru-h20",
        "mnist-dilated-gru-h50",
        "pmnist-dilated-rnn-h20",
        "mnist-dilated-cnn-h20",
        "noisy-mnist-1000-dilated-rnn",
        "noisy-mnist-2000-dilated-cnn",
        "ptb-dilated-gru",
    ]
    assert set(names) <= set(EXPERIMENTS)
    e = EXPERIMENTS["copy-500-dilated-rnn"]
    assert (e.hidden, e.dilations, e.task_kwargs["T"]) == ([10] * 9, [2**i for i in range(9)], 500)
    assert EXPERIMENTS["copy-500-stacked-gru"].dilations == [1] * 9
    assert EXPERIMENTS["noisy-mnist-2000-dilated-cnn"].dilations[-1] == 1024  # 11 layers cover T = 2000
    assert EXPERIMENTS["mnist-dilated-cnn-h20"].dilations[-1] == 512  # 10 layers: receptive field 1024
    for e in EXPERIMENTS.values():
        assert (e.lr, e.rms_alpha, e.clip_grad) == (1e-3, 0.9, 0.0) or e.task_kwargs.get("T") == 100
    # Parameter counts against table 1 (k) and table 2 (M): ours have PyTorch's two RNN bias vectors.
    table = {
        "mnist-dilated-rnn-h20": 7e3,
        "mnist-dilated-rnn-h50": 44e3,
        "mnist-dilated-lstm-h20": 28e3,
        "mnist-dilated-lstm-h50": 173e3,
        "mnist-dilated-gru-h20": 21e3,
        "mnist-dilated-gru-h50": 130e3,
        "mnist-dilated-cnn-h20": 7e3,
        "mnist-dilated-cnn-h50": 46e3,
        "ptb-dilated-gru": 1.42e6,
        "ptb-dilated-lstm": 1.9e6,
        "ptb-lstm-h1000": 4.25e6,
        "ptb-gru-h1000": 3.19e6,
    }
    for name, paper in table.items():
        n = count_parameters(build_experiment_model(EXPERIMENTS[name]))
        assert abs(n - paper) / paper < 0.1, (name, n, paper)


def test_experiment_overrides_are_checked():
    e = get_experiment("copy-500-dilated-rnn")
    f = e.replace(T=1000, lr=2e-3, hidden=[4] * 9)
    assert f.task_kwargs["T"] == 1000 and f.lr == 2e-3 and f.hidden == [4] * 9 and e.task_kwargs["T"] == 500
    with pytest.raises(ValueError, match="unknown experiment option 'bogus'; valid: T, arch"):
        e.replace(bogus=1)
    with pytest.raises(ValueError, match="--iterations expects int, got '5'"):
        e.replace(iterations="5")
    with pytest.raises(ValueError, match=r"task_kwargs\['T'\] must be int, got 2.5"):
        e.replace(T=2.5)
    with pytest.raises(ValueError, match="bptt=100 must be a multiple of lcm"):
        get_experiment("ptb-dilated-gru").replace(bptt=100)
    with pytest.raises(ValueError, match="unknown experiment 'copy-9-x'; similar: copy-500-dilated-rnn"):
        get_experiment("copy-9-x")


# ----------------------------------------------------------------------------------------------------------------
# The training loop

TINY = {
    "T": 12,
    "eval_size": 16,
    "hidden": [4] * 3,
    "dilations": [1, 2, 4],
    "batch_size": 8,
    "eval_every": 3,
}


def test_run_is_deterministic_and_resumes_exactly(tmp_path):
    a = run_experiment("copy-100-dilated-rnn", TINY, max_iters=6, seed=1, progress=False)
    b = run_experiment("copy-100-dilated-rnn", TINY, max_iters=6, seed=1, progress=False)
    c = run_experiment("copy-100-dilated-rnn", TINY, max_iters=6, seed=2, progress=False)
    assert a["train_curve"] == b["train_curve"] and a["final"] == b["final"]
    assert a["train_curve"] != c["train_curve"]
    assert [h["iter"] for h in a["history"]] == [3, 6] and a["iterations"] == 6
    assert a["best"]["metric"] == "eval_loss" and a["final"]["eval_loss"] == pytest.approx(a["best"]["value"])

    # A real process SIGKILLed after iteration 5 (last.pt holds iteration 3): the resume runs the 3 missing
    # optimizer steps, not 6 (a seeded rerun from scratch would give the same curve, so count the steps).
    out = tmp_path / "run"
    payload = (
        "from speakerid.tasks import run_experiment\n"
        f"run_experiment('copy-100-dilated-rnn', {TINY!r}, max_iters=6, seed=1, progress=False, "
        f"out_dir={str(out)!r})\n"
    )
    kill_during_step(payload, at=5, workdir=tmp_path)
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 3
    with count_optimizer_steps() as n:
        r = run_experiment(
            "copy-100-dilated-rnn", TINY, max_iters=6, seed=1, progress=False, out_dir=out, resume=True
        )
    assert n[0] == 3, f"resume ran {n[0]} optimizer steps, expected 3"
    assert r["train_curve"] == a["train_curve"] and r["final"] == a["final"]
    lines = [json.loads(s) for s in (out / "history.jsonl").read_text().splitlines()]
    assert [h["iter"] for h in lines] == [3, 6]
    assert json.loads((out / "result.json").read_text())["iterations"] == 6
    with pytest.raises(ValueError, match="different experiment or seed"):
        run_experiment(
            "copy-100-dilated-rnn", TINY, max_iters=6, seed=5, progress=False, out_dir=out, resume=True
        )


def test_step_decay_can_be_set_on_resume_for_the_iterations_not_yet_trained(tmp_path):
    """lr_drop_at: lr x lr_drop from that iteration on. A run resumed with it set (at or after the checkpoint's
    iteration) equals one that had it from the start; moving it into the iterations already trained is refused."""
    s = LoopSettings(steps=10, steps_per_epoch=5, batch_size=1, lr=1e-3, lr_drop_at=4, lr_drop=0.1)
    assert [lr_at(s, k) for k in (0, 3, 4, 9)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])
    drop = {**TINY, "lr": 0.05, "lr_drop_at": 4, "lr_drop": 0.01}

    def run(overrides: dict, max_iters: int = 6, **kw) -> dict:
        return run_experiment(
            "copy-100-dilated-rnn", overrides, max_iters=max_iters, seed=1, progress=False, **kw
        )

    plain, a = run({**TINY, "lr": 0.05}), run(drop)
    assert a["train_curve"][:5] == plain["train_curve"][:5] and a["train_curve"][5] != plain["train_curve"][5]

    out = tmp_path / "run"
    run({**TINY, "lr": 0.05}, max_iters=3, out_dir=out)
    with pytest.raises(ValueError, match=r"lr_drop_at=2 .* already trained .* set lr_drop_at >= 3"):
        run({**drop, "lr_drop_at": 2}, out_dir=out, resume=True)
    r = run(drop, out_dir=out, resume=True)
    assert r["train_curve"] == a["train_curve"] and r["experiment"]["lr_drop_at"] == 4
    with pytest.raises(ValueError, match="different experiment or seed"):  # other fields still must match
        run({**drop, "lr": 0.01}, out_dir=out, resume=True)


@needs_ptb
def test_ptb_run_end_to_end(tmp_path):
    """Two truncated-BPTT steps of a tiny LM, then BPC on slices of valid/test (carried state, padded tail)."""
    ov = {"hidden": [8, 8], "dilations": [1, 4], "batch_size": 4, "bptt": 16, "eval_every": 2}
    ov.update(eval_chars=500, test_chars=2000, eval_batch_size=4)
    r = run_experiment("ptb-dilated-gru", ov, max_iters=2, progress=False, data_root=DATA)
    f = r["final"]
    assert 4.0 < f["valid_bpc"] < 6.0 and 4.0 < f["test_bpc"] < 6.0  # near log2(50) = 5.64 after 2 steps
    assert f["test_chars"] == 2000 - 4  # 4 streams of 500: every character but each stream's first


@needs_mnist
def test_mnist_run_end_to_end():
    ov = {"hidden": [6, 6], "dilations": [1, 2], "batch_size": 16, "eval_limit": 64, "test_limit": 100}
    ov["eval_every"] = 2
    r = run_experiment("pmnist-dilated-rnn-h20", ov, max_iters=2, progress=False, data_root=DATA)
    assert r["history"][0]["valid_n"] == 64 and r["final"]["valid_n"] == 5000 and r["final"]["test_n"] == 100
    assert 0.0 <= r["final"]["test_acc"] <= 100.0


def test_data_folder_is_explicit(monkeypatch, tmp_path):
    """MNIST / PTB need a data folder: given, or $SPEAKERID_SHARED_DATA; never guessed from the install path."""
    monkeypatch.delenv("SPEAKERID_SHARED_DATA", raising=False)
    with pytest.raises(ValueError, match="pass --data_root DIR .* or set SPEAKERID_SHARED_DATA"):
        run_experiment("pmnist-dilated-rnn-h20", max_iters=1, progress=False)
    assert shared_data_dir(tmp_path) == tmp_path
    monkeypatch.setenv("SPEAKERID_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "mnist")):
        run_experiment("pmnist-dilated-rnn-h20", max_iters=1, progress=False)


def test_cli_show_config_and_errors(capsys):
    argv = ["--T", "1000", "--hidden", "3,3", "--dilations=1,2", "--lr", "0.01", "--max-iters", "5"]
    assert run_experiment_cli("copy-500-dilated-rnn", argv, show_config=True) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["task_kwargs"]["T"] == 1000 and shown["hidden"] == [3, 3] and shown["dilations"] == [1, 2]
    assert shown["lr"] == 0.01
    assert run_experiment_cli("copy-500-dilated-rnn", ["--nope", "1"], show_config=True) == 2
    assert "unknown option --nope" in capsys.readouterr().err
    assert run_experiment_cli("copy-500-dilated-rnn", ["--hiden", "3"], show_config=True) == 2
    assert "unknown option --hiden (did you mean --hidden?)" in capsys.readouterr().err
    assert run_experiment_cli("copy-500-dilated-rnn", ["--name", "x"], show_config=True) == 2  # fixed field
    assert "unknown option --name" in capsys.readouterr().err


def test_benchmark_script_writes_jsonl_png_and_table(tmp_path):
    cmd = [sys.executable, str(REPO / "benchmarks" / "paper.py"), "--task", "copy-100"]
    cmd += [
        "--models",
        "dilated-rnn",
        "--max-iters",
        "2",
        "--out",
        str(tmp_path),
        "--eval_size",
        "8",
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    lines = [json.loads(s) for s in (tmp_path / "copy-100.jsonl").read_text().splitlines()]
    assert {ln["name"] for ln in lines} == {"copy-100-dilated-rnn"}
    assert (tmp_path / "copy-100.png").stat().st_size > 1000
    assert "| copy-100-dilated-rnn |" in (tmp_path / "copy-100.md").read_text()


# ----------------------------------------------------------------------------------------------------------------
# Learning: the point of the paper, at a CPU-sized delay


def test_dilated_rnn_learns_copy_memory_where_stacked_gru_does_not():
    """T = 100 (recall distance 110): 7 layers h16, dilations 1..64 vs the same stack without dilation.

    150 RMSProp steps of batch 32 (lr 3e-3): the dilated vanilla RNN gets well below chance (ln 8), the stacked
    GRU stays at chance. Checked for seeds 0, 1, 2 (best eval loss 0.70-0.80 vs >= 2.078).
    """
    budget = {"eval_size": 256}
    dilated = run_experiment("copy-100-dilated-rnn", budget, max_iters=150, seed=0, progress=False)
    assert dilated["final"]["eval_loss"] < 0.5 * LN8, dilated["history"]
    assert dilated["final"]["eval_acc"] > 0.5
    stacked = run_experiment("copy-100-stacked-gru", budget, max_iters=150, seed=0, progress=False)
    assert min(h["eval_loss"] for h in stacked["history"]) > 0.95 * LN8, stacked["history"]


# ----------------------------------------------------------------------------------------------------------------
# benchmarks/ptb_plateau.py: the per-layer statistics behind the PTB plateau finding


def _ptb_plateau():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ptb_plateau", REPO / "benchmarks" / "ptb_plateau.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("z_bias, copies", [(20.0, True), (-20.0, False)])
def test_plateau_gate_stats_read_the_update_gate(z_bias, copies):
    """The update-gate slice is PyTorch's (r, z, n): a gate forced open copies the state, forced shut does not."""
    torch.manual_seed(0)
    rnn = torch.nn.GRU(5, 7)
    with torch.no_grad():
        rnn.bias_ih_l0[7:14] = z_bias
    x, h0 = torch.randn(6, 3, 5), torch.rand(1, 3, 7) * 0.5  # |h0| < 0.95: not saturated
    out, _ = rnn(x, h0)
    stats = _ptb_plateau()._gate_stats(rnn, x, out, h0)
    assert stats["z"] == pytest.approx(1.0 if copies else 0.0, abs=1e-6)
    if copies:
        assert torch.allclose(out, h0.expand_as(out), atol=1e-6) and stats["sat"] == 0.0


@needs_ptb
def test_ptb_plateau_script_reports_every_layer():
    cmd = [sys.executable, str(REPO / "benchmarks" / "ptb_plateau.py"), "--iters", "2", "--every", "1"]
    cmd += ["--runs", "dilated-gru@1e-3,stacked-gru@1e-3:nocarry", "--valid-chars", "2048"]
    cmd += ["--set", "batch_size=8", "dilations=[1,4,16,64]"]  # overrides reach the experiment and the rows
    cmd += ["--data-root", str(DATA)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout
    rows = [json.loads(s) for s in out.splitlines()]
    assert rows[0]["unigram_bpc"] == pytest.approx(
        4.334, abs=1e-3
    )  # the plateau: entropy of char frequencies
    steps = [r for r in rows if "train_bpc" in r]
    assert [(r["model"], r["carry"], r["iter"]) for r in steps] == [
        ("ptb-dilated-gru", True, 1),
        ("ptb-dilated-gru", True, 2),
        ("ptb-stacked-gru", False, 1),
        ("ptb-stacked-gru", False, 2),
    ]
    first = steps[0]
    assert first["batch_size"] == 8 and first["dilations"] == [1, 4, 16, 64]
    assert steps[2]["dilations"] == [1, 4, 16, 64]  # --set applies to every run (the stack is dilated now)
    assert 5.0 < first["train_bpc"] < 6.5  # near log2(50) = 5.64 before training
    for i in range(4):  # at PyTorch's init the update gates sit at sigmoid(~0) and nothing is saturated
        assert first[f"l{i}"]["z"] == pytest.approx(0.5, abs=0.05)
        assert first[f"l{i}"]["sat"] == 0.0 and first[f"l{i}"]["grad"] > 0
    assert "carry_sat" in first["l3"] and "carry_sat" not in steps[2]["l3"]
    finals = [r for r in rows if "valid_bpc" in r]
    assert len(finals) == 2 and all(4.0 < r["valid_bpc"] < 7.0 for r in finals)
    assert all(r["batch_size"] == 8 for r in finals)  # the final row names its run like the others
