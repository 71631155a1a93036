"""ONNX export: onnx.checker, GRU nodes the CUDA provider runs with cuDNN, sidecar, and ONNX Runtime (CPU
provider) vs PyTorch parity on random and real clips, batch 1 and 17, lengths that are and are not a multiple
of the largest dilation -- for every Table 3 model type (randomly initialised; parity does not need training)."""

import atexit
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from _synth import make_prepared, voice

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `export/` is a top-level folder of the repo (plain `pytest` may not see it)
    sys.path.insert(0, str(REPO))
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from export import ExportError, check_parity, export_onnx, recurrent_nodes, sidecar_path  # noqa: E402
from speakerid.card import Calibration, FrontEnd, ModelCard  # noqa: E402
from speakerid.checkpoint import fingerprint, make_checkpoint, save_atomic  # noqa: E402
from speakerid.models import build_model, preset  # noqa: E402
from speakerid.onnx_engine import OnnxEngine, OnnxModelError  # noqa: E402
from speakerid.runtime import Identifier, InferenceOptions, load_engine  # noqa: E402

FSDD = Path(os.environ.get("SPEAKERID_FSDD", REPO.parent / "shared" / "data" / "fsdd" / "recordings"))
TABLE3 = [
    "dilated-gru-l0-3",
    "dilated-gru-l0-5",
    "fused-gru-8",
    "fused-gru-32",
    "mfcc-gru-5x20",
    "mfcc-gru-1x128",
]
LABELS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]


def save_checkpoint(
    path: Path, name: str, seed: int = 0, crop: int = 8192, threshold: float | None = 0.61, **overrides
) -> dict:
    """A randomly initialised preset in the checkpoint format of speakerid.training (what export reads)."""
    torch.manual_seed(seed)
    model = build_model(preset(name, n_classes=len(LABELS), **overrides))
    randomize_constant_parameters(model)
    cal = Calibration(threshold, eer=0.1) if threshold is not None else None
    ckpt = make_checkpoint(model, ModelCard.build(model.config, LABELS, FrontEnd(crop=crop), cal))
    save_atomic(ckpt, path)
    return ckpt


