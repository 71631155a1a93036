"""Speech activity detection: keep the frames with speech, drop the rest, before any embedding or vote.

One detector for every inference path (``speakerid identify``, ``enroll``, the app, the ONNX runtime): the
``runtime`` module calls :func:`speech_only` on each decoded waveform, so silence, a noise floor, DC or a tone
never reach the speaker model, and a clip with too little speech is refused with an :class:`AudioError` naming
the file ("no speech found", "only 0.06 s of speech (need at least 0.10 s)").

Detector: **Silero VAD** (``silero-vad`` on PyPI, MIT licence; its small TorchScript model ships inside the
wheel, so nothing is downloaded). It is a neural detector trained on thousands of hours of speech and noise: it
rejects DC, pure tones, white noise and digital silence at any level (an energy detector has to be told what a
tone is), and runs at ≈ 100× realtime on one CPU thread. The package itself is not imported (its ``__init__``
sets ``torch.set_num_threads(1)`` for the whole process); only its model file is loaded.

Procedure (settings in :class:`VadSettings`, stored in the ONNX sidecar so the ONNX runtime applies the same):
the (T,) waveform at 16 kHz is peak-normalised (the detector sees the same clip at any recording level; FSDD is
recorded at ≈ −45 dBFS) and framed into 512-sample (32 ms) frames, with ``context_s`` of digital silence before
and after so the detector's recurrent state has settled before the first real frame (without it, 18 of the 300
FSDD test clips, which start within milliseconds of the word, scored below 0.5). Frames enter speech at
probability ≥ ``threshold`` and leave it below ``neg_threshold`` (hysteresis); pauses shorter than ``min_gap_s``
are bridged; each speech run is widened by ``pad_s``; then the edges of each run quieter than the clip's
loudest 25 ms by more than ``trim_db`` are cut (the detector's decision lags the end of a word by 0.1-0.2 s,
which would otherwise keep that much of any silence or noise that follows). The kept samples are concatenated
in order.

Shapes: waveforms (T,) float32 at ``SAMPLE_RATE``; frame probabilities (F,) float32 with F = ceil(T / 512).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE, AudioError

__all__ = ["VadSettings", "VadError", "SpeechRegions", "speech_probs", "detect", "speech_only", "DEFAULT"]

FRAME = 512  # samples per detector frame at 16 kHz (32 ms): the Silero model's fixed frame
CONTEXT = 64  # samples of the previous frame the model sees with each frame


class VadError(RuntimeError):
    """The detector itself cannot run (package missing or model unreadable); not a problem of one clip."""


@dataclass(frozen=True)
class VadSettings:
    detector: str = "silero-vad"  # "silero-vad" | "none" (no speech detection: every sample is kept)
    threshold: float = 0.5  # frame speech probability that starts speech
    neg_threshold: float = 0.35  # ... below which speech ends (hysteresis, Silero's default)
    min_gap_s: float = 0.1  # shorter pauses inside speech are kept
    pad_s: float = 0.064  # kept on each side of a speech run (word edges, fricatives)
    min_speech_s: float = 0.1  # less speech than this: the clip is refused
    context_s: float = 0.32  # digital silence around the clip while detecting (settles the detector's state)
    trim_db: float = 40.0  # then trim span edges quieter than the clip's loudest 25 ms by more than this
    floor_db: float = 6.0  # ... or within this of the clip's noise floor (its 10th-percentile 25 ms level)
    edge_s: float = 0.05  # but keep up to this much of such quiet audio at each edge of a span

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> VadSettings:
        """Settings from a sidecar/checkpoint dict; ``None`` (a file made before speech detection) = defaults.
        Unknown keys raise ValueError (a newer file than this code)."""
        if d is None:
            return cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown speech-detection settings {unknown}; known: {sorted(known)}")
        return cls(**d)

    def __post_init__(self):
        if self.detector not in ("silero-vad", "none"):
            raise ValueError(f"unknown speech detector {self.detector!r}; use 'silero-vad' or 'none'")
        if not 0.0 < self.neg_threshold <= self.threshold < 1.0:
            raise ValueError(
                f"need 0 < neg_threshold <= threshold < 1, got {self.neg_threshold}, {self.threshold}"
            )


DEFAULT = VadSettings()


def silero_version() -> str:
    try:
        return importlib.metadata.version("silero-vad")
    except importlib.metadata.PackageNotFoundError:
        return ""


def _model_file() -> Path:
    # find_spec does not execute the package (importing silero_vad would set torch's thread count to 1).
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise VadError("speech detection needs the silero-vad package: pip install silero-vad")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.jit"
    if not path.is_file():
        raise VadError(f"silero-vad is installed but its model {path} is missing; reinstall silero-vad")
    return path


def _package_weights() -> dict:
    """The 16 kHz model's weights from the package's TorchScript file (loaded on CPU, never run)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript deprecation notices are not the user's business
        try:
            jit = torch.jit.load(str(_model_file()), map_location="cpu")
        except (RuntimeError, OSError, ValueError) as e:
            raise VadError(f"cannot load the silero-vad model: {e}") from e
    sd = jit._model.state_dict()
    names = {
        "stft_conv.weight": "stft.forward_basis_buffer",
        "final_conv.weight": "decoder.decoder.2.weight",
        "final_conv.bias": "decoder.decoder.2.bias",
    }
    for i in range(4):
        for k in ("weight", "bias"):
            names[f"conv{i + 1}.{k}"] = f"encoder.{i}.reparam_conv.{k}"
    for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        names[f"lstm.{k}_l0"] = f"decoder.rnn.{k}"
    try:
        return {ours: sd[theirs].detach().clone().float() for ours, theirs in names.items()}
    except KeyError as e:
        raise VadError(f"the silero-vad model file does not have the expected layout (no {e})") from e


