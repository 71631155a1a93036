"""Inference over a checkpoint or an ONNX file with one pre- and post-processing path.

Used by ``speakerid identify``, ``speakerid enroll``, the Gradio app and the export parity tests, so a clip gets
the same answer everywhere. Dim legend: B batch of crops, T samples per crop, K classes, D embedding size.

Speech detection (``speakerid.vad``) comes first: only the samples the detector calls speech are cropped,
embedded and voted on, and a clip without enough speech is refused with an AudioError naming it. The engine
carries its detector settings (``engine.vad``, from the checkpoint or the ONNX sidecar), so a checkpoint and its
ONNX export treat a clip the same way.

Scoring: a clip's speech is cut into fixed crops (``speakerid.audio.fixed_crops``); the model gives per-crop logits and
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
from .vad import VadSettings, speech_only

__all__ = [
    "Engine",
    "TorchEngine",
    "load_engine",
    "default_model_path",
    "InferenceOptions",
    "Prediction",
    "Identifier",
    "clip_embedding",
    "load_speech",
]

PRETRAINED = Path(__file__).parent / "pretrained" / "default"


def default_model_path() -> Path:
    """The small model shipped inside the package (trained on FSDD; see pretrained/default/README.md)."""
    return PRETRAINED / "model.pt"


def user_dir() -> Path:
    """Writable place for registries of read-only (shipped) models: $SPEAKERID_HOME or ~/.cache/speakerid."""
    return Path(os.environ.get("SPEAKERID_HOME") or Path.home() / ".cache" / "speakerid")


def _bundled_fingerprint() -> str | None:
    """Fingerprint of the shipped model, read from its bundled registry (cheap: no checkpoint load)."""
    import json

    try:
        return json.loads((PRETRAINED / "registry.json").read_text(encoding="utf-8"))["model_fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
    vad: VadSettings = (
        VadSettings()
    )  # speech detection applied before the model (checkpoint/sidecar settings)

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, T) float32 crops -> (logits (B, K), unit embeddings (B, D)) float32."""
        raise NotImplementedError

    def default_registry_path(self) -> Path:
        """Where enrollments go without ``--registry``: for the shipped model (checkpoint or an ONNX export of
        it: same fingerprint) a user-writable file in :func:`user_dir`; else ``<model>.registry.json``."""
        if self.bundled_registry_path() is not None:
            return user_dir() / f"registry-{self.fingerprint}.json"
        return self.source.with_suffix(".registry.json")

    def bundled_registry_path(self) -> Path | None:
        """The registry shipped with the default model, when this engine runs that model (by fingerprint)."""
        return PRETRAINED / "registry.json" if _bundled_fingerprint() == self.fingerprint else None

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
            "vad": self.vad.to_dict(),
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
        self.vad = VadSettings.from_dict(fe.get("vad"))  # checkpoints made before speech detection: defaults
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
    duration: float  # seconds of audio in the clip
    n_crops: int
    embedding: np.ndarray | None = None
    segments: list[dict] = field(default_factory=list)  # [{start, end, speaker, score}]
    speech: float | None = None  # seconds the speech detector kept (what was embedded and voted on)

    def to_dict(self) -> dict:
        return {
            "speaker": self.speaker,
            "score": round(self.score, 6),
            "top_k": [[n, round(s, 6)] for n, s in self.top_k],
            "mode": self.mode,
            "duration": round(self.duration, 3),
            "n_crops": self.n_crops,
            "speech": None if self.speech is None else round(self.speech, 3),
            "segments": self.segments,
        }