def randomize_constant_parameters(model: torch.nn.Module) -> None:
    """Give every parameter that starts constant (the 1-by-f fusion starts at 1/f, biases at 0) random,
    non-uniform values: with equal fusion weights, feeding the f subsequence outputs in the wrong order (in
    the model or in the exported graph) would change nothing, and no parity test could see it."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in model.parameters():
            flat = p.view(-1)
            if flat.numel() > 1 and bool((flat == flat[0]).all()):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5 + (flat[0] if flat[0] != 0 else 0.0))


_SYNTH_DIR = Path(tempfile.mkdtemp(prefix="speakerid-export-clips-"))
atexit.register(shutil.rmtree, _SYNTH_DIR, ignore_errors=True)


def real_clips(n: int = 2) -> list[Path]:
    """FSDD recordings (8 kHz WAV) when ../shared is here; otherwise synthetic voices written as 8 kHz WAV
    files of odd lengths, so the parity tests still run (through the same decoder and resampler)."""
    clips = [FSDD / f"{d}_{s}_{d}.wav" for d, s in zip(range(n), ["jackson", "theo", "lucas"])]
    if all(c.is_file() for c in clips):
        return clips
    out = []
    for k in range(n):
        p = _SYNTH_DIR / f"synthetic_{k}.wav"
        if not p.is_file():
            sf.write(p, voice(k, 3001 + 1234 * k, seed=40 + k, sr=8000), 8000, subtype="PCM_16")
        out.append(p)
    return out


@pytest.fixture(scope="module", params=TABLE3)
def exported(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    ckpt = save_checkpoint(d / "model.pt", request.param)
    sidecar = export_onnx(d / "model.pt", d / "model.onnx")
    return request.param, d / "model.pt", d / "model.onnx", ckpt, sidecar


def test_export_passes_checker_and_keeps_cudnn_friendly_gru_nodes(exported):
    name, _, path, ckpt, sidecar = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    cfg = ckpt["card"]["model"]
    nodes = recurrent_nodes(proto)
    assert [n["op"] for n in nodes] == ["GRU"] * len(cfg["hidden"]), name  # one ONNX GRU per dilated layer
    for n, h in zip(nodes, cfg["hidden"]):
        assert n["attrs"]["linear_before_reset"] == 1
        assert n["attrs"]["hidden_size"] == h
        assert n["attrs"].get("activations", ["Sigmoid", "Tanh"]) == ["Sigmoid", "Tanh"]
        assert n["attrs"].get("direction", "forward") == "forward"
    # No Loop/Scan: the recurrence is the GRU op itself, not an unrolled or scripted loop.
    assert not {"Loop", "Scan", "If"} & {n.op_type for n in proto.graph.node}
    (inp,) = proto.graph.input
    assert inp.name == "wav" and [d.dim_param for d in inp.type.tensor_type.shape.dim] == ["batch", "time"]
    assert [o.name for o in proto.graph.output] == ["logits", "embedding"]
    if cfg["frontend"] == "mfcc":  # the MFCC front-end is inside the graph (strided conv STFT, mel, log, DCT)
        assert {"Conv", "Log", "MatMul"} <= {n.op_type for n in proto.graph.node}


def test_sidecar_carries_what_the_runtime_needs(exported):
    _, _, path, ckpt, sidecar = exported
    on_disk = json.loads(sidecar_path(path).read_text())
    assert on_disk == sidecar
    card = ModelCard.from_dict(sidecar["card"])
    assert sidecar["card"] == ckpt["card"]  # the checkpoint's card travels unchanged
    assert list(card.labels) == LABELS and card.sample_rate == 16000 and card.frontend.crop == 8192
    assert card.fingerprint == fingerprint(ckpt["model"]) and card.threshold == 0.61
    graph = sidecar["onnx"]
    assert graph["opset"] == 17 and graph["fp16"] is False
    assert {"torch", "onnx", "python", "silero_vad"} <= set(graph["versions"])
    engine = OnnxEngine(path, device="cpu")
    torch_engine = load_engine(path.with_suffix(".pt"), device="cpu")
    assert engine.card == torch_engine.card
    for attr in ("labels", "sample_rate", "crop", "fingerprint", "threshold", "n_parameters", "model_config"):
        assert getattr(engine, attr) == getattr(torch_engine, attr), attr
    assert engine.provider == "onnxruntime-CPUExecutionProvider"


def test_parity_with_pytorch_random_and_real_clips(exported):
    name, ckpt_path, path, ckpt, _ = exported
    period = int(np.lcm.reduce(ckpt["card"]["model"]["dilations"]))
    clips = real_clips(2)
    # Batch 1: the crop (a multiple of every dilation) and lengths that are not; real clips as crops and whole.
    one = check_parity(
        path, ckpt_path, clips=clips, batch_sizes=(1,), lengths=(8192, 8192 - 3 * period // 4 - 5), threads=1
    )
    # Batch 17: short lengths keep the CPU time down; still not multiples of the largest dilation.
    base = max(period, 512)
    many = check_parity(path, ckpt_path, batch_sizes=(17,), lengths=(base + 333, 2 * base + 1), threads=1)
    for rep in (one, many):
        assert rep["ok"], rep
        assert rep["max_abs_logits"] <= 1e-4 and rep["top1_agree"]
        assert rep["provider"] == "onnxruntime-CPUExecutionProvider"
    cases = [c["case"] for c in one["cases"] + many["cases"]]
    assert any("B=17" in c for c in cases) and sum("whole" in c for c in cases) == 2
    assert period == 1 or any(int(c.rsplit("T=", 1)[1]) % period for c in cases), "no length off the grid"


def test_onnx_and_checkpoint_give_the_same_identification(exported):
    _, ckpt_path, path, _, _ = exported
    clip = real_clips(1)[0]
    opts = InferenceOptions(top_k=6, segments=True)
    a = Identifier(OnnxEngine(path, device="cpu"), registry=None, options=opts).identify(clip)
    b = Identifier(load_engine(ckpt_path, device="cpu"), registry=None, options=opts).identify(clip)
    assert a.speaker == b.speaker and [n for n, _ in a.top_k] == [n for n, _ in b.top_k]
    np.testing.assert_allclose([s for _, s in a.top_k], [s for _, s in b.top_k], atol=1e-5)
    np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-5)


@pytest.mark.parametrize("name,op", [("stacked-lstm", "LSTM"), ("stacked-rnn", "RNN"), ("dilated-cnn", None)])
def test_baselines_export_too(tmp_path, name, op):
    save_checkpoint(
        tmp_path / "m.pt",
        name,
        hidden=[16] * (10 if op is None else 3),
        **({} if op is None else {"dilations": [1, 2, 4]}),
    )
    export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    nodes = recurrent_nodes(onnx.load(str(tmp_path / "m.onnx")))
    assert [n["op"] for n in nodes] == ([op] * 3 if op else [])
    rep = check_parity(
        tmp_path / "m.onnx", tmp_path / "m.pt", batch_sizes=(1, 17), lengths=(1000, 301), threads=1
    )
    assert rep["ok"], rep


def test_io_binding_path_gives_the_same_outputs(exported):
    _, _, path, _, _ = exported
    x = np.random.default_rng(1).standard_normal((3, 5000)).astype(np.float32) * 0.1
    plain = OnnxEngine(path, device="cpu", io_binding=False).run(x)
    bound = OnnxEngine(path, device="cpu", io_binding=True, threads=1).run(x)
    for a, b in zip(plain, bound):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_fp16_export(tmp_path):
    ckpt = save_checkpoint(tmp_path / "m.pt", "mfcc-gru-5x20")
    side = export_onnx(tmp_path / "m.pt", tmp_path / "m16.onnx", fp16=True)
    proto = onnx.load(str(tmp_path / "m16.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert side["onnx"]["fp16"] and side["card"]["fingerprint"] == fingerprint(ckpt["model"])
    fp16_inits = {i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    for node in proto.graph.node:
        if node.op_type == "GRU":
            assert node.input[1] in fp16_inits and node.input[2] in fp16_inits  # W, R in half
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # IO stays float32
    rep = check_parity(
        tmp_path / "m16.onnx",
        tmp_path / "m.pt",
        clips=real_clips(1),
        batch_sizes=(1, 17),
        lengths=(8192, 3001),
        threads=1,
    )
    assert rep["ok"] and rep["atol"] == 5e-2, rep


def test_cli_default_check_and_errors(tmp_path, capsys):
    save_checkpoint(tmp_path / "m.pt", "mfcc-gru-5x20")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "export",
            "--checkpoint",
            str(tmp_path / "m.pt"),
            "--out",
            str(tmp_path / "out" / "m.onnx"),
            "--clips",
            str(real_clips(1)[0]),
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,  # liveness only
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["parity"]["ok"] and summary["parity"]["max_abs_logits"] <= 1e-4
    assert (tmp_path / "out" / "m.json").is_file()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    from export.__main__ import main as export_main

    assert export_main(["--checkpoint", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "b.onnx")]) == 2
    err = capsys.readouterr().err
    assert "bad.pt: not a speakerid checkpoint or not safe" in err and not (tmp_path / "b.onnx").exists()
    with pytest.raises(ExportError, match=r"must end in \.onnx"):
        export_onnx(tmp_path / "m.pt", tmp_path / "m.bin")


def test_engine_rejects_missing_or_mismatched_sidecar(tmp_path):
    save_checkpoint(tmp_path / "a.pt", "mfcc-gru-5x20", seed=0)
    save_checkpoint(tmp_path / "b.pt", "mfcc-gru-5x20", seed=1)
    export_onnx(tmp_path / "a.pt", tmp_path / "a.onnx")
    export_onnx(tmp_path / "b.pt", tmp_path / "b.onnx")
    (tmp_path / "b.json").replace(tmp_path / "a.json")  # a's graph with b's sidecar
    with pytest.raises(OnnxModelError, match=r"a\.onnx: the file does not match its sidecar"):
        OnnxEngine(tmp_path / "a.onnx")
    with pytest.raises(OnnxModelError, match=r"b\.onnx: sidecar b\.json not found"):
        OnnxEngine(tmp_path / "b.onnx")
    export_onnx(tmp_path / "b.pt", tmp_path / "b.onnx")
    with pytest.raises(RuntimeError, match=r"b\.onnx: ONNX Runtime failed on crops of shape \(1, 3\)"):
        OnnxEngine(tmp_path / "b.onnx").run(np.zeros((1, 3), np.float32))  # too short for the MFCC window
    (tmp_path / "c.onnx").write_bytes(b"garbage")
    side = json.loads((tmp_path / "b.json").read_text())
    side["onnx"]["onnx_sha256"] = None  # a valid sidecar: loading the graph itself is what fails
    (tmp_path / "c.json").write_text(json.dumps(side))
    with pytest.raises(OnnxModelError, match=r"c\.onnx: ONNX Runtime cannot load the model"):
        OnnxEngine(tmp_path / "c.onnx")


def test_provider_choice_is_reported(tmp_path):
    save_checkpoint(tmp_path / "m.pt", "mfcc-gru-5x20")
    export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    from speakerid.onnx_engine import cuda_status

    can_cuda, why = cuda_status()
    auto = OnnxEngine(tmp_path / "m.onnx", device="auto")
    if can_cuda:
        assert auto.provider == "onnxruntime-CUDAExecutionProvider" and auto.io_binding
    else:
        assert auto.provider == "onnxruntime-CPUExecutionProvider" and auto.provider_note == why and why
        with pytest.raises(OnnxModelError, match="CUDA was requested but cannot be used"):
            OnnxEngine(tmp_path / "m.onnx", device="cuda")
    assert OnnxEngine(tmp_path / "m.onnx", device="cpu").provider == "onnxruntime-CPUExecutionProvider"


@pytest.mark.requires_cuda
def test_cuda_provider_parity(tmp_path):
    ok, why = __import__("speakerid.onnx_engine", fromlist=["cuda_status"]).cuda_status()
    if not ok:
        pytest.skip(f"ONNX Runtime CUDA provider cannot run here: {why}")
    save_checkpoint(tmp_path / "m.pt", "dilated-gru-l0-3")
    export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    rep = check_parity(tmp_path / "m.onnx", tmp_path / "m.pt", device="cuda", batch_sizes=(1, 17))
    assert rep["provider"] == "onnxruntime-CUDAExecutionProvider" and rep["ok"], rep


def test_parity_report_fails_when_only_the_embedding_differs(tmp_path):
    """A graph whose logits are right but whose embedding is scrambled (enrollment and "unknown" would be wrong)
    must not pass the parity check."""
    save_checkpoint(tmp_path / "m.pt", "mfcc-gru-5x20")
    export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    (emb_out,) = [o for o in proto.graph.output if o.name == "embedding"]
    dim = emb_out.type.tensor_type.shape.dim[1].dim_value or 20
    for node in proto.graph.node:  # rename the producer's output, then permute it into "embedding"
        node.output[:] = ["embedding_raw" if o == "embedding" else o for o in node.output]
    perm = onnx.helper.make_tensor("emb_perm", onnx.TensorProto.INT64, [dim], [*range(1, dim), 0])
    proto.graph.initializer.append(perm)
    proto.graph.node.append(
        onnx.helper.make_node("Gather", ["embedding_raw", "emb_perm"], ["embedding"], axis=1)
    )
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp_path / "m.onnx"))
    side = json.loads(sidecar_path(tmp_path / "m.onnx").read_text())
    side["onnx"]["onnx_sha256"] = hashlib.sha256((tmp_path / "m.onnx").read_bytes()).hexdigest()
    sidecar_path(tmp_path / "m.onnx").write_text(json.dumps(side))
    rep = check_parity(tmp_path / "m.onnx", tmp_path / "m.pt", batch_sizes=(2,), lengths=(3001,), threads=1)
    assert rep["max_abs_logits"] <= 1e-4 and rep["top1_agree"]  # the logits still agree ...
    assert rep["max_abs_embedding"] > 1e-2 and not rep["ok"], rep  # ... the embedding does not


def test_export_of_a_trained_checkpoint_with_learned_fusion(tmp_path):
    """Train the raw-waveform dilated GRU (l0 = 3: 8 subsequences fused by a learned 1-by-8 conv) for a few
    steps, then export the checkpoint the trainer wrote: the learned fusion weights are no longer uniform, so
    the ONNX graph must fuse the subsequences in the same order as PyTorch (logits and embeddings, batch 1 and
    17, lengths off the dilation grid)."""
    from speakerid.training import TrainConfig, train

    data = make_prepared(tmp_path / "data", n_speakers=3, per_speaker=8)
    cfg = TrainConfig(
        name="t",
        data=str(data),
        out=str(tmp_path / "run"),
        model="dilated-gru-l0-3",
        hidden=[8, 8, 8],
        dilations=[8, 16, 32],
        crop=2048,
        batch_size=8,
        lr=1e-2,
        optimizer="adam",
        epochs=2,
        threads=1,
        val_max_crops=2,
    )
    train(cfg, progress=False)
    ckpt_path = tmp_path / "run" / "best.pt"
    w = torch.load(ckpt_path, weights_only=True)["model"]["fusion.weight"].view(-1)  # (8,)
    assert w.numel() == 8 and float(w.max() - w.min()) > 1e-3, w  # training moved it off 1/8
    export_onnx(ckpt_path, tmp_path / "m.onnx")
    rep = check_parity(
        tmp_path / "m.onnx",
        ckpt_path,
        clips=real_clips(1),
        batch_sizes=(1, 17),
        lengths=(2048, 2048 - 8 * 3 - 5, 777),
        threads=1,
    )
    assert rep["ok"], rep
    assert rep["max_abs_logits"] <= 1e-4 and rep["max_abs_embedding"] <= 1e-4
