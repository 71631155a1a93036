"""The named speaker-ID configs (``train.py --list``): plain data, one entry per experiment.

Table 3 of the paper with its protocol (RMSProp 1e-3 / 0.9, batch 128, 8192-sample crops) and the FSDD speaker
task (6 speakers) with the shipped default model, sized for a 2-core CPU. FSDD clips average 0.44 s, so
4096-sample (0.26 s) crops replace the paper's 8192. Epochs are what 2 CPU cores allow (see README for what was
actually run). Add an entry here (any TrainConfig field) and ``train.py --config NAME`` runs it.
"""

from __future__ import annotations

import dataclasses

from .speaker import TrainConfig

__all__ = ["CONFIGS", "get_config"]

_FSDD = dict(data="data/fsdd", crop=4096, batch_size=32, threads=1)
_FSDD_ADAM = dict(_FSDD, lr_schedule="cosine", optimizer="adam", lr=3e-3)

_TABLE: list[dict] = [
    # Table 3 of the paper, with its protocol.
    dict(name="vctk-dilated-gru-l0-3", model="dilated-gru-l0-3"),
    dict(name="vctk-dilated-gru-l0-5", model="dilated-gru-l0-5"),
    dict(name="vctk-fused-gru-8", model="fused-gru-8"),
    dict(name="vctk-fused-gru-32", model="fused-gru-32"),
    dict(name="vctk-mfcc-gru-5x20", model="mfcc-gru-5x20"),
    dict(name="vctk-mfcc-gru-1x128", model="mfcc-gru-1x128"),
    # FSDD: the paper's optimizer and readout on the 2-core budget.
    dict(name="fsdd-dilated-gru-l0-3", model="dilated-gru-l0-3", epochs=8, **_FSDD),
    dict(name="fsdd-fused-gru-8", model="fused-gru-8", epochs=8, **_FSDD),
    dict(name="fsdd-mfcc-gru-1x128", model="mfcc-gru-1x128", epochs=20, **_FSDD),
    # MFCC front-end + dilated GRU over frames: ~10x cheaper than raw on CPU.
    dict(
        name="fsdd-mfcc-dilated-gru",
        model="mfcc-gru-5x20",
        hidden=[64] * 4,
        dilations=[1, 2, 4, 8],
        readout="mean",
        noise_snr_db=20.0,
        epochs=30,
        **_FSDD_ADAM,
    ),
    # A raw-waveform dilated GRU small enough to train on 2 CPU cores.
    dict(
        name="fsdd-raw-dilated-gru",
        model="dilated-gru-l0-3",
        hidden=[40] * 6,
        dilations=[8, 16, 32, 64, 128, 256],
        readout="mean",
        epochs=16,
        **_FSDD_ADAM,
    ),
]

CONFIGS: dict[str, TrainConfig] = {d["name"]: TrainConfig(**d) for d in _TABLE}
# The shipped default model (speakerid/pretrained/default) was trained with these settings (one crop per clip
# and epoch: it predates audio-scaled epochs; FSDD clips are mostly shorter than two crops, so few differ).
CONFIGS["fsdd-default"] = dataclasses.replace(CONFIGS["fsdd-mfcc-dilated-gru"], name="fsdd-default")


def get_config(name: str) -> TrainConfig:
    """A copy of the named config; an unknown name raises ValueError listing the available ones."""
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; available: {', '.join(CONFIGS)}")
    return dataclasses.replace(CONFIGS[name])
