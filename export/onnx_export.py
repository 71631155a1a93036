"""Checkpoint -> ONNX inference graph (+ sidecar JSON), and the ONNX-vs-PyTorch parity check.

Dim legend: B batch of crops, T samples per crop (any length; the model's crop length is a recommendation),
K classes, D embedding size.

The graph is the whole inference path of ``SequenceClassifier.forward_with_embedding``:

    wav (B, T) float32 at the sidecar's sample rate -> logits (B, K) float32, embedding (B, D) float32 (unit norm)

with the front-end inside (per-clip normalisation for raw models, the MFCC for MFCC models) and B and T dynamic.
It is exported with the TorchScript exporter (``dynamo=False``): each dilated layer becomes one ONNX ``GRU`` (or
``LSTM``/``RNN``) node over the folded (T/d, d*B, C) view, with ``linear_before_reset=1`` and the default
activations, which the CUDA execution provider runs with cuDNN. The dynamo exporter bakes the example's time
length into the fold's Reshape nodes, so it is not used. The example input used for tracing has a length that
is not a multiple of the largest dilation, so the left-padding branch is part of the graph (a pad of 0 is
still correct); the parity check runs other lengths to prove the time axis is really dynamic.

``fp16=True`` keeps the front-end, the fusion and the classifier in float32 and runs the recurrent body in
float16 (inputs and outputs stay float32). It is meant for the CUDA provider; ONNX Runtime's CPU provider runs
it too, upcasting the float16 nodes.

The sidecar ``<model>.json`` (next to ``<model>.onnx``) carries what the runtime needs besides the graph:
``card``, the checkpoint's model card unchanged (labels, model config with the sample rate, front-end with crop
length and speech detection, calibration, and the checkpoint's weight fingerprint, so speaker registries
enrolled with the checkpoint work with the ONNX model), and ``onnx``: tensor names, the SHA-256 of the ONNX
file, fp16, opset, recurrent nodes and the versions of the tools that made it.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import platform
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from speakerid.atomic import write_atomic
from speakerid.audio import fixed_crops, load_audio
from speakerid.card import ModelCard
from speakerid.checkpoint import checkpoint_card, load_checkpoint, model_from_checkpoint
from speakerid.models import SequenceClassifier, count_parameters
from speakerid.onnx_engine import SIDECAR_FORMAT
from speakerid.vad import silero_version

__all__ = [
    "SIDECAR_FORMAT",
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "ExportError",
    "InferenceGraph",
    "export_onnx",
    "sidecar_path",
    "recurrent_nodes",
    "check_parity",
]

INPUT_NAME = "wav"
OUTPUT_NAMES = ("logits", "embedding")
DEFAULT_OPSET = 17
RECURRENT_OPS = ("GRU", "LSTM", "RNN")


class ExportError(ValueError):
    """An export or parity check that failed; the message names the file and the problem."""


def sidecar_path(onnx_path: str | os.PathLike) -> Path:
    """``model.onnx`` -> ``model.json``."""
    return Path(onnx_path).with_suffix(".json")


class InferenceGraph(nn.Module):
    """What gets exported: wav (B, T) float32 -> (logits (B, K) float32, unit embedding (B, D) float32)."""

    def __init__(self, model: SequenceClassifier, fp16: bool = False):
        super().__init__()
        model = model.eval()
        if fp16:
            # Recurrent body only: the MFCC's power spectrum overflows float16 and its 1e-10 floor underflows.
            model = copy.deepcopy(model)
            model.body.half()
            model.body.register_forward_pre_hook(lambda mod, args: (args[0].half(), *args[1:]))
            model.body.register_forward_hook(lambda mod, args, out: (out[0].float(), out[1]))
        self.model = model

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) -> ((B, K), (B, D))."""
        logits, emb = self.model.forward_with_embedding(wav)
        return logits.float(), emb.float()


def _resolve(checkpoint_or_model) -> tuple[SequenceClassifier, ModelCard, str]:
    """-> (model in eval mode, its model card, source description)."""
    if isinstance(checkpoint_or_model, SequenceClassifier):
        model = checkpoint_or_model
        labels = [f"class_{i}" for i in range(model.config.n_classes)]
        card = ModelCard.build(model.config, labels, weights=model.state_dict())
        return model.eval(), card, "<in-memory model>"
    if isinstance(checkpoint_or_model, dict):
        ck = checkpoint_or_model
        return model_from_checkpoint(ck), checkpoint_card(ck), "<checkpoint dict>"
    path = Path(checkpoint_or_model)
    ckpt = load_checkpoint(path)
    return model_from_checkpoint(ckpt), checkpoint_card(ckpt, path), str(path)


