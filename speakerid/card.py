"""The model card: everything besides the weights that a model needs at inference, as one typed, frozen value.

A checkpoint (``card`` key), an ONNX sidecar (``card`` key) and a speaker registry (``card`` key) each carry
the same card, and every reader goes through :meth:`ModelCard.from_dict`, which rejects unknown and missing
keys (a typo or a newer file is an error, never a silent default)::

    ModelCard
      model: ModelConfig        architecture; also the waveform's sample rate (the MFCC needs it: stored once)
      labels: tuple[str, ...]   class names in index order
      frontend: FrontEnd        what happens to a clip before the graph: crop length, speech detection
      calibration: Calibration  the "unknown" threshold (and the EER it was read from)
      fingerprint: str          hash of the weights: a registry is never scored with another model
      format: str               CARD_FORMAT

Files written before the card (``speakerid-checkpoint-v1`` checkpoints, ``speakerid-onnx-v1`` sidecars) are
read by :func:`card_from_v1`, the one converter; it states the defaults those files implied. Anything else
fails with a :class:`CardError` naming the format found.

Extension point: :class:`FrontEnd` is where new per-clip settings go (e.g. streaming chunk length and a causal
front-end); add a field with a default, and old cards keep loading because ``from_dict`` fills defaults only
for fields that are declared here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .audio import CROP_SAMPLES
from .vad import VadSettings

__all__ = [
    "CARD_FORMAT",
    "CardError",
    "FrontEnd",
    "Calibration",
    "ModelCard",
    "card_from_v1",
    "DEFAULT_THRESHOLD",
    "fingerprint",
]

CARD_FORMAT = "speakerid-card-v1"
DEFAULT_THRESHOLD = 0.5  # "unknown" threshold of a model that was never calibrated


class CardError(ValueError):
    """A model card (or a pre-card file) that cannot be read; the message names the problem."""


def _strict(cls, d, what: str) -> dict:
    """Check ``d`` has only ``cls``'s fields and every field without a default. Returns it as a dict."""
    if not isinstance(d, dict):
        raise CardError(f"{what}: expected a mapping, got {type(d).__name__}")
    fs = dataclasses.fields(cls)
    known = {f.name for f in fs}
    unknown = sorted(set(d) - known)
    if unknown:
        raise CardError(f"{what}: unknown keys {unknown} (known: {sorted(known)})")
    required = [
        f.name
        for f in fs
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in d
    ]
    if required:
        raise CardError(f"{what}: missing keys {required}")
    return dict(d)


@dataclass(frozen=True)
class FrontEnd:
    """What is done to a decoded clip (T,) before the model graph sees (B, crop) crops.

    Decoding resamples to ``ModelCard.sample_rate``; per-clip normalisation (``ModelConfig.normalize``) and
    the MFCC are inside the graph, so the ONNX export applies them too.
    """

    crop: int = CROP_SAMPLES  # samples per model crop (training segment length)
    vad: VadSettings = field(default_factory=VadSettings)  # speech detection before cropping

    def __post_init__(self):
        if self.crop < 1:
            raise CardError(f"front-end crop must be >= 1 sample, got {self.crop}")

    def to_dict(self) -> dict:
        return {"crop": self.crop, "vad": self.vad.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> FrontEnd:
        d = _strict(cls, d, "front-end")
        try:
            if "vad" in d:
                d["vad"] = VadSettings.from_dict(d["vad"])
            return cls(**d)
        except (TypeError, ValueError) as e:
            raise CardError(f"front-end: {e}") from e


@dataclass(frozen=True)
class Calibration:
    """The "unknown" threshold (cosine score) and where it came from (validation EER, trial counts)."""

    threshold: float = DEFAULT_THRESHOLD
    eer: float | None = None  # equal-error rate at the threshold; None = never calibrated
    n_genuine: int = 0
    n_impostor: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        d = _strict(cls, d, "calibration")
        try:
            return cls(
                threshold=float(d.get("threshold", DEFAULT_THRESHOLD)),
                eer=None if d.get("eer") is None else float(d["eer"]),
                n_genuine=int(d.get("n_genuine", 0)),
                n_impostor=int(d.get("n_impostor", 0)),
            )
        except (TypeError, ValueError) as e:
            raise CardError(f"calibration: {e}") from e


@dataclass(frozen=True)
class ModelCard:
    """See the module docstring. Build one with :meth:`build` (fingerprint from the weights)."""

    model: object  # speakerid.models.ModelConfig (imported lazily: reading a card needs no torch)
    labels: tuple[str, ...]
    frontend: FrontEnd = field(default_factory=FrontEnd)
    calibration: Calibration = field(default_factory=Calibration)
    fingerprint: str = ""
    format: str = CARD_FORMAT

    def __post_init__(self):
        object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))
        n = getattr(self.model, "n_classes", None)
        if n is not None and n != len(self.labels):
            raise CardError(f"model has {n} classes but the card names {len(self.labels)} labels")

    @property
    def sample_rate(self) -> int:
        """Hz of the waveform the model expects (stored once, in the model config)."""
        return int(self.model.sample_rate)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def threshold(self) -> float:
        return self.calibration.threshold

    def replace(self, **changes) -> ModelCard:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "model": self.model.to_dict(),
            "labels": list(self.labels),
            "frontend": self.frontend.to_dict(),
            "calibration": self.calibration.to_dict(),
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelCard:
        from .models import ModelConfig

        if not isinstance(d, dict):
            raise CardError(f"model card: expected a mapping, got {type(d).__name__}")
        if d.get("format") != CARD_FORMAT:
            raise CardError(
                f"model card format {d.get('format')!r} is not {CARD_FORMAT!r} (a newer speakerid wrote it?)"
            )
        d = _strict(cls, d, "model card")
        try:
            model = ModelConfig.from_dict(d["model"])
        except (TypeError, ValueError) as e:
            raise CardError(f"model card: bad model config ({e})") from e
        return cls(
            model=model,
            labels=tuple(d["labels"]),
            frontend=FrontEnd.from_dict(d.get("frontend", {})),
            calibration=Calibration.from_dict(d.get("calibration", {})),
            fingerprint=str(d.get("fingerprint", "")),
        )

    @classmethod
    def build(cls, model_config, labels, frontend: FrontEnd | None = None, calibration=None, weights=None):
        """A card for ``model_config`` + ``labels``; ``weights`` (a state dict) sets the fingerprint;
        ``calibration`` may be a Calibration or its dict (e.g. from ``training.calibrate_threshold``)."""
        if isinstance(calibration, dict):
            calibration = Calibration.from_dict(calibration)
        return cls(
            model=model_config,
            labels=tuple(labels),
            frontend=frontend or FrontEnd(),
            calibration=calibration or Calibration(),
            fingerprint=fingerprint(weights) if weights is not None else "",
        )


