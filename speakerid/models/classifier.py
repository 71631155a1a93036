"""Sequence classifiers built on DilatedRNN (and the dilated-CNN baseline), with a config that rebuilds them.

Dim legend: B batch, T samples (or steps), F front-end frames, C input features, H hidden, f fusion width
(= starting dilation M^l0), D embedding size (= H of the last layer), K classes.

The generalized DilatedRNN (eq. 4) with starting dilation f = M^l0 is a DilatedRNN whose dilations start at f:
since every dilation is a multiple of f, the f interleaved subsequences x[j::f] never interact, so it *is* f
shared-weight networks (dilations 1..max/f) each on 1/f of the samples, run together in one fold. Its last f
outputs (one per subsequence) are fused by a 1-by-f convolution into the prediction (section 2.2, Table 3).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..audio import SAMPLE_RATE
from ..features import MFCC, CausalMFCC, CausalRaw
from .causal import causal_rnn, initial_buffers
from .dilated_rnn import DilatedRNN, exponential_dilations

COSINE_SCALE = 30.0  # logits of a cosine head: the AAM-softmax scale s, so softmax(logits) is the loss's

__all__ = [
    "ModelConfig",
    "SequenceClassifier",
    "DilatedCNN",
    "build_model",
    "count_parameters",
    "PRESETS",
    "preset",
    "PAPER_PARAMS",
]


READOUTS = ("fusion", "mean", "mean-fusion", "stats")
FEATURE_NORMS = ("batch", "layer")
STATS_EPS = 1e-5  # variance floor of the "stats" readout (a constant output has std sqrt(eps), not NaN grads)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a classifier (stored in checkpoints and ONNX sidecars)."""

    arch: str = "rnn"  # "rnn" (DilatedRNN stack, incl. stacked baselines) or "cnn" (dilated causal CNN)
    cell: str = "gru"  # rnn/lstm/gru (arch="rnn")
    hidden: list[int] = field(default_factory=lambda: [50] * 8)  # one per layer
    dilations: list[int] = field(default_factory=lambda: exponential_dilations(8, 2, l0=3))
    n_classes: int = 109
    frontend: str = "raw"  # "raw": (B, T) waveform; "mfcc": (B, T) waveform -> MFCC; "none": (B, T, C) given
    input_size: int = 1  # C after the front-end (13 for MFCC)
    fusion: int = 0  # f: fuse the last f outputs with a 1-by-f conv; 0 = the first dilation
    normalize: bool = True  # raw/mfcc: scale each clip to zero mean, unit RMS (volume invariance)
    sample_rate: int = SAMPLE_RATE  # of the waveform the front-end expects
    n_mfcc: int = 13
    f_max: float = 0.0  # mfcc: highest mel-band edge in Hz (0 = Nyquist); 4000 ignores what 8 kHz audio lacks
    head: str = "linear"  # "linear" (logits = W h + b) | "cosine" (logits = 30 cos(h, w_k): AAM-softmax)
    # "fusion": the paper's last step (1-by-f fusion of the last f outputs); "mean": time average;
    # "mean-fusion": 1-by-f fusion of the f subsequences' time averages (every step gets a gradient);
    # "stats": time mean and standard deviation concatenated (x-vector statistics pooling, D = 2 H)
    readout: str = "fusion"
    # MFCC normalisation: "batch" (per coefficient, BatchNorm statistics: a fixed affine map at inference, so it
    # streams and exports) or "layer" (per frame across coefficients: the definition before 2026-12, which
    # squashes the spectral envelope under c0; configs saved without this key load as "layer")
    feature_norm: str = "batch"
    kernel_size: int = 2  # arch="cnn"
    dropout: float = 0.0
    # DilatedRNN padding: "layer" (per layer, eq. 1 exactly) or "period" (whole input left-padded to a multiple
    # of the largest dilation: the definition before 2026-12; configs saved without this key load as "period")
    padding: str = "layer"
    name: str = ""
    # Streaming: causal front-end (CausalMFCC / CausalRaw: running level instead of per-clip statistics, so
    # ``normalize`` is not used) and the chunkable forward of models/causal.py (no left padding).
    causal: bool = False

    def __post_init__(self):
        if len(self.hidden) != len(self.dilations):
            raise ValueError(f"hidden has {len(self.hidden)} entries but dilations has {len(self.dilations)}")
        if self.frontend not in ("raw", "mfcc", "none"):
            raise ValueError(f"frontend must be raw, mfcc or none, got {self.frontend!r}")
        if self.arch not in ("rnn", "cnn"):
            raise ValueError(f"arch must be rnn or cnn, got {self.arch!r}")
        if self.head not in ("linear", "cosine"):
            raise ValueError(f"head must be linear or cosine, got {self.head!r}")
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(READOUTS)}, got {self.readout!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.feature_norm not in FEATURE_NORMS:
            raise ValueError(
                f"feature_norm must be one of {', '.join(FEATURE_NORMS)}, got {self.feature_norm!r}"
            )
        if self.causal and (
            self.arch != "rnn"
            or self.cell == "lstm"
            or self.frontend == "none"
            or self.readout in ("mean-fusion", "stats")
        ):
            raise ValueError(
                "causal=True needs arch='rnn' with a gru or rnn cell, a raw or mfcc front-end and readout mean or "
                f"fusion, got arch={self.arch!r}, cell={self.cell!r}, frontend={self.frontend!r}, "
                f"readout={self.readout!r}"
            )

    @property
    def fusion_width(self) -> int:
        return self.fusion or (self.dilations[0] if self.arch == "rnn" else 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {unknown}")
        # saved before these keys existed: trained with "period" padding and per-frame LayerNorm
        return cls(**{"padding": "period", "feature_norm": "layer", **d})


class DilatedCNN(nn.Module):
    """Causal dilated convolutions (WaveNet-style, kernel 2, ReLU) -- the Table 1 baseline.

    (B, T, C) -> (B, T, H_last). Receptive field 1 + (k-1) * sum(dilations).
    """

    def __init__(self, input_size: int, hidden: list[int], dilations: list[int], kernel_size: int = 2):
        super().__init__()
        sizes = [input_size, *hidden]
        self.dilations = list(dilations)
        self.kernel_size = kernel_size
        self.convs = nn.ModuleList(
            nn.Conv1d(sizes[i], sizes[i + 1], kernel_size, dilation=d) for i, d in enumerate(dilations)
        )
        self.output_size = sizes[-1]

    def forward(self, x: torch.Tensor, need_states: bool = False) -> tuple[torch.Tensor, None]:
        """(B, T, C) -> ((B, T, H), None): no carried state (``need_states`` only mirrors ``DilatedRNN``)."""
        x = x.transpose(1, 2)  # (B, T, C) -> (B, C, T)
        for conv, d in zip(self.convs, self.dilations):
            x = torch.relu(conv(F.pad(x, ((self.kernel_size - 1) * d, 0))))  # causal: pad left only
        return x.transpose(1, 2), None  # (B, T, H)


class SequenceClassifier(nn.Module):
    """Front-end -> DilatedRNN (or DilatedCNN) -> 1-by-f fusion of the last f outputs -> linear.

    ``forward(x)`` returns logits (B, K); ``features(x)`` the fused penultimate vector (B, D); ``embed(x)`` it
    L2-normalised (the speaker embedding used for enrollment). x is (B, T) for raw/mfcc front-ends and
    (B, T, C) for ``frontend="none"`` (a (B, T) input is taken as C = 1).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        self.mfcc = None
        if c.frontend == "mfcc":
            self.mfcc = (CausalMFCC if c.causal else MFCC)(
                c.sample_rate, n_mfcc=c.n_mfcc, f_max=c.f_max or None
            )
        self.causal_raw = CausalRaw(c.sample_rate) if c.causal and c.frontend == "raw" else None
        # Keeps MFCC magnitudes (c0 ~ -300) in the GRU's working range (see ModelConfig.feature_norm).
        self.mfcc_norm = None
        if c.frontend == "mfcc":
            self.mfcc_norm = nn.BatchNorm1d(c.n_mfcc) if c.feature_norm == "batch" else nn.LayerNorm(c.n_mfcc)
        if c.arch == "rnn":
            self.body = DilatedRNN(
                c.input_size, c.hidden, c.dilations, cell=c.cell, dropout=c.dropout, padding=c.padding
            )
        else:
            self.body = DilatedCNN(c.input_size, c.hidden, c.dilations, c.kernel_size)
        f = c.fusion_width if c.readout in ("fusion", "mean-fusion") else 1
        # The paper's 1-by-M^l0 convolution: one filter sliding over the (H, f) map of the last f outputs.
        self.fusion = nn.Conv2d(1, 1, kernel_size=(1, f)) if f > 1 else None
        if self.fusion is not None:
            nn.init.constant_(self.fusion.weight, 1.0 / f)  # start as the mean over subsequences
            nn.init.zeros_(self.fusion.bias)
        self.head = nn.Linear(self.embedding_size, c.n_classes, bias=c.head == "linear")

    @property
    def embedding_size(self) -> int:
        return self.body.output_size * (2 if self.config.readout == "stats" else 1)

    def _normalize_mfcc(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, F, N) MFCC -> (B, F, N) normalised (BatchNorm over coefficients, or LayerNorm per frame)."""
        if isinstance(self.mfcc_norm, nn.BatchNorm1d):
            return self.mfcc_norm(feats.transpose(1, 2)).transpose(1, 2)
        return self.mfcc_norm(feats)

    def frontend(self, x: torch.Tensor) -> torch.Tensor:
        """Raw input -> (B, T', C) model input."""
        c = self.config
        if c.causal:
            return self._causal_frontend(x, None)[0]
        if c.frontend in ("raw", "mfcc"):
            if x.dim() != 2:
                raise ValueError(f"expected waveform (B, T), got shape {tuple(x.shape)}")
            if c.normalize:  # zero mean, unit RMS per clip: the answer does not depend on the recording level
                x = x - x.mean(dim=1, keepdim=True)
                x = x / (x.pow(2).mean(dim=1, keepdim=True).sqrt() + 1e-4)
        if c.frontend == "mfcc":
            return self._normalize_mfcc(self.mfcc(x))  # (B, T) -> (B, F, 13)
        if c.frontend == "raw":
            return x[..., None]  # (B, T) -> (B, T, 1)
        return x[..., None] if x.dim() == 2 else x

    # ---- streaming (config.causal) -------------------------------------------------------------------------
    @property
    def stream_period(self) -> int:
        """Streaming chunks must be a multiple of this many samples (one MFCC hop / one level block)."""
        return self.mfcc.hop if self.config.frontend == "mfcc" else self.causal_raw.block

    def stream_state(self, batch: int = 1, device=None) -> list[torch.Tensor]:
        """The zero state of a new stream: front-end states, then one (B, d, H) buffer per layer."""
        fe = self.mfcc if self.config.frontend == "mfcc" else self.causal_raw
        return [*fe.initial_state(batch, device), *initial_buffers(self.body, batch, device)]

    def _causal_frontend(self, x: torch.Tensor, state: list | None) -> tuple[torch.Tensor, list]:
        if x.dim() != 2:
            raise ValueError(f"expected waveform (B, T), got shape {tuple(x.shape)}")
        if self.config.frontend == "mfcc":
            feats, state = self.mfcc(x, state)
            return self._normalize_mfcc(feats), state  # (B, F, 13)
        return self.causal_raw(x, state)  # (B, T, 1)

    def stream(self, x: torch.Tensor, state: list | None = None) -> tuple[torch.Tensor, list]:
        """Causal forward, chunk by chunk: waveform (B, T) and the state returned by the previous call (None =
        a new stream) -> per-step features (B, S, D) and the new state. S = T // stream_period * (steps per
        period); feeding a stream in chunks gives the same per-step features as feeding it whole.

        Per-step feature: the last layer's output (readout "mean") or the 1-by-f fusion of the last f outputs
        (readout "fusion"); ``features`` is their time mean, or the last one, respectively.
        """
        if not self.config.causal:
            raise ValueError("stream() needs a causal model (ModelConfig.causal=True)")
        if state is not None and x.shape[-1] % self.stream_period:
            raise ValueError(
                f"streaming chunks must be a multiple of {self.stream_period} samples, got {x.shape}"
            )
        n_fe = len(self.stream_state(1)) - len(self.body.layers)
        fe_state, bufs = (None, None) if state is None else (state[:n_fe], state[n_fe:])
        z, fe_state = self._causal_frontend(x, fe_state)  # (B, S, C)
        prev_last = None if bufs is None else bufs[-1]
        out, bufs = causal_rnn(self.body, z, bufs)  # (B, S, H)
        if self.fusion is not None:
            f = self.config.fusion_width
            if prev_last is None:
                prev_last = out.new_zeros(out.shape[0], f - 1, out.shape[-1])
            hist = torch.cat([prev_last[:, prev_last.shape[1] - (f - 1) :], out], dim=1)  # (B, f-1+S, H)
            S, w = out.shape[1], self.fusion.weight[0, 0, 0]  # w: (f,) over the last f outputs, oldest first
            out = sum(w[k] * hist[:, k : k + S] for k in range(f)) + self.fusion.bias[0]  # (B, S, H)
        return out, [*fe_state, *bufs]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) or (B, T, C) -> fused penultimate vector (B, D)."""
        if self.config.causal:
            steps, _ = self.stream(x)  # (B, S, D)
            return steps.mean(1) if self.config.readout == "mean" else steps[:, -1]
        out, _ = self.body(self.frontend(x), need_states=False)  # (B, T', H)
        if self.config.readout == "stats":  # (B, T', H) -> (B, 2H)
            var = out.var(1, unbiased=False)
            return torch.cat([out.mean(1), torch.sqrt(var + STATS_EPS)], dim=-1)
        if self.config.readout == "mean" or (self.fusion is None and self.config.readout == "mean-fusion"):
            return out.mean(1)  # (B, T', H) -> (B, H)
        f = self.config.fusion_width
        if self.fusion is None:
            return out[:, -1]
        if self.config.readout == "mean-fusion":
            return self._fuse_subsequence_means(out, f)
        last = out[:, -f:, :].transpose(1, 2)[
            :, None
        ]  # (B, f, H) -> (B, 1, H, f): one output per subsequence
        return self.fusion(last)[:, 0, :, 0]  # (B, 1, H, 1) -> (B, H)

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        """Penultimate (B, D) -> logits (B, K); a cosine head gives COSINE_SCALE * cos(h, w_k)."""
        if self.config.head == "cosine":
            return COSINE_SCALE * F.linear(F.normalize(h, dim=-1), F.normalize(self.head.weight, dim=-1))
        return self.head(h)

    def _fuse_subsequence_means(self, out: torch.Tensor, f: int) -> torch.Tensor:
        """(B, T', H) -> (B, H): the time average of each of the f subsequences (the last f * (T' // f) steps,
        so that column j is always the subsequence ending j - f + 1 steps before the end), fused by the
        1-by-f convolution."""
        B, T, H = out.shape
        if T < f:
            raise ValueError(f"mean-fusion readout needs at least {f} steps, got {T}")
        tail = out[:, T % f :, :].reshape(B, T // f, f, H).mean(1)  # (B, f, H)
        return self.fusion(tail.transpose(1, 2)[:, None])[:, 0, :, 0]  # (B, 1, H, f) -> (B, H)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) -> logits (B, K)."""
        return self.classify(self.features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) -> L2-normalised embedding (B, D)."""
        return F.normalize(self.features(x), dim=-1)

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) -> (logits (B, K), embedding (B, D)) in one pass (used by runtime and export)."""
        h = self.features(x)
        return self.classify(h), F.normalize(h, dim=-1)


def build_model(config: ModelConfig | dict) -> SequenceClassifier:
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    return SequenceClassifier(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _rnn(name, cell, hidden, dilations, frontend="raw", input_size=1, fusion=0, n_classes=109):
    return ModelConfig(
        arch="rnn",
        cell=cell,
        hidden=list(hidden),
        dilations=list(dilations),
        frontend=frontend,
        input_size=input_size,
        fusion=fusion,
        n_classes=n_classes,
        name=name,
    )


# Table 3 of the paper (VCTK speaker ID), plus the stacked / CNN baselines. n_classes is set by the data.
PRESETS: dict[str, ModelConfig] = {
    "dilated-gru-l0-3": _rnn("dilated-gru-l0-3", "gru", [50] * 8, exponential_dilations(8, 2, l0=3)),
    "dilated-gru-l0-5": _rnn("dilated-gru-l0-5", "gru", [50] * 6, exponential_dilations(6, 2, l0=5)),
    "fused-gru-8": _rnn("fused-gru-8", "gru", [256], [8]),
    "fused-gru-32": _rnn("fused-gru-32", "gru", [256], [32]),
    "mfcc-gru-5x20": _rnn("mfcc-gru-5x20", "gru", [20] * 5, [1] * 5, frontend="mfcc", input_size=13),
    "mfcc-gru-1x128": _rnn("mfcc-gru-1x128", "gru", [128], [1], frontend="mfcc", input_size=13),
    "stacked-gru": _rnn("stacked-gru", "gru", [50] * 8, [1] * 8),
    "stacked-lstm": _rnn("stacked-lstm", "lstm", [50] * 8, [1] * 8),
    "stacked-rnn": _rnn("stacked-rnn", "rnn", [50] * 8, [1] * 8),
    # The shipped default's architecture, streaming: causal MFCC front-end, 4 x 64 dilated GRU over frames.
    "mfcc-dilated-gru-causal": ModelConfig(
        hidden=[64] * 4,
        dilations=[1, 2, 4, 8],
        frontend="mfcc",
        input_size=13,
        readout="mean",
        causal=True,
        name="mfcc-dilated-gru-causal",
    ),
    "dilated-cnn": ModelConfig(
        arch="cnn", hidden=[50] * 10, dilations=exponential_dilations(10), name="dilated-cnn"
    ),
}

# The paper's parameter counts (Table 3, 109 classes), for the README's comparison table.
PAPER_PARAMS = {
    "mfcc-gru-5x20": 16_000,
    "mfcc-gru-1x128": 68_000,
    "fused-gru-8": 225_000,
    "fused-gru-32": 225_000,
    "dilated-gru-l0-5": 103_000,
    "dilated-gru-l0-3": 133_000,
}


def preset(name: str, /, **overrides) -> ModelConfig:
    """A copy of a named preset with fields overridden, e.g. ``preset("dilated-gru-l0-3", n_classes=6)``."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; available: {', '.join(sorted(PRESETS))}")
    d = PRESETS[name].to_dict()
    d.update(overrides)
    return ModelConfig.from_dict(d)
