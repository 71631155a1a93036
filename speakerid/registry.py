"""Enrolled speakers: name -> embeddings + centroid, a threshold for "unknown", and the model's fingerprint.

The registry is a small JSON file. Names are data (JSON keys), never file paths. A registry remembers the
fingerprint of the model whose embeddings it holds and refuses to be scored with another model.

**Which registry** (decided only here, in :func:`resolve`): ``--registry FILE`` when given; otherwise the model's
default registry (for the shipped model, and ONNX exports of it, ``$SPEAKERID_HOME`` or
``~/.cache/speakerid/registry-<fingerprint>.json``; for other models ``<model>.registry.json`` beside it). Until
that file exists, identification uses the registry bundled with the shipped model (read-only).

**New registries are empty**: the first enrollment into a file that does not exist creates it with only the
new speakers, unless ``with_bundled`` (``--with-bundled``) asks to start from the bundled speakers.

**Threshold**: a new registry starts from the model's calibrated "unknown" threshold. After every change it is
recalibrated from the enrolled speakers when there are enough of them (:data:`CALIBRATE_MIN_SPEAKERS` speakers
with at least :data:`CALIBRATE_MIN_CLIPS` clips each): each clip is scored against the centroid of its own
speaker's *other* clips (genuine) and against every other speaker's centroid (impostor), and the threshold is
the equal-error point of those scores. With fewer, the model's threshold is kept. ``threshold_source`` says
which.

**Concurrent writers** (two ``speakerid enroll``, the app and a CLI) never lose a name: every write goes
through :meth:`SpeakerRegistry.update`, which holds an exclusive ``fcntl`` lock on ``<registry>.lock``,
re-reads the file, applies the one change (add these speakers / remove those), recalibrates and writes it
atomically (``speakerid.atomic``). Embeddings are computed before taking the lock, so the lock is held for
milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_open
from .card import CardError, ModelCard
from .metrics import equal_error_rate

try:
    import fcntl
except ImportError:  # not POSIX: writes stay atomic, but concurrent writers are not serialised
    fcntl = None

__all__ = [
    "RegistryError",
    "SpeakerRegistry",
    "RegistryLocation",
    "resolve",
    "validate_name",
    "UNKNOWN",
    "PRETRAINED",
    "user_dir",
    "default_path",
    "bundled_path",
]

PRETRAINED = Path(__file__).parent / "pretrained" / "default"  # the shipped model and its registry

CALIBRATE_MIN_SPEAKERS = 2  # recalibrate the threshold from enrolled clips with at least this many speakers
CALIBRATE_MIN_CLIPS = 3  # ... each with at least this many clips

FORMAT = "speakerid-registry-v2"  # carries the model card
FORMAT_V1 = "speakerid-registry-v1"  # fingerprint only (read; written again as v2 with the engine's card)
UNKNOWN = "unknown"
MAX_NAME = 64


class RegistryError(ValueError):
    """Bad speaker name, duplicate, missing speaker, wrong model or unreadable registry file."""


def validate_name(name: str) -> str:
    """Strip and check a speaker name: 1..64 printable characters, not "unknown". Returns the clean name."""
    if not isinstance(name, str):
        raise RegistryError(f"speaker name must be a string, got {type(name).__name__}")
    clean = unicodedata.normalize("NFC", name).strip()
    if not clean:
        raise RegistryError("speaker name is empty")
    if len(clean) > MAX_NAME:
        raise RegistryError(f"speaker name is longer than {MAX_NAME} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in clean):
        raise RegistryError(f"speaker name {clean!r} contains control characters")
    if clean.lower() == UNKNOWN:
        raise RegistryError(f"{UNKNOWN!r} is reserved for speakers below the threshold")
    return clean


@dataclass(frozen=True)
class RegistryLocation:
    """Where an engine's speakers live. ``path``: the file written by enroll/remove. ``read``: the file that
    identification reads now (``path`` once it exists; before that the bundled registry, or None).
    ``bundled``: the registry shipped with the model (read-only), or None."""

    path: Path
    read: Path | None
    bundled: Path | None
    explicit: bool  # --registry was given

    @property
    def is_bundled(self) -> bool:
        return self.read is not None and self.read == self.bundled and self.read != self.path

    def describe(self) -> str:
        if self.read is None:
            return f"{self.path} (does not exist yet; no bundled registry for this model)"
        if self.is_bundled:
            return f"{self.read} (bundled with the model, read-only; enrollments go to {self.path})"
        return str(self.read)


def user_dir() -> Path:
    """Writable place for registries of read-only (shipped) models: $SPEAKERID_HOME or ~/.cache/speakerid."""
    return Path(os.environ.get("SPEAKERID_HOME") or Path.home() / ".cache" / "speakerid")


def _bundled_fingerprint() -> str | None:
    """Fingerprint of the shipped model, read from its bundled registry (cheap: no checkpoint load)."""
    try:
        return SpeakerRegistry.load(PRETRAINED / "registry.json").fingerprint
    except RegistryError:
        return None


def bundled_path(engine) -> Path | None:
    """The registry shipped with the default model, when ``engine`` runs that model (by fingerprint: the
    checkpoint or an ONNX export of it)."""
    return PRETRAINED / "registry.json" if _bundled_fingerprint() == engine.fingerprint else None


def default_path(engine) -> Path:
    """Where enrollments go without ``--registry``: for the shipped model a user-writable file in
    :func:`user_dir`; else ``<model>.registry.json`` beside the model."""
    if bundled_path(engine) is not None:
        return user_dir() / f"registry-{engine.fingerprint}.json"
    return Path(engine.source).with_suffix(".registry.json")


def resolve(engine, registry: str | os.PathLike | None = None) -> RegistryLocation:
    """The one place that decides which registry file an engine uses (see the module docstring)."""
    bundled = bundled_path(engine)
    if registry is not None:
        path = Path(registry)
        return RegistryLocation(path, path, bundled, True)
    path = default_path(engine)
    read = path if path.is_file() else bundled
    return RegistryLocation(path, read, bundled, False)


@contextlib.contextmanager
def _locked(path: Path):
    """Exclusive lock on ``<path>.lock`` (a sidecar file: the registry itself is replaced by rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class SpeakerRegistry:
    """Enrolled speakers of one model. ``model``: the model's card (what :meth:`new` and every write store) or,
    for a registry read from a v1 file, its fingerprint alone."""

    def __init__(
        self,
        model: ModelCard | str,
        threshold: float | None = None,
        speakers: dict | None = None,
        model_threshold: float | None = None,
        threshold_source: str = "model",
    ):
        self.card = model if isinstance(model, ModelCard) else None
        self.fingerprint = self.card.fingerprint if self.card is not None else str(model)
        if threshold is None:
            threshold = self.card.threshold if self.card is not None else 0.5
        self.threshold = float(threshold)
        self.model_threshold = float(threshold if model_threshold is None else model_threshold)
        self.threshold_source = threshold_source  # "model" or "enrolled: <how>"
        self.speakers: dict[str, dict] = speakers or {}  # name -> {"embeddings": [[...]], "centroid": [...]}

    # -- persistence ---------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike) -> SpeakerRegistry:
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RegistryError(f"{path}: cannot read speaker registry ({e})") from e
        fmt = d.get("format") if isinstance(d, dict) else None
        if fmt not in (FORMAT, FORMAT_V1):
            found = "no format tag" if fmt is None else f"format {fmt!r}"
            raise RegistryError(
                f"{path}: not a speakerid registry this version can read ({found}; "
                f"expected {FORMAT!r} or {FORMAT_V1!r})"
            )
        try:
            if fmt == FORMAT:
                model = ModelCard.from_dict(d["card"])
                if model.fingerprint != d["model_fingerprint"]:
                    raise ValueError("model_fingerprint differs from the card's")
            else:  # v1: the fingerprint alone; the next write stores the engine's card
                model = d["model_fingerprint"]
            return cls(
                model,
                d["threshold"],
                d["speakers"],
                d.get("model_threshold"),  # v1 registries written before recalibration: the threshold itself
                d.get("threshold_source", "model"),
            )
        except (KeyError, TypeError, ValueError, CardError) as e:
            raise RegistryError(f"{path}: damaged speaker registry ({type(e).__name__}: {e})") from e

    @classmethod
    def new(cls, engine) -> SpeakerRegistry:
        """An empty registry for ``engine``'s model (its card, its calibrated threshold)."""
        return cls(engine.card)

    @classmethod
    def load_or_new(cls, path: str | os.PathLike | None, engine) -> SpeakerRegistry:
        """The registry at ``path`` (checked against ``engine``), else a new empty one for that engine."""
        if path is not None and Path(path).is_file():
            reg = cls.load(path)
            reg.check_model(engine)
            return reg
        return cls.new(engine)

    @classmethod
    def update(
        cls,
        path: str | os.PathLike,
        engine,
        change: Callable[[SpeakerRegistry], object],
        with_bundled: bool = False,
    ) -> tuple[SpeakerRegistry, object]:
        """Apply ``change(registry)`` to the registry file at ``path`` under an exclusive lock: re-read the
        file (a new registry if it does not exist: empty, or the bundled speakers with ``with_bundled``),
        change, recalibrate, write atomically. Returns (the registry as written, what ``change`` returned).
        A RegistryError from ``change`` leaves the file as it was."""
        path = Path(path)
        with _locked(path):
            bundled = bundled_path(engine)
            if path.is_file():
                reg = cls.load(path)
                reg.check_model(engine, path)
            elif with_bundled and bundled is not None:
                reg = cls.load(bundled)
                reg.check_model(engine)
            else:
                reg = cls.new(engine)
            reg.card = engine.card  # a v1 registry is upgraded by this write
            result = change(reg)
            reg.recalibrate()
            reg.save(path)
        return reg, result

    def save(self, path: str | os.PathLike) -> None:
        """Atomic write (temp file + rename). Needs the model's card (a registry read from a v1 file gets it
        from :meth:`update`, or set ``registry.card``)."""
        if self.card is None:
            raise RegistryError(f"{path}: this registry has no model card to save (read from a v1 file)")
        d = {
            "format": FORMAT,
            "card": self.card.to_dict(),
            "model_fingerprint": self.fingerprint,
            "threshold": self.threshold,
            "model_threshold": self.model_threshold,
            "threshold_source": self.threshold_source,
            "speakers": self.speakers,
        }
        with atomic_open(path, "w", encoding="utf-8") as f:
            json.dump(d, f, ensure_ascii=False)

    def check_model(self, engine, path: str | os.PathLike | None = None) -> None:
        """Refuse a registry made with another model (its embeddings mean nothing to this one)."""
        if engine.fingerprint != self.fingerprint:
            where = f"{path}: " if path is not None else ""
            raise RegistryError(
                f"{where}registry was made with model {self.fingerprint}, but the loaded model "
                f"({getattr(engine, 'source', '?')}) is {engine.fingerprint}; enroll the speakers again with "
                "this model or use its own registry"
            )

    def recalibrate(self) -> None:
        """Threshold from the enrolled clips when there are enough (see the module docstring), else the
        model's. Genuine: each clip vs the centroid of its speaker's other clips; impostor: vs other centroids."""
        ready = [n for n in self.names if len(self.speakers[n]["embeddings"]) >= CALIBRATE_MIN_CLIPS]
        if len(ready) < CALIBRATE_MIN_SPEAKERS:
            self.threshold, self.threshold_source = self.model_threshold, "model"
            return
        cents = self.centroids()  # (S, D)
        genuine, impostor = [], []
        for i, n in enumerate(self.names):
            emb = np.asarray(self.speakers[n]["embeddings"], dtype=np.float64)  # (N, D)
            others = np.delete(cents, i, axis=0)
            if len(others):
                impostor.extend((emb @ others.T).ravel())
            if len(emb) >= 2:
                loo = emb.sum(0)[None] - emb  # (N, D): sum of the other clips
                loo /= np.linalg.norm(loo, axis=1, keepdims=True) + 1e-12
                genuine.extend((emb * loo).sum(1))
        eer, thr = equal_error_rate(np.array(genuine), np.array(impostor))
        self.threshold = round(float(thr), 6)
        self.threshold_source = (
            f"enrolled: equal-error point of {len(genuine)} genuine / {len(impostor)} impostor scores "
            f"(EER {eer:.1%})"
        )

    # -- editing -------------------------------------------------------------------------------------------
    def add(self, name: str, embeddings: np.ndarray, overwrite: bool = False) -> str:
        """Add (or with ``overwrite`` replace) a speaker from unit embeddings (N, D). Returns the clean name."""
        name = validate_name(name)
        if name in self.speakers and not overwrite:
            raise RegistryError(f"speaker {name!r} is already enrolled (use overwrite to replace)")
        emb = np.asarray(embeddings, dtype=np.float64)
        if emb.ndim != 2 or emb.shape[0] == 0:
            raise RegistryError(f"need at least one embedding for {name!r}")
        c = emb.mean(0)
        c /= np.linalg.norm(c) + 1e-12
        self.speakers[name] = {"embeddings": emb.round(6).tolist(), "centroid": c.round(6).tolist()}
        return name

    def remove(self, *names: str) -> list[str]:
        """Remove all of ``names`` or, if any is not enrolled, none of them (RegistryError naming those)."""
        clean = [validate_name(n) for n in names]
        missing = [n for n in clean if n not in self.speakers]
        if len(missing) == 1 and len(clean) == 1:
            raise RegistryError(f"speaker {missing[0]!r} is not enrolled")
        if missing:
            raise RegistryError(
                f"not enrolled: {', '.join(repr(n) for n in missing)}"
                + ("; nothing was removed" if len(clean) > len(missing) else "")
            )
        for n in clean:
            self.speakers.pop(n, None)
        return clean

    # -- scoring -------------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return sorted(self.speakers)

    def centroids(self) -> np.ndarray:
        """(S, D) unit centroids in ``names`` order."""
        return np.array([self.speakers[n]["centroid"] for n in self.names], dtype=np.float32)

    def scores(self, embedding: np.ndarray) -> list[tuple[str, float]]:
        """Cosine scores of one unit embedding (D,) against every speaker, best first."""
        if not self.speakers:
            return []
        s = self.centroids() @ np.asarray(embedding, dtype=np.float32)
        order = np.argsort(-s, kind="stable")
        return [(self.names[i], float(s[i])) for i in order]

    def summary(self) -> list[dict]:
        return [{"name": n, "clips": len(self.speakers[n]["embeddings"])} for n in self.names]

    def __len__(self) -> int:
        return len(self.speakers)