def fingerprint(state_dict: dict) -> str:
    """A short hash of the weights (sorted names + float32 bytes), so a registry is never scored with another
    model. The same for a checkpoint and its ONNX export (the sidecar stores the checkpoint's)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for k in sorted(state_dict):
        v = state_dict[k]
        h.update(k.encode())
        if torch.is_tensor(v):
            h.update(v.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------
# the one converter for files written before the card


def card_from_v1(d: dict, fingerprint: str) -> ModelCard:
    """A card from a ``speakerid-checkpoint-v1`` checkpoint or a ``speakerid-onnx-v1`` sidecar dict.

    v1 files kept ``labels`` and ``model_config`` at the top level; the crop and speech-detection settings in
    ``frontend`` (checkpoint) or at the top level (sidecar); the threshold in ``calibration`` (and, in
    sidecars, ``threshold``); the sample rate twice (``frontend.sample_rate`` and ``model_config.sample_rate``,
    always equal: a mismatch is refused). What v1 files left out meant: crop 8192 samples, the default speech
    detection (files made before it existed), threshold 0.5 (an uncalibrated model).
    ``fingerprint``: of the checkpoint's weights, or the sidecar's ``fingerprint``.
    """
    from .models import ModelConfig

    try:
        model = ModelConfig.from_dict(d["model_config"])
        labels = list(d["labels"])
    except KeyError as e:
        raise CardError(f"v1 file is missing {e.args[0]!r}") from e
    except (TypeError, ValueError) as e:
        raise CardError(f"v1 file has a bad model config ({e})") from e
    fe = d["frontend"] if isinstance(d.get("frontend"), dict) else d  # checkpoint | sidecar layout
    rate = fe.get("sample_rate", model.sample_rate)
    if int(rate) != model.sample_rate:
        raise CardError(
            f"v1 file stores sample rate {rate} but its model config {model.sample_rate}; cannot tell which holds"
        )
    vad = dict(fe.get("vad") or {})
    vad.pop("silero_vad_version", None)  # informative only: the version the exporter had
    cal = dict(d.get("calibration") or {})
    if "threshold" not in cal and "threshold" in d:
        cal["threshold"] = d["threshold"]
    try:
        frontend = FrontEnd(crop=int(fe.get("crop", 8192)), vad=VadSettings.from_dict(vad or None))
        calibration = Calibration.from_dict(cal)
        return ModelCard(model, tuple(labels), frontend, calibration, str(fingerprint))
    except (TypeError, ValueError) as e:
        raise CardError(f"v1 file: {e}") from e
