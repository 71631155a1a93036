"""Causal checkpoint -> ONNX streaming step (chunk + states in, scores + states out), and its runner.

Dim legend: B streams (dynamic), N samples per chunk (fixed at export), D feature size, K classes, d a layer's
dilation, H its hidden size.

    chunk (B, N) float32, state_0 ... state_{n-1}
        -> feature (B, D) (mean per-step feature of the chunk), logits (B, K) (of that feature),
           state_out_0 ... state_out_{n-1} (same shapes as the inputs)

States, in order: the front-end's (MFCC: the last n_fft - hop samples (B, 432) and the running level (B, 2);
raw: the running level (B, 2)), then one (B, d, H) buffer per recurrent layer (its last d outputs). Zeros start
a stream. Exported with the TorchScript exporter (``dynamo=False``, see NOTES.md): each dilated layer is one
ONNX ``GRU``/``RNN`` node over the folded chunk with its buffer as ``initial_h``. The sidecar
``<out>.json`` (format ``speakerid-stream-onnx/2``) carries the model card (model config and sample rate, labels,
calibrated "unknown" threshold, weight fingerprint, so registries enrolled with the checkpoint apply) and, under
``stream``, the chunk length, period and the state names and shapes.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from speakerid.atomic import write_atomic
from speakerid.card import CardError, ModelCard
from speakerid.checkpoint import checkpoint_card, load_checkpoint, model_from_checkpoint
from speakerid.models import SequenceClassifier

from .onnx_export import DEFAULT_OPSET, ExportError, recurrent_nodes, sidecar_path

__all__ = ["STREAM_FORMAT", "StepGraph", "export_stream", "OnnxStep"]

STREAM_FORMAT = "speakerid-stream-onnx/2"


class StepGraph(nn.Module):
    """``SequenceClassifier.stream`` for one chunk as a graph with flat tensor inputs and outputs."""

    def __init__(self, model: SequenceClassifier):
        super().__init__()
        self.model = model

    def forward(self, chunk: torch.Tensor, *states: torch.Tensor):
        """(B, N), states -> (feature (B, D), logits (B, K), *new states)."""
        steps, new = self.model.stream(chunk, list(states))  # (B, S, D)
        feat = steps.mean(1)  # (B, D)
        return (feat, self.model.classify(feat), *new)


def _chunk_samples(model: SequenceClassifier, chunk_s: float) -> int:
    p = model.stream_period
    return max(1, round(chunk_s * model.config.sample_rate / p)) * p


def export_stream(
    checkpoint, out: str | os.PathLike, chunk_s: float = 0.1, opset: int = DEFAULT_OPSET
) -> dict:
    """Export a causal checkpoint (path or dict) as a streaming step to ``out`` (.onnx) + ``out.json``.

    Raises ExportError naming the file and the problem (not causal, wrong suffix, export failure)."""
    import onnx

    out = Path(out)
    if out.suffix != ".onnx":
        raise ExportError(f"{out}: the output file must end in .onnx")
    source = str(checkpoint) if not isinstance(checkpoint, dict) else "<checkpoint dict>"
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt).eval()
    card = checkpoint_card(ckpt)
    if not model.config.causal:
        raise ExportError(
            f"{source}: this model does not stream (ModelConfig.causal is False: per-clip normalisation); "
            "export its offline graph with `python -m export` instead"
        )
    n = _chunk_samples(model, chunk_s)
    g = torch.Generator().manual_seed(0)
    states = [torch.rand(s.shape, generator=g) for s in model.stream_state(2)]  # non-zero: no folding of 0s
    chunk = torch.randn(2, n, generator=g) * 0.1
    names = [f"state_{i}" for i in range(len(states))]
    out_names = [f"state_out_{i}" for i in range(len(states))]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints from shapes (N is fixed)
        try:
            torch.onnx.export(
                StepGraph(model).eval(),
                (chunk, *states),
                buf,
                dynamo=False,
                opset_version=opset,
                input_names=["chunk", *names],
                output_names=["feature", "logits", *out_names],
                dynamic_axes={k: {0: "batch"} for k in ["chunk", *names, "feature", "logits", *out_names]},
            )
        except Exception as e:
            raise ExportError(
                f"{source}: ONNX export of the streaming step failed ({type(e).__name__}: {e})"
            ) from e
    data = buf.getvalue()
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto, full_check=True)
    bad = [
        r for r in recurrent_nodes(proto) if r["op"] == "GRU" and r["attrs"].get("linear_before_reset") != 1
    ]
    if bad:
        raise ExportError(f"{out}: GRU nodes without linear_before_reset=1: {bad}")
    sidecar = {  # the model card (labels, sample rate, calibration, fingerprint) + what the step graph needs
        "format": STREAM_FORMAT,
        "card": card.to_dict(),
        "stream": {
            "onnx_file": out.name,
            "chunk": n,
            "period": model.stream_period,
            "n_frontend_states": len(states) - len(model.body.layers),
            "states": [{"name": k, "shape": ["batch", *s.shape[1:]]} for k, s in zip(names, states)],
            "opset": opset,
            "source": source,
            "exporter": "torch.onnx.export(dynamo=False)",
        },
    }
    write_atomic(out, data)
    write_atomic(sidecar_path(out), json.dumps(sidecar, indent=2) + "\n")
    return sidecar


class OnnxStep:
    """The exported step in ONNX Runtime, with the interface of ``speakerid.streaming.TorchStep``."""

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        import onnxruntime as ort

        path = Path(path)
        try:
            self.meta = json.loads(sidecar_path(path).read_text())
        except (OSError, ValueError) as e:
            raise ExportError(f"{path}: cannot read its sidecar {sidecar_path(path).name} ({e})") from e
        if self.meta.get("format") != STREAM_FORMAT:
            raise ExportError(
                f"{path}: not a {STREAM_FORMAT} streaming-step export (format {self.meta.get('format')!r}); "
                "re-export it with export.stream_export"
            )
        try:
            self.card = ModelCard.from_dict(self.meta["card"])
        except (KeyError, CardError) as e:
            raise ExportError(f"{path}: bad model card in its sidecar ({e})") from e
        stream = self.meta["stream"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.source = str(path)  # with ``fingerprint``: what registry resolution and checks read
        self.chunk = int(stream["chunk"])
        self.sample_rate = self.card.sample_rate
        self.labels = list(self.card.labels)
        self.fingerprint = self.card.fingerprint
        self.threshold = float(self.card.threshold)
        self._names = [s["name"] for s in stream["states"]]
        self._shapes = [tuple(s["shape"][1:]) for s in stream["states"]]
        self.n_frontend = int(stream["n_frontend_states"])
        self.reset()

    def reset(self) -> None:
        self.state = [np.zeros((1, *s), dtype=np.float32) for s in self._shapes]

    @property
    def state_bytes(self) -> int:
        return sum(s.nbytes for s in self.state)

    def run(self, chunk: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list]:
        """(B, N) chunks + states -> (features (B, D), logits (B, K), new states)."""
        feeds = {"chunk": np.ascontiguousarray(chunk, dtype=np.float32), **dict(zip(self._names, states))}
        feat, logits, *new = self.session.run(None, feeds)
        return feat, logits, new

    def step(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,) float32 -> (mean feature (D,), logits (K,)), carrying the state."""
        feat, logits, self.state = self.run(np.asarray(chunk, dtype=np.float32)[None], self.state)
        return feat[0], logits[0]