def _build_model():
    """Silero VAD 16 kHz as a torch module whose per-frame convolutions run as one batch and whose LSTM is one
    ``nn.LSTM`` call over all frames (the package's model takes one frame per Python call). Same weights, same
    numbers (tested against the package's TorchScript model)."""
    import torch
    from torch import nn

    class _SileroVad(nn.Module):
        def __init__(self):
            super().__init__()
            self.stft_conv = nn.Conv1d(1, 258, 256, stride=128, bias=False)
            self.conv1 = nn.Conv1d(129, 128, 3, padding=1)
            self.conv2 = nn.Conv1d(128, 64, 3, stride=2, padding=1)
            self.conv3 = nn.Conv1d(64, 64, 3, stride=2, padding=1)
            self.conv4 = nn.Conv1d(64, 128, 3, padding=1)
            self.lstm = nn.LSTM(128, 128)
            self.final_conv = nn.Conv1d(128, 1, 1)

        def forward(self, frames: torch.Tensor) -> torch.Tensor:
            """(F, 64 + 512) frames, each with the previous frame's last 64 samples -> (F,) probabilities."""
            x = nn.functional.pad(frames[:, None], (0, 64), mode="reflect")  # (F, 1, 640)
            x = self.stft_conv(x)  # (F, 258, 4)
            x = (x[:, :129] ** 2 + x[:, 129:] ** 2).sqrt()  # (F, 129, 4) magnitudes
            x = self.conv1(x).relu()
            x = self.conv2(x).relu()
            x = self.conv3(x).relu()
            x = self.conv4(x).relu()  # (F, 128, 1)
            h, _ = self.lstm(x[:, :, 0][:, None])  # (F, 1, 128): one sequence of F steps
            return self.final_conv(h[:, 0, :, None].relu()).sigmoid()[:, 0, 0]  # (F,)

    m = _SileroVad()
    try:
        m.load_state_dict(_package_weights())
    except RuntimeError as e:
        raise VadError(f"the silero-vad model file does not have the expected layout: {e}") from e
    return m.eval()


_lock = threading.Lock()
_MODEL = None


def _model():
    global _MODEL
    with _lock:
        if _MODEL is None:
            _MODEL = _build_model()
    return _MODEL


def speech_probs(wave: np.ndarray, settings: VadSettings = DEFAULT) -> np.ndarray:
    """(T,) float32 at 16 kHz -> per-frame speech probability (ceil(T / 512),) float32."""
    import torch

    n = wave.shape[0]
    n_frames = -(-n // FRAME)
    peak = float(np.max(np.abs(wave))) if n else 0.0
    x = wave.astype(np.float32) * np.float32(0.5 / peak) if peak > 0 else wave.astype(np.float32)
    ctx = int(round(settings.context_s * SAMPLE_RATE / FRAME)) * FRAME
    padded = np.zeros(CONTEXT + ctx + n_frames * FRAME + ctx, dtype=np.float32)
    padded[CONTEXT + ctx : CONTEXT + ctx + n] = x
    t = torch.from_numpy(padded)
    frames = t.unfold(0, CONTEXT + FRAME, FRAME)  # (F + 2c, 576): 64 samples of context + the frame
    with torch.inference_mode():
        out = _model()(frames).numpy()
    c = ctx // FRAME
    return out[c : c + n_frames]


@dataclass(frozen=True)
class SpeechRegions:
    """Speech found in a (T,) waveform: ``spans`` [(start, end) samples] kept (speech frames widened by the
    padding), ``speech_s`` seconds of frames the detector called speech (what the minimum applies to)."""

    spans: list[tuple[int, int]]
    n_samples: int
    speech_s: float

    @property
    def seconds(self) -> float:
        """Seconds kept (speech + padding)."""
        return sum(e - s for s, e in self.spans) / SAMPLE_RATE

    def index(self) -> np.ndarray:
        """(T_kept,) int64 positions in the original waveform of the kept samples, in order."""
        if not self.spans:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.arange(s, e, dtype=np.int64) for s, e in self.spans])