def _run_batched(engine: Engine, crops: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    outs = [engine.run(crops[i : i + batch_size]) for i in range(0, len(crops), batch_size)]
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _clip_name(clip, name: str | None) -> str:
    if name is not None:
        return str(name)
    if isinstance(clip, (str, os.PathLike)):
        return os.fspath(clip)
    return getattr(clip, "name", "<in-memory audio>")


def load_speech(
    engine: Engine, clip, max_seconds: float | None = None, name: str | None = None
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Decode (unless already a (T,) array at ``engine.sample_rate``) and keep the speech.

    Returns ``(speech (T_kept,) float32, index (T_kept,) int64 positions in the clip or None when all was kept,
    T samples in the clip)``. Raises AudioError naming the clip for undecodable audio, no speech or too little.
    """
    label = _clip_name(clip, name)
    wave = (
        clip
        if isinstance(clip, np.ndarray)
        else load_audio(clip, engine.sample_rate, max_seconds=max_seconds)
    )
    speech, regions = speech_only(wave, label, engine.vad)
    index = None if speech is wave else regions.index()
    return speech, index, int(wave.shape[0])


def clip_embedding(
    engine: Engine, clip, options: InferenceOptions | None = None, name: str | None = None
) -> np.ndarray:
    """Unit embedding (D,) of a clip's speech (path, bytes or (T,) float32 array at engine.sample_rate)."""
    o = options or InferenceOptions()
    wave, _, _ = load_speech(engine, clip, o.max_seconds, name)
    crops, _ = fixed_crops(wave, engine.crop, o.hop, o.max_crops)
    _, emb = _run_batched(engine, crops, o.batch_size)
    e = emb.mean(0)
    return e / (np.linalg.norm(e) + 1e-12)


class Identifier:
    """Engine + optional registry + options: ``identify(clip) -> Prediction``.

    ``registry``: a SpeakerRegistry, a path, or "auto" (``registry.resolve``: the engine's default registry if
    it exists, else the registry bundled with the shipped model, else none). A registry made with another
    model is refused (RegistryError).
    """

    def __init__(
        self,
        engine: Engine,
        registry: SpeakerRegistry | str | os.PathLike | None = "auto",
        options: InferenceOptions | None = None,
    ):
        self.engine = engine
        self.options = options or InferenceOptions()
        source = None
        if registry == "auto":
            registry = self._auto_registry()
        elif registry is not None and not isinstance(registry, SpeakerRegistry):
            source, registry = registry, SpeakerRegistry.load(registry)
        if registry is not None:
            registry.check_model(engine, source)
        self.registry: SpeakerRegistry | None = registry

    def _auto_registry(self) -> SpeakerRegistry | None:
        from .registry import resolve

        loc = resolve(self.engine)
        return SpeakerRegistry.load(loc.read) if loc.read is not None else None

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

    def identify(self, clip, name: str | None = None) -> Prediction:
        """A path, bytes, or (T,) float32 waveform at ``engine.sample_rate`` -> Prediction of its speech.

        ``name`` labels an in-memory clip in errors. Raises AudioError (bad audio, no or too little speech)."""
        o = self.options
        wave, index, n_samples = load_speech(self.engine, clip, o.max_seconds, name)
        crops, starts = fixed_crops(wave, self.engine.crop, o.hop, o.max_crops)
        logits, emb = _run_batched(self.engine, crops, o.batch_size)
        return self.score(logits, emb, starts, n_samples, index)

    def score(
        self,
        logits: np.ndarray,
        emb: np.ndarray,
        starts: np.ndarray,
        n_samples: int,
        index: np.ndarray | None = None,
    ) -> Prediction:
        """Aggregate per-crop model outputs of one clip into a Prediction.

        ``starts`` (N,) are crop starts in the speech that was cropped; ``index`` (T_kept,) maps its samples to
        positions in the clip of ``n_samples`` samples (None: nothing was dropped)."""
        o, sr, crop = self.options, self.engine.sample_rate, self.engine.crop
        n_kept = n_samples if index is None else len(index)
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
                a, b = int(s), min(int(s) + crop, n_kept)
                if index is not None:  # back to the clip's time line (dropped silence is not a segment)
                    a, b = int(index[a]), int(index[b - 1]) + 1
                segments.append(
                    {
                        "start": round(a / sr, 3),
                        "end": round(b / sr, 3),
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
            speech=n_kept / sr,
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
