"""Inference over a checkpoint or an ONNX file with one pre- and post-processing path.

Used by ``speakerid identify``, ``speakerid enroll``, the Gradio app and the export parity tests, so a clip gets
the same answer everywhere. Dim legend: B batch of crops, T samples per crop, K classes, D embedding size.

Scoring: a clip is cut into fixed crops (``speakerid.audio.fixed_crops``); the model gives per-crop logits and
unit embeddings. With a non-empty speaker registry, the clip's embedding (mean of crop embeddings, normalised)
is ranked against the enrolled speakers by cosine score and a best score below the registry's threshold answers
"unknown". Without one, the crops' log-probabilities are averaged over the model's own classes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .audio import CROP_SAMPLES, SAMPLE_RATE, AudioError, fixed_crops, load_audio
from .registry import UNKNOWN, SpeakerRegistry

__all__ = [
    "Engine",
    "TorchEngine",
    "load_engine",
    "default_model_path",
    "InferenceOptions",
    "Prediction",
    "Identifier",
    "clip_embedding",
]

PRETRAINED = Path(__file__).parent / "pretrained" / "default"


def default_model_path() -> Path:
    """The small model shipped inside the package (trained on FSDD; see pretrained/default/README.md)."""
    return PRETRAINED / "model.pt"


def user_dir() -> Path:
    """Writable place for registries of read-only (shipped) models: $SPEAKERID_HOME or ~/.cache/speakerid."""
    return Path(os.environ.get("SPEAKERID_HOME") or Path.home() / ".cache" / "speakerid")


class Engine:
    """A loaded model. Subclasses set the attributes and implement ``run``."""

    source: Path
    labels: list[str]
    sample_rate: int = SAMPLE_RATE
    crop: int = CROP_SAMPLES
    fingerprint: str = ""
    threshold: float = 0.5  # calibrated "unknown" threshold stored with the model
    provider: str = "cpu"
    n_parameters: int = 0
    model_config: dict

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, T) float32 crops -> (logits (B, K), unit embeddings (B, D)) float32."""
        raise NotImplementedError

    def default_registry_path(self) -> Path:
        """``<model>.registry.json`` beside the model; for the shipped model a user-writable copy."""
        if self.source.parent == PRETRAINED:
            return user_dir() / f"registry-{self.fingerprint}.json"
        return self.source.with_suffix(".registry.json")

    def bundled_registry_path(self) -> Path | None:
        p = self.source.parent / "registry.json"
        return p if self.source.parent == PRETRAINED and p.is_file() else None

    def describe(self) -> dict:
        return {
            "model": str(self.source),
            "name": self.model_config.get("name", ""),
            "classes": list(self.labels),
            "provider": self.provider,
            "parameters": self.n_parameters,
            "sample_rate": self.sample_rate,
            "crop_samples": self.crop,
            "fingerprint": self.fingerprint,
        }


class TorchEngine(Engine):
    """A checkpoint run with PyTorch (CUDA when available unless ``device`` says otherwise)."""

    def __init__(self, path: str | os.PathLike, device: str = "auto"):
        from .checkpoint import fingerprint, load_checkpoint, model_from_checkpoint
        from .models import count_parameters

        ckpt = load_checkpoint(path)
        self.source = Path(path)
        self.device = torch.device(
            "cuda"
            if device == "auto" and torch.cuda.is_available()
            else ("cpu" if device == "auto" else device)
        )
        self.model = model_from_checkpoint(ckpt).to(self.device)
        self.model_config = ckpt["model_config"]
        self.labels = list(ckpt["labels"])
        fe = ckpt.get("frontend", {})
        self.sample_rate = int(fe.get("sample_rate", SAMPLE_RATE))
        self.crop = int(fe.get("crop", CROP_SAMPLES))
        self.fingerprint = fingerprint(ckpt["model"])
        self.threshold = float(ckpt.get("calibration", {}).get("threshold", 0.5))
        self.provider = f"torch-{self.device.type}"
        self.n_parameters = count_parameters(self.model)

    @torch.inference_mode()
    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)).to(self.device)
        logits, emb = self.model.forward_with_embedding(x)
        return logits.float().cpu().numpy(), emb.float().cpu().numpy()


def load_engine(model: str | os.PathLike | None = None, device: str = "auto") -> Engine:
    """A checkpoint (``.pt``) or ONNX file (``.onnx``, with its sidecar JSON); None = the shipped model."""
    path = Path(model) if model else default_model_path()
    if path.suffix == ".onnx":
        from .onnx_engine import OnnxEngine

        return OnnxEngine(path, device=device)
    return TorchEngine(path, device=device)


@dataclass(frozen=True)
class InferenceOptions:
    top_k: int = 5  # speakers listed per clip
    hop: int | None = None  # samples between crop starts (None = the crop length: no overlap)
    max_crops: int = 256  # crops scored per clip at most (evenly spread): bounded time on long files
    batch_size: int = 64  # crops per model call
    threshold: float | None = None  # "unknown" threshold; None = the registry's (calibrated at training)
    mode: str = "auto"  # auto (registry if it has speakers, else classes) | registry | classes
    segments: bool = False  # also return one prediction per crop (who speaks when)
    max_seconds: float | None = 3600.0  # refuse longer files before decoding them