def recurrent_nodes(model_proto) -> list[dict]:
    """Every GRU/LSTM/RNN node of an ONNX model with its attributes: [{op, name, attrs}]."""
    import onnx

    out = []
    for node in model_proto.graph.node:
        if node.op_type in RECURRENT_OPS:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
            if "activations" in attrs:
                attrs["activations"] = [
                    a.decode() if isinstance(a, bytes) else a for a in attrs["activations"]
                ]
            out.append({"op": node.op_type, "name": node.name, "attrs": attrs})
    return out


def _check_recurrent_nodes(model_proto, model: SequenceClassifier, out: Path) -> list[dict]:
    """The exported graph must have one recurrent node per layer, GRUs with linear_before_reset=1 and
    default activations (what ORT's CUDA provider runs with cuDNN)."""
    nodes = recurrent_nodes(model_proto)
    c = model.config
    if c.arch == "rnn":
        want = {"gru": "GRU", "lstm": "LSTM", "rnn": "RNN"}[c.cell]
        found = [n for n in nodes if n["op"] == want]
        if len(found) != len(c.hidden):
            raise ExportError(
                f"{out}: expected {len(c.hidden)} ONNX {want} nodes (one per layer), found {len(found)}; "
                "the recurrent layers were not exported as ONNX RNN ops"
            )
    for n in nodes:
        if n["op"] != "GRU":
            continue
        if n["attrs"].get("linear_before_reset", 0) != 1:
            raise ExportError(
                f"{out}: GRU node {n['name']} has linear_before_reset != 1 (PyTorch GRU semantics)"
            )
        acts = n["attrs"].get("activations")
        if acts is not None and [a.lower() for a in acts] not in (
            ["sigmoid", "tanh"],
            ["sigmoid", "tanh"] * 2,
        ):
            raise ExportError(f"{out}: GRU node {n['name']} has non-default activations {acts}")
    return nodes


