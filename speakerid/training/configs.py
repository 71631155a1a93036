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
    # The same, streaming (issue 16): causal front-end, state carried.
    dict(
        name="fsdd-mfcc-dilated-gru-causal",
        model="mfcc-dilated-gru-causal",
        noise_snr_db=20.0,
        epochs=30,
        **_FSDD_ADAM,
    ),
    # The shipped default: fsdd-mfcc-dilated-gru fine-tuned to stream.
    dict(
        name="fsdd-mfcc-dilated-gru-causal-ft",
        model="mfcc-dilated-gru-causal",
        init_from="runs/fsdd-mfcc-dilated-gru/best.pt",
        noise_snr_db=20.0,
        epochs=12,
        **{**_FSDD_ADAM, "lr": 1e-3},
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

# Sentence-level speech (3-5 s clips, e.g. RAVDESS; see benchmarks/real_speech.py), sized for 2 CPU cores (budgets
# and results: README "Real speech"): data prepared with ``python -m data_prep ... --trim`` (the silence around each
# sentence cut), Adam with a cosine schedule and a budget in optimizer steps (``max_steps``; ``epochs`` only bounds
# it). An epoch holds every sentence's audio once (about 3.5 one-second crops per sentence of ravdess-dev), so
# validation every 6 epochs is about every 120 steps.
_SENTENCE = dict(
    batch_size=32, epochs=100_000, optimizer="adam", lr=3e-3, lr_schedule="cosine", eval_every=6, threads=1
)
_TABLE += [
    # MFCC front-end (30 coefficients, BatchNorm) + dilated GRU over frames, statistics pooling, AAM-softmax on a
    # cosine head, channel augmentation (room, coloured noise, gain: the voice is kept), 1 s crops. Each change
    # was measured on ravdess-dev (README, "Real speech"; docs/training.md, "MFCC normalisation").
    dict(
        _SENTENCE,
        name="sentence-mfcc-dilated-gru",
        model="mfcc-gru-5x20",
        hidden=[64] * 4,
        dilations=[1, 2, 4, 8],
        n_mfcc=30,
        readout="stats",
        head="cosine",
        loss="aam",
        crop=16000,
        noise_snr_db=20.0,
        aug_reverb=0.3,
        aug_noise_snr_db=10.0,
        aug_gain_db=6.0,
        max_steps=1600,
    ),
    dict(
        _SENTENCE,
        name="sentence-mfcc-gru-1x128",
        model="mfcc-gru-1x128",
        crop=16000,
        noise_snr_db=20.0,
        max_steps=800,
    ),
    # raw waveform, generalized DilatedRNN l0 = 3 (8 subsequences), 1-by-8 fusion of their means
    dict(
        _SENTENCE,
        name="sentence-raw-dilated-gru-l0-3",
        model="dilated-gru-l0-3",
        hidden=[32] * 5,
        dilations=[8, 16, 32, 64, 128],
        readout="mean-fusion",
        crop=4096,  # 0.26 s: half the paper's, so twice the updates per CPU second
        batch_size=16,
        max_steps=3500,  # ≈ 60 min of one idle core (15.8 crops per CPU second measured)
        eval_every=2,  # ≈ 290 steps: 180 training sentences give ≈ 2300 crops (146 steps) per epoch
    ),
    # Table 3 raw fused GRU 1x256 (fold 8, 1-by-8 fusion of the last step), same crops
    dict(
        _SENTENCE,
        name="sentence-fused-gru-8",
        model="fused-gru-8",
        crop=4096,
        batch_size=16,
        max_steps=1000,
        eval_every=2,
    ),
]

# The open-set embedding recipe: a DilatedRNN over MFCC frames trained as a speaker *embedding* (AAM-softmax on
# a cosine head) with voice-changing and channel augmentation and crops of 0.5-2 s, for any prepared
# multi-speaker corpus (VCTK, your own folders): `python train.py --config embed --data DIR`. Its checkpoint
# enrolls strangers (`speakerid enroll --model runs/embed/best.pt`); benchmarks/enroll.py measures that.
_EMBED = dict(
    model="mfcc-gru-5x20",
    hidden=[64] * 4,  # sized for the 2-core CPU benchmark (benchmarks/enroll.py); wider helps with more data
    dilations=[1, 2, 4, 8],
    readout="stats",  # mean || std over time: cv k=3 61.9 % (mean, LayerNorm MFCC) -> 71.0 % (README)
    n_mfcc=30,
    head="cosine",
    loss="aam",
    crop=16000,
    crop_min=8000,
    aug_speed=0.1,
    aug_pitch=2.0,
    aug_vtlp=0.1,
    aug_noise_snr_db=5.0,
    aug_reverb=0.3,
    aug_gain_db=6.0,
    batch_size=32,
    optimizer="adam",
    lr=2e-3,
    weight_decay=1e-4,
    lr_schedule="cosine",
    epochs=18,
    eval_every=6,
    threads=1,
)
_TABLE += [
    dict(_EMBED, name="embed"),
    # The same recipe on FSDD (licence-clean; a shipped-model candidate): its 4 kHz band (8 kHz recordings) sets
    # f_max, and each of the 6 speakers becomes 16 pseudo-voices.
    dict(
        _EMBED,
        name="fsdd-embed",
        data="data/fsdd",
        crop=8000,
        crop_min=4000,
        epochs=4,
        eval_every=2,
        f_max=4000.0,
        voices=16,
        voice_pitch=5.0,
        voice_vtlp=0.18,
    ),
]

CONFIGS: dict[str, TrainConfig] = {d["name"]: TrainConfig(**d) for d in _TABLE}
# The shipped default model (speakerid/pretrained/default) was trained with these settings (one crop per clip
# and epoch: it predates audio-scaled epochs; FSDD clips are mostly shorter than two crops, so few differ).
# It streams (causal front-end): fsdd-mfcc-dilated-gru fine-tuned, so train that config first (its best.pt is
# the init_from). Overriding --model etc. from it for experiments also wants --init_from "" (start from scratch).
CONFIGS["fsdd-default"] = dataclasses.replace(CONFIGS["fsdd-mfcc-dilated-gru-causal-ft"], name="fsdd-default")


def get_config(name: str) -> TrainConfig:
    """A copy of the named config; an unknown name raises ValueError listing the available ones."""
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; available: {', '.join(CONFIGS)}")
    return dataclasses.replace(CONFIGS[name])
