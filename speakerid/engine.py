"""Engines: a loaded model behind one method, ``run(crops) -> (logits, embeddings)``, plus its model card.

Dim legend: B batch of crops, T samples per crop, K classes, D embedding size.

:class:`TorchEngine` runs a checkpoint with PyTorch; ``speakerid.onnx_engine.OnnxEngine`` runs an ONNX export.
Both are made by ``speakerid.runtime.load_engine`` and used only through this interface, so the pipeline never
asks which kind it has. Everything the pipeline needs to know about the model is ``engine.card``
(``speakerid.card.ModelCard``); the attributes below are shorthands for it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .card import ModelCard
from .vad import VadSettings

__all__ = ["Engine", "TorchEngine", "cpu_count"]


class Engine:
    """A loaded model. Subclasses set ``source``, ``card``, ``provider``, ``on_gpu``, ``n_parameters``,
    ``workers`` and implement ``run``."""

    source: Path
    card: ModelCard
    provider: str = "cpu"  # e.g. "torch-cpu", "onnxruntime-CUDAExecutionProvider"
    provider_note: str = ""  # why a GPU is not used, when it was asked for or available
    on_gpu: bool = False
    n_parameters: int = 0
    workers: int = 1  # model calls the pipeline may run at once (single-threaded CPU calls scale best)

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, T) float32 crops -> (logits (B, K), unit embeddings (B, D)) float32."""
        raise NotImplementedError

    # shorthands for the card
    @property
    def labels(self) -> list[str]:
        return list(self.card.labels)

    @property
    def sample_rate(self) -> int:
        return self.card.sample_rate

    @property
    def crop(self) -> int:
        return self.card.frontend.crop

    @property
    def vad(self) -> VadSettings:
        return self.card.frontend.vad

    @property
    def fingerprint(self) -> str:
        return self.card.fingerprint

    @property
    def threshold(self) -> float:
        return self.card.threshold

    @property
    def model_config(self):
        return self.card.model

    def describe(self) -> dict:
        d = {
            "model": str(self.source),
            "name": self.card.name,
            "classes": self.labels,
            "provider": self.provider,
            "parameters": self.n_parameters,
            "sample_rate": self.sample_rate,
            "crop_samples": self.crop,
            "fingerprint": self.fingerprint,
            "vad": self.vad.to_dict(),
        }
        if self.provider_note:
            d["provider_note"] = self.provider_note
        return d


def cpu_count() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class TorchEngine(Engine):
    """A checkpoint run with PyTorch (CUDA when available unless ``device`` says otherwise).

    ``workers``: on CPU, 0 keeps torch's thread setting (one call uses all cores); N > 0 makes every call
    single-threaded and lets the pipeline run N calls at once, which scales far better for the tiny hidden
    sizes here (note: ``torch.set_num_threads`` is process-wide)."""

    def __init__(self, path: str | os.PathLike, device: str = "auto", workers: int = 0):
        from .checkpoint import checkpoint_card, load_checkpoint, model_from_checkpoint
        from .models import count_parameters

        ckpt = load_checkpoint(path)
        self.source = Path(path)
        self.card = checkpoint_card(ckpt, path)
        self.device = torch.device(
            "cuda"
            if device == "auto" and torch.cuda.is_available()
            else ("cpu" if device == "auto" else device)
        )
        self.model = model_from_checkpoint(ckpt).to(self.device)
        self.on_gpu = self.device.type == "cuda"
        self.provider = f"torch-{self.device.type}"
        self.n_parameters = count_parameters(self.model)
        if workers and not self.on_gpu:
            torch.set_num_threads(1)
            self.workers = int(workers)

    @torch.inference_mode()
    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)).to(self.device)
        logits, emb = self.model.forward_with_embedding(x)
        return logits.float().cpu().numpy(), emb.float().cpu().numpy()