def _versions() -> dict:
    import onnx

    v = {"python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__}
    try:
        from importlib.metadata import version

        v["speakerid"] = version("speakerid")
    except Exception:  # not installed as a distribution (e.g. run from a source tree)
        v["speakerid"] = "unknown"
    return v


def export_onnx(
    checkpoint_or_model,
    out: str | os.PathLike,
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    example_length: int | None = None,
) -> dict:
    """Export a checkpoint (path or dict) or a SequenceClassifier to ``out`` (.onnx) + sidecar ``out.json``.

    Both files are written atomically; ``onnx.checker`` must pass and every GRU node must have
    ``linear_before_reset=1``. Returns the sidecar dict. Raises ExportError (or CheckpointError) naming the
    file and the problem.
    """
    import onnx

    out = Path(out)
    if out.suffix != ".onnx":
        raise ExportError(
            f"{out}: the output file must end in .onnx (the sidecar goes to {sidecar_path(out).name})"
        )
    if opset < 14:
        raise ExportError(
            f"opset {opset} is too old: GRU with linear_before_reset and dynamic shapes need >= 14"
        )
    model, card, source = _resolve(checkpoint_or_model)
    if model.config.frontend == "none":
        raise ExportError(
            f"{source}: models with frontend='none' take features, not waveforms; nothing to deploy"
        )
    crop = card.frontend.crop
    period = getattr(model.body, "period", 1)
    # An example length that needs left-padding (see the module docstring), and long enough for the MFCC.
    n = example_length or max(crop, 2 * period, 1024) + 37
    if n % period == 0:
        n += 1
    graph = InferenceGraph(model, fp16=fp16).eval()
    example = torch.randn(2, n, generator=torch.Generator().manual_seed(0)) * 0.1
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints from shapes: handled, see above
        try:
            torch.onnx.export(
                graph,
                (example,),
                buf,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 1: "time"},
                    OUTPUT_NAMES[0]: {0: "batch"},
                    OUTPUT_NAMES[1]: {0: "batch"},
                },
                do_constant_folding=True,
            )
        except Exception as e:
            raise ExportError(f"{source}: ONNX export failed ({type(e).__name__}: {e})") from e
    data = buf.getvalue()
    proto = onnx.load_from_string(data)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{out}: exported graph fails onnx.checker ({e})") from e
    nodes = _check_recurrent_nodes(proto, model, out)
    graph_facts = {
        "onnx_file": out.name,
        "onnx_sha256": hashlib.sha256(data).hexdigest(),
        "input": {"name": INPUT_NAME, "shape": ["batch", "time"], "dtype": "float32"},
        "outputs": {
            OUTPUT_NAMES[0]: {"shape": ["batch", model.config.n_classes], "dtype": "float32"},
            OUTPUT_NAMES[1]: {
                "shape": ["batch", model.embedding_size],
                "dtype": "float32",
                "unit_norm": True,
            },
        },
        "n_parameters": count_parameters(model),
        "fp16": bool(fp16),
        "opset": opset,
        "ir_version": proto.ir_version,
        "recurrent_nodes": [
            {
                "op": n["op"],
                **{k: n["attrs"].get(k) for k in ("hidden_size", "linear_before_reset") if k in n["attrs"]},
            }
            for n in nodes
        ],
        "source": source,
        "exporter": "torch.onnx.export(dynamo=False)",
        "versions": _versions() | {"silero_vad": silero_version()},
    }
    # The card travels unchanged: speech detection is applied before the graph by speakerid.pipeline with the
    # same settings as for the checkpoint, and the fingerprint is the checkpoint's.
    sidecar = {"format": SIDECAR_FORMAT, "card": card.to_dict(), "onnx": graph_facts}
    write_atomic(out, data)
    write_atomic(sidecar_path(out), json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n")
    return sidecar


# ---------------------------------------------------------------------------------------------------------
# parity


def _torch_run(model: SequenceClassifier, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        logits, emb = model.forward_with_embedding(
            torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        )
    return logits.numpy(), emb.numpy()


def check_parity(
    onnx_path: str | os.PathLike,
    checkpoint_or_model,
    clips: list | None = None,
    batch_sizes: tuple[int, ...] = (1, 17),
    lengths: tuple[int, ...] | None = None,
    atol: float | None = None,
    device: str = "cpu",
    seed: int = 0,
    threads: int = 0,
) -> dict:
    """Run the ONNX file (through ``speakerid.onnx_engine.OnnxEngine``) and PyTorch on the same inputs.

    Inputs: random waveforms (B, T) for every batch size in ``batch_sizes`` and every length in ``lengths``
    (default: the crop, lengths that are not a multiple of the largest dilation, and a short one), and the
    crops of real ``clips`` (paths or bytes, decoded with ``speakerid.audio.load_audio``) both as fixed crops
    and at their own length. Returns ``{ok, max_abs_logits, max_abs_embedding, top1_agree, cases: [...]}``;
    ``ok`` needs max |logits diff| and max |embedding diff| <= atol (1e-4 fp32, 5e-2 fp16) and the same top-1
    class everywhere (the embedding is what enrollment and "unknown" use, so it must match as well).
    ``threads``: ONNX Runtime intra-op threads (0 = its default).
    """
    from speakerid.onnx_engine import OnnxEngine

    engine = OnnxEngine(onnx_path, device=device, threads=threads)
    model, _, _ = _resolve(checkpoint_or_model)
    if atol is None:
        atol = 5e-2 if engine.fp16 else 1e-4
    period = getattr(model.body, "period", 1)
    crop = engine.crop
    if lengths is None:
        lengths = tuple(dict.fromkeys([crop, crop + period // 2 + 3, max(period + 1, 600), 777]))
    rng = np.random.default_rng(seed)
    cases: list[tuple[str, np.ndarray]] = []
    for b in batch_sizes:
        for t in lengths:
            # Speech-like level; a few clips louder/quieter to exercise the normalisation.
            x = rng.standard_normal((b, t)).astype(np.float32) * rng.uniform(0.01, 0.5, (b, 1)).astype(
                np.float32
            )
            cases.append((f"random B={b} T={t}", x))
    for clip in clips or []:
        wave = load_audio(clip, engine.sample_rate)
        crops, _ = fixed_crops(wave, crop)
        name = os.fspath(clip) if isinstance(clip, (str, os.PathLike)) else "<clip>"
        cases.append((f"{name} crops B={len(crops)} T={crop}", crops))
        cases.append((f"{name} whole B=1 T={len(wave)}", wave[None]))
    report = {
        "ok": True,
        "atol": atol,
        "provider": engine.provider,
        "max_abs_logits": 0.0,
        "max_abs_embedding": 0.0,
        "top1_agree": True,
        "cases": [],
    }
    for name, x in cases:
        lt, et = _torch_run(model, x)
        lo, eo = engine.run(x)
        dl = float(np.abs(lo - lt).max())
        de = float(np.abs(eo - et).max())
        same = bool((lo.argmax(-1) == lt.argmax(-1)).all())
        report["cases"].append(
            {"case": name, "max_abs_logits": dl, "max_abs_embedding": de, "top1_agree": same}
        )
        report["max_abs_logits"] = max(report["max_abs_logits"], dl)
        report["max_abs_embedding"] = max(report["max_abs_embedding"], de)
        report["top1_agree"] &= same
    report["ok"] = bool(
        report["max_abs_logits"] <= atol and report["max_abs_embedding"] <= atol and report["top1_agree"]
    )
    return report
