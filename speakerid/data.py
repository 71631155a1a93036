"""Reading prepared datasets (written by ``python -m data_prep``) and the torch datasets over them.

A prepared dataset is a folder::

    manifest.csv   one row per utterance: utt_id, speaker, sentence_id, source, shard, offset, length,
                   duration, split (train | valid | test), padded (1 if shorter than one crop)
    labels.json    {"speaker": class index}, indices 0..K-1 in sorted speaker order
    prep.json      settings (sample_rate, trim, dtype, seed, split rule), versions, counts, skipped files + why
    shards/NNNNN.npy   1-D int16 (or float16) arrays at ``sample_rate``; an utterance is
                   ``shard[offset : offset + length]``

Dim legend: T samples, N crops.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import CROP_SAMPLES, fixed_crops, pad_or_crop, random_crop

__all__ = ["Utterance", "PreparedDataset", "RandomCropDataset", "FixedCropDataset", "MANIFEST_FIELDS"]

MANIFEST_FIELDS = [
    "utt_id",
    "speaker",
    "sentence_id",
    "source",
    "shard",
    "offset",
    "length",
    "duration",
    "split",
    "padded",
]


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    speaker: str
    sentence_id: str
    source: str
    shard: str
    offset: int
    length: int
    duration: float
    split: str
    padded: bool


class PreparedDataset:
    """Read-only view of a prepared dataset folder; shards are memory-mapped, so opening is cheap."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        manifest = self.root / "manifest.csv"
        if not manifest.is_file():
            raise FileNotFoundError(
                f"{self.root}: not a prepared dataset (no manifest.csv); create one with `python -m data_prep`"
            )
        with open(self.root / "labels.json", encoding="utf-8") as f:
            self.labels: dict[str, int] = json.load(f)
        prep = self.root / "prep.json"
        self.prep: dict = json.loads(prep.read_text(encoding="utf-8")) if prep.is_file() else {}
        self.sample_rate = int(self.prep.get("sample_rate", 16000))
        with open(manifest, newline="", encoding="utf-8") as f:
            self.utterances = [
                Utterance(
                    utt_id=r["utt_id"],
                    speaker=r["speaker"],
                    sentence_id=r.get("sentence_id", ""),
                    source=r.get("source", ""),
                    shard=r["shard"],
                    offset=int(r["offset"]),
                    length=int(r["length"]),
                    duration=float(r.get("duration") or 0.0),
                    split=r["split"],
                    padded=r.get("padded", "0") in ("1", "True", "true"),
                )
                for r in csv.DictReader(f)
            ]
        self._shards: dict[str, np.ndarray] = {}

    @property
    def speakers(self) -> list[str]:
        """Class names in index order."""
        return [s for s, _ in sorted(self.labels.items(), key=lambda kv: kv[1])]

    def split(self, name: str) -> list[int]:
        """Indices of the utterances in split ``name`` (train / valid / test)."""
        return [i for i, u in enumerate(self.utterances) if u.split == name]

    def _shard(self, name: str) -> np.ndarray:
        arr = self._shards.get(name)
        if arr is None:
            arr = np.load(self.root / "shards" / name, mmap_mode="r")
            self._shards[name] = arr
        return arr

    def waveform(self, i: int) -> np.ndarray:
        """Utterance i as float32 (T,) in [-1, 1]."""
        u = self.utterances[i]
        x = self._shard(u.shard)[u.offset : u.offset + u.length]
        if x.dtype == np.int16:
            return x.astype(np.float32) / 32768.0
        return x.astype(np.float32)

    def label(self, i: int) -> int:
        return self.labels[self.utterances[i].speaker]

    def __len__(self) -> int:
        return len(self.utterances)

    def __getstate__(self):  # DataLoader workers re-open the memory maps themselves
        state = self.__dict__.copy()
        state["_shards"] = {}
        return state


class RandomCropDataset:
    """Training view: item k -> (random crop (crop,) float32, label). A new crop every epoch.

    The crop position depends only on (seed, epoch, k), so a run is reproducible and a resumed run sees the
    same crops as an uninterrupted one, whatever the number of DataLoader workers.
    """

    def __init__(
        self,
        data: PreparedDataset,
        indices: list[int],
        crop: int = CROP_SAMPLES,
        seed: int = 0,
        noise_snr_db: float = 0.0,
        augment=None,
        voices: int = 1,
        voice_range: tuple[float, float] = (4.0, 0.15),
    ):
        self.data, self.indices, self.crop, self.seed = data, list(indices), crop, seed
        # speakerid.augment.Augmenter (or None); with voices > 1 item k is labelled speaker * voices + voice.
        self.augment, self.voices, self.voice_range = augment, max(1, voices), voice_range
        self.noise_snr_db = noise_snr_db  # > 0: add white noise at an SNR drawn from [this, this + 30] dB
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = self.indices[k]
        rng = np.random.default_rng((self.seed, self.epoch, k))
        label = self.data.label(i)
        if self.augment is not None:
            from .augment import voice_params

            voice = None
            if self.voices > 1:
                v = int(rng.integers(self.voices))
                voice = voice_params(v, self.voices, *self.voice_range)
                label = label * self.voices + v
            x = self.augment(self.data.waveform(i), rng, self.crop, voice)
        else:
            x = random_crop(self.data.waveform(i), self.crop, rng).astype(np.float32, copy=True)
        if self.noise_snr_db > 0:  # robustness to recording noise floors (and int16 vs float decoding)
            rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) + 1e-8
            snr = rng.uniform(self.noise_snr_db, self.noise_snr_db + 30.0)
            x += (rms * 10 ** (-snr / 20) * rng.standard_normal(len(x))).astype(np.float32)
        import torch  # here, so that data_prep (which needs only MANIFEST_FIELDS) starts without torch

        return torch.from_numpy(x), label


class FixedCropDataset:
    """Evaluation view: every utterance cut into fixed, non-overlapping crops (the last one end-aligned).

    Item n -> (crop (crop,) float32, label, utterance position in ``indices``). ``max_crops`` bounds the crops
    taken from one utterance.
    """

    def __init__(
        self,
        data: PreparedDataset,
        indices: list[int],
        crop: int = CROP_SAMPLES,
        max_crops: int | None = None,
    ):
        self.data, self.indices, self.crop = data, list(indices), crop
        self.items: list[tuple[int, int]] = []  # (position in indices, crop start)
        for pos, i in enumerate(self.indices):
            n = data.utterances[i].length
            _, starts = fixed_crops(np.zeros(n, dtype=np.float32), crop, max_crops=max_crops)
            self.items.extend((pos, int(s)) for s in starts)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, n: int):
        pos, start = self.items[n]
        i = self.indices[pos]
        wave = self.data.waveform(i)
        x = pad_or_crop(wave, self.crop) if len(wave) <= self.crop else wave[start : start + self.crop]
        import torch

        return torch.from_numpy(np.ascontiguousarray(x)), self.data.label(i), pos
