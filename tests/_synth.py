"""Small synthetic "speakers" written straight into the prepared-dataset format (for fast training tests).

Each speaker has its own pitch and spectral tilt; utterances vary pitch slightly and add noise, so a model can
learn to tell them apart in a few CPU seconds. This is not a stand-in for real speech (tests that need real
speech use FSDD from ../shared/data or the clips shipped with the package).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from speakerid.data import MANIFEST_FIELDS

F0 = [110.0, 150.0, 210.0, 290.0, 380.0, 500.0]


def voice(speaker: int, n: int, seed: int, sr: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = F0[speaker] * (1 + 0.03 * rng.standard_normal())
    tilt = 0.5 + 0.12 * speaker
    x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.28)) * tilt**k for k in range(1, 8))
    env = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(2, 5) * t)
    x = x * env + 0.05 * rng.standard_normal(n)
    return (0.25 * x / np.abs(x).max()).astype(np.float32)


def make_prepared(
    root: Path,
    n_speakers: int = 3,
    per_speaker: int = 12,
    seconds: float = 0.6,
    seed: int = 0,
    splits=(("train", 8), ("valid", 2), ("test", 2)),
) -> Path:
    root = Path(root)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    names = [f"spk{i}" for i in range(n_speakers)]
    rows, chunks, offset = [], [], 0
    for s, name in enumerate(names):
        k = 0
        for split, count in splits:
            for _ in range(count):
                n = int(seconds * 16000 * (0.7 + 0.6 * ((k * 7919 + s) % 10) / 10))
                x = voice(s, n, seed * 1000 + s * 100 + k)
                chunks.append((x * 32767).astype(np.int16))
                rows.append(
                    {
                        "utt_id": f"{name}_{k:03d}",
                        "speaker": name,
                        "sentence_id": f"{k:03d}",
                        "source": f"synthetic/{name}/{k}.wav",
                        "shard": "00000.npy",
                        "offset": offset,
                        "length": n,
                        "duration": n / 16000,
                        "split": split,
                        "padded": int(n < 8192),
                    }
                )
                offset += n
                k += 1
    np.save(root / "shards" / "00000.npy", np.concatenate(chunks))
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
        w.writeheader()
        w.writerows(rows)
    (root / "labels.json").write_text(json.dumps({n: i for i, n in enumerate(names)}))
    (root / "prep.json").write_text(json.dumps({"sample_rate": 16000, "dtype": "int16"}))
    return root
