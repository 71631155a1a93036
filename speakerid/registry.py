"""Enrolled speakers: name -> embeddings + centroid, a threshold for "unknown", and the model's fingerprint.

The registry is a small JSON file. Names are data (JSON keys), never file paths. A registry remembers the
fingerprint of the model whose embeddings it holds and refuses to be scored with another model.
"""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import numpy as np

from .atomic import atomic_open
from .audio import AudioError

__all__ = ["RegistryError", "SpeakerRegistry", "validate_name", "UNKNOWN"]

FORMAT = "speakerid-registry-v1"
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


class SpeakerRegistry:
    def __init__(self, fingerprint: str, threshold: float, speakers: dict | None = None):
        self.fingerprint = fingerprint
        self.threshold = float(threshold)
        self.speakers: dict[str, dict] = speakers or {}  # name -> {"embeddings": [[...]], "centroid": [...]}

    # -- persistence ---------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike) -> SpeakerRegistry:
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RegistryError(f"{path}: cannot read speaker registry ({e})") from e
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise RegistryError(f"{path}: not a speakerid registry (format tag {FORMAT!r} missing)")
        return cls(d["model_fingerprint"], d["threshold"], d.get("speakers", {}))

    @classmethod
    def load_or_new(cls, path: str | os.PathLike | None, engine) -> SpeakerRegistry:
        """The registry at ``path`` (checked against ``engine``), else a new empty one for that engine."""
        if path is not None and Path(path).is_file():
            reg = cls.load(path)
            reg.check_model(engine)
            return reg
        return cls(engine.fingerprint, engine.threshold)

    @classmethod
    def load_for_edit(cls, path: str | os.PathLike | None, engine) -> SpeakerRegistry:
        """The registry to add to or remove from: the file at ``path`` if it exists, else a copy of the registry
        bundled with the (shipped) model so its speakers stay known, else a new empty one."""
        if path is not None and Path(path).is_file():
            return cls.load_or_new(path, engine)
        bundled = engine.bundled_registry_path()
        return cls.load_or_new(bundled, engine)

    def save(self, path: str | os.PathLike) -> None:
        """Atomic write (temp file + rename)."""
        d = {
            "format": FORMAT,
            "model_fingerprint": self.fingerprint,
            "threshold": self.threshold,
            "speakers": self.speakers,
        }
        with atomic_open(path, "w", encoding="utf-8") as f:
            json.dump(d, f, ensure_ascii=False)

    def check_model(self, engine) -> None:
        if engine.fingerprint != self.fingerprint:
            raise RegistryError(
                f"registry was made with model {self.fingerprint}, but the loaded model is {engine.fingerprint}; "
                "enroll the speakers again with this model"
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

    def enroll(self, name: str, clips, engine, overwrite: bool = False) -> dict:
        """Embed each clip (path/bytes/array) with ``engine`` and add the speaker. Bad clips are skipped and
        reported; if none is usable the speaker is not added."""
        from .runtime import clip_embedding

        self.check_model(engine)
        name = validate_name(name)
        if name in self.speakers and not overwrite:
            raise RegistryError(f"speaker {name!r} is already enrolled (use overwrite to replace)")
        embs, errors = [], []
        for clip in clips:
            try:
                embs.append(clip_embedding(engine, clip))
            except AudioError as e:
                errors.append(str(e))
        if not embs:
            raise RegistryError(f"no usable clip to enroll {name!r}: " + "; ".join(errors))
        self.add(name, np.stack(embs), overwrite=overwrite)
        return {"name": name, "clips": len(embs), "errors": errors}

    def remove(self, name: str) -> None:
        name = validate_name(name)
        if name not in self.speakers:
            raise RegistryError(f"speaker {name!r} is not enrolled")
        del self.speakers[name]

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