def detect(wave: np.ndarray, settings: VadSettings = DEFAULT) -> SpeechRegions:
    """Speech spans of a (T,) float32 waveform at 16 kHz (all of it when the detector is "none")."""
    n = wave.shape[0]
    if settings.detector == "none":
        return SpeechRegions([(0, n)] if n else [], n, n / SAMPLE_RATE)
    p = speech_probs(wave, settings)
    runs, on, start = [], False, 0
    for i, v in enumerate(p):
        if not on and v >= settings.threshold:
            on, start = True, i
        elif on and v < settings.neg_threshold:
            runs.append([start, i])
            on = False
    if on:
        runs.append([start, len(p)])
    gap = settings.min_gap_s * SAMPLE_RATE
    pad = int(round(settings.pad_s * SAMPLE_RATE))
    spans: list[list[int]] = []
    for a, b in runs:
        s, e = max(0, a * FRAME - pad), min(n, b * FRAME + pad)
        if spans and s - spans[-1][1] < gap:
            spans[-1][1] = max(spans[-1][1], e)
        else:
            spans.append([s, e])
    speech_s = sum(min(n, b * FRAME) - a * FRAME for a, b in runs) / SAMPLE_RATE
    if settings.trim_db > 0 and spans:
        spans = _trim_quiet_edges(wave, spans, settings.trim_db, settings.floor_db, settings.edge_s)
    return SpeechRegions([(s, e) for s, e in spans if e > s], n, speech_s)


def _trim_quiet_edges(
    wave: np.ndarray, spans: list[list[int]], top_db: float, floor_db: float, edge_s: float
) -> list[list[int]]:
    """Cut each span's leading/trailing 25 ms frames (10 ms hop) whose RMS is more than ``top_db`` below the
    loudest frame of the clip, or less than ``floor_db`` above the clip's noise floor (the 10th percentile of
    its frame levels, used only when it lies at least ``floor_db`` + 15 dB below the loudest frame, i.e. when the
    clip has quiet stretches at all); up to ``edge_s`` of audio at the noise floor (but above ``top_db``) is kept
    at each edge. The detector's decision lags the end of a word by 0.1-0.4 s, so without this a word followed by
    seconds of silence or a noise floor keeps that much of it and the embedding moves. Settings chosen on FSDD
    training recordings 5-9 (not the test split)."""
    win, hop = 400, 160
    if wave.shape[0] < win:
        return spans
    n_frames = 1 + (wave.shape[0] - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n_frames)[:, None]  # (F, 400)
    frames = wave[idx].astype(np.float64)
    frames -= frames.mean(1, keepdims=True)  # DC is not loudness
    db = 10 * np.log10(np.mean(np.square(frames), axis=1) + 1e-20)  # (F,)
    audible = db > db.max() - top_db  # (F,) bool
    quiet = np.zeros_like(audible)
    floor = float(np.percentile(db, 10))
    if floor_db > 0 and floor + floor_db + 15.0 <= db.max():
        quiet = db <= floor + floor_db  # at the noise floor (only when the clip has quiet stretches)
    loud = audible & ~quiet
    edge = int(round(edge_s * SAMPLE_RATE))
    out = []
    for s, e in spans:
        first, last = -(-s // hop), (e - win) // hop  # frames that lie inside the span
        if last < first:  # shorter than one analysis frame: keep as detected
            out.append([s, e])
            continue
        inside = np.flatnonzero(loud[first : last + 1])
        if inside.size == 0:
            continue
        hear = np.flatnonzero(audible[first : last + 1])  # never extend into what is below top_db
        a = max(s, int(first + inside[0]) * hop - edge, int(first + hear[0]) * hop)
        b = min(e, int(first + inside[-1]) * hop + win + edge, int(first + hear[-1]) * hop + win)
        out.append([a, b])
    return out


def speech_only(
    wave: np.ndarray, name: str, settings: VadSettings = DEFAULT
) -> tuple[np.ndarray, SpeechRegions]:
    """(T,) -> (the speech samples (T_kept,) in order, the regions). Raises :class:`AudioError` naming ``name``
    when there is no speech or less than ``settings.min_speech_s`` of it."""
    regions = detect(wave, settings)
    if settings.detector == "none":
        return wave, regions
    if not regions.spans:
        raise AudioError(name, "no speech found")
    if regions.speech_s < settings.min_speech_s:
        shown = math.floor(regions.speech_s * 100) / 100  # rounded down: 0.0999 s is "0.09", never "0.10"
        raise AudioError(name, f"only {shown:.2f} s of speech (need at least {settings.min_speech_s:g} s)")
    if len(regions.spans) == 1 and regions.spans[0] == (0, wave.shape[0]):
        return wave, regions
    return np.ascontiguousarray(wave[regions.index()]), regions
