"""Inference entry point: :func:`load_engine` (a checkpoint or an ONNX file) and the pipeline's names.

    engine = load_engine("model.onnx")                      # or a .pt checkpoint; None = the shipped model
    Identifier(engine).identify("clip.wav")                 # -> Prediction
    Identifier(engine).identify_files(paths, workers=2)     # batched across files -> FileResult per file

The pipeline itself (decode -> speech -> crops -> engine -> vote) is ``speakerid.pipeline``; the engines are
``speakerid.engine.TorchEngine`` and ``speakerid.onnx_engine.OnnxEngine``; which registry file an engine uses is
``speakerid.registry.resolve``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .engine import Engine, TorchEngine, cpu_count
from .pipeline import (
    FileResult,
    Identifier,
    InferenceOptions,
    Prediction,
    clip_embedding,
    embed_clips,
    load_speech,
)
from .registry import PRETRAINED

__all__ = [
    "Engine",
    "TorchEngine",
    "load_engine",
    "default_model_path",
    "InferenceOptions",
    "Prediction",
    "FileResult",
    "Identifier",
    "clip_embedding",
    "embed_clips",
    "load_speech",
    "cpu_count",
]


def default_model_path() -> Path:
    """The small model shipped inside the package (trained on FSDD; see pretrained/default/README.md)."""
    return PRETRAINED / "model.pt"


def load_engine(model: str | os.PathLike | None = None, device: str = "auto", workers: int = 0) -> Engine:
    """A checkpoint (``.pt``) or ONNX file (``.onnx``, with its sidecar JSON); None = the shipped model.

    ``device``: auto (CUDA when it can run), cpu, cuda or cuda:N. ``workers``: on CPU, N > 0 makes each model
    call single-threaded and lets the pipeline run N at once (``engine.workers``; best for batch runs on
    several cores); 0 = one call at a time with the backend's default threads."""
    path = Path(model) if model else default_model_path()
    if path.suffix == ".onnx":
        from .onnx_engine import OnnxEngine

        return OnnxEngine(path, device=device, workers=workers)
    return TorchEngine(path, device=device, workers=workers)