@dataclass
class Prediction:
    speaker: str  # best speaker, or "unknown" below the threshold (registry mode)
    score: float  # probability (classes mode) or cosine score (registry mode) of ``speaker``'s best match
    top_k: list[tuple[str, float]]
    mode: str
    duration: float  # seconds of audio used
    n_crops: int
    embedding: np.ndarray | None = None
    segments: list[dict] = field(default_factory=list)  # [{start, end, speaker, score}]

    def to_dict(self) -> dict:
        return {
            "speaker": self.speaker,
            "score": round(self.score, 6),
            "top_k": [[n, round(s, 6)] for n, s in self.top_k],
            "mode": self.mode,
            "duration": round(self.duration, 3),
            "n_crops": self.n_crops,
            "segments": self.segments,
        }


def _run_batched(engine: Engine, crops: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    outs = [engine.run(crops[i : i + batch_size]) for i in range(0, len(crops), batch_size)]
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def clip_embedding(engine: Engine, clip, options: InferenceOptions | None = None) -> np.ndarray:
    """Unit embedding (D,) of a clip (path, bytes or (T,) float32 array at engine.sample_rate)."""
    o = options or InferenceOptions()
    wave = (
        clip
        if isinstance(clip, np.ndarray)
        else load_audio(clip, engine.sample_rate, max_seconds=o.max_seconds)
    )
    crops, _ = fixed_crops(wave, engine.crop, o.hop, o.max_crops)
    _, emb = _run_batched(engine, crops, o.batch_size)
    e = emb.mean(0)
    return e / (np.linalg.norm(e) + 1e-12)


class Identifier:
    """Engine + optional registry + options: ``identify(clip) -> Prediction``.

    ``registry``: a SpeakerRegistry, a path, or "auto" (the engine's user registry if it exists, else the
    registry bundled with the shipped model, else none).
    """

    def __init__(
        self,
        engine: Engine,
        registry: SpeakerRegistry | str | os.PathLike | None = "auto",
        options: InferenceOptions | None = None,
    ):
        self.engine = engine
        self.options = options or InferenceOptions()
        if registry == "auto":
            registry = self._auto_registry()
        elif registry is not None and not isinstance(registry, SpeakerRegistry):
            registry = SpeakerRegistry.load(registry)
        if registry is not None:
            registry.check_model(engine)
        self.registry: SpeakerRegistry | None = registry

    def _auto_registry(self) -> SpeakerRegistry | None:
        for p in (self.engine.default_registry_path(), self.engine.bundled_registry_path()):
            if p is not None and Path(p).is_file():
                return SpeakerRegistry.load(p)
        return None

    @property
    def mode(self) -> str:
        if self.options.mode != "auto":
            return self.options.mode
        return "registry" if self.registry is not None and len(self.registry) else "classes"

    @property
    def threshold(self) -> float:
        if self.options.threshold is not None:
            return self.options.threshold
        return self.registry.threshold if self.registry is not None else self.engine.threshold

    def load(self, clip) -> np.ndarray:
        """Decode + validate a clip to (T,) at the engine's rate (raises AudioError naming the problem)."""
        if isinstance(clip, np.ndarray):
            return clip
        return load_audio(clip, self.engine.sample_rate, max_seconds=self.options.max_seconds)

    def identify(self, clip) -> Prediction:
        """A path, bytes, or (T,) float32 waveform at ``engine.sample_rate`` -> Prediction."""
        wave = self.load(clip)
        o = self.options
        crops, starts = fixed_crops(wave, self.engine.crop, o.hop, o.max_crops)
        logits, emb = _run_batched(self.engine, crops, o.batch_size)
        return self.score(logits, emb, starts, len(wave))

    def score(self, logits: np.ndarray, emb: np.ndarray, starts: np.ndarray, n_samples: int) -> Prediction:
        """Aggregate per-crop model outputs of one clip into a Prediction."""
        o, sr, crop = self.options, self.engine.sample_rate, self.engine.crop
        mode = self.mode
        e = emb.mean(0)
        e = e / (np.linalg.norm(e) + 1e-12)
        if mode == "registry":
            if self.registry is None or not len(self.registry):
                raise ValueError("registry mode needs enrolled speakers")
            ranked = self.registry.scores(e)
            best, score = ranked[0]
            speaker = best if score >= self.threshold else UNKNOWN
            crop_ranked = [self.registry.scores(x / (np.linalg.norm(x) + 1e-12))[0] for x in emb]
        else:
            logp = _log_softmax(logits.astype(np.float64))
            probs = np.exp(_log_softmax(logp.mean(0)))
            order = np.argsort(-probs, kind="stable")
            ranked = [(self.engine.labels[i], float(probs[i])) for i in order]
            speaker, score = ranked[0]
            crop_ranked = [(self.engine.labels[int(np.argmax(lp))], float(np.exp(lp.max()))) for lp in logp]
        segments = []
        if o.segments:
            for s, (name, sc) in zip(starts, crop_ranked):
                if mode == "registry" and sc < self.threshold:
                    name = UNKNOWN
                end = min(int(s) + crop, n_samples)
                segments.append(
                    {
                        "start": round(int(s) / sr, 3),
                        "end": round(end / sr, 3),
                        "speaker": name,
                        "score": round(sc, 6),
                    }
                )
        return Prediction(
            speaker=speaker,
            score=float(score),
            top_k=ranked[: o.top_k],
            mode=mode,
            duration=n_samples / sr,
            n_crops=len(starts),
            embedding=e,
            segments=segments,
        )

    def identify_many(self, clips) -> list[Prediction | AudioError]:
        """Identify several clips; a bad clip gives its AudioError in its place, never stops the others."""
        out: list[Prediction | AudioError] = []
        for c in clips:
            try:
                out.append(self.identify(c))
            except AudioError as e:
                out.append(e)
        return out
