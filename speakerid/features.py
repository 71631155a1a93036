"""Audio front-ends as nn.Modules that run on CPU/GPU and export to ONNX inside the model graph.

Dim legend: B batch, T samples, F frames, K frequency bins, M mel bands, N cepstral coefficients.

``MFCC`` reproduces ``torchaudio.transforms.MFCC`` (HTK mel scale, no filter norm, power spectrum,
``AmplitudeToDB(top_db=80)``, orthonormal DCT-II) with two deliberate differences:

* the STFT is a strided ``conv1d`` with a fixed windowed-DFT basis instead of ``torch.stft``, so the
  TorchScript ONNX exporter (``dynamo=False``, needed to keep GRUs as ONNX GRU nodes) can export it;
* the 80 dB floor is applied per clip. torchaudio applies it over the whole (B, T) batch, so a quiet clip's
  features would change with its batch neighbours.

torchaudio itself is not a dependency (its CUDA-only wheels do not import beside a CPU torch); the tests check
this module against librosa's MFCC with the same settings.

Causal (streaming) front-ends: :class:`CausalMFCC` and :class:`CausalRaw` use no per-clip statistics, so audio
can be fed in chunks with a small state carried between calls and the features equal those of the whole stream:

* frames end at the current sample (left context only, no reflect padding of the future);
* the recording level is tracked by :class:`RunningLevel`, a bias-corrected exponential average of the power
  (time constant ``LEVEL_TAU_S``) that the features are divided by (volume invariance without the whole clip);
* instead of the per-clip 80 dB floor below the loudest frame, a fixed power floor ``FLOOR_DB`` (40 dB) below the
  running level is added to every mel band (and ``LEVEL_EPS`` to the level): clean recordings then look like
  the noisy ones training adds noise to (20-50 dB SNR), and digital silence is exactly -40 dB.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .audio import SAMPLE_RATE

__all__ = [
    "MFCC",
    "CausalMFCC",
    "CausalRaw",
    "RunningLevel",
    "mel_filterbank",
    "dct_matrix",
    "LEVEL_TAU_S",
    "LEVEL_EPS",
    "RAW_BLOCK",
    "FLOOR_DB",
]

LEVEL_TAU_S = 2.0  # time constant of the running level (seconds)
LEVEL_EPS = 1e-8  # fixed absolute power floor (-80 dBFS): digital silence never divides by ~0
FLOOR_DB = 40.0  # CausalMFCC: the power floor sits this far below the running level
RAW_BLOCK = 160  # CausalRaw tracks the level per block of this many samples (10 ms at 16 kHz)


def _hz_to_mel(f: float) -> float:
    return 2595.0 * math.log10(1.0 + f / 700.0)


def mel_filterbank(
    n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
):
    """Triangular HTK-scale filters, (K, M) float64, as ``torchaudio.functional.melscale_fbanks`` (norm=None)."""
    f_max = sample_rate / 2 if f_max is None else f_max
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)
    m_pts = torch.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2, dtype=torch.float64)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]  # (M+1,)
    slopes = f_pts[None, :] - all_freqs[:, None]  # (K, M+2)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0)


def dct_matrix(n_mfcc: int, n_mels: int):
    """Orthonormal DCT-II as a (M, N) float64 matrix, as ``torchaudio.functional.create_dct(norm="ortho")``."""
    n = torch.arange(n_mels, dtype=torch.float64)
    k = torch.arange(n_mfcc, dtype=torch.float64)[:, None]
    dct = torch.cos(math.pi / n_mels * (n + 0.5) * k)  # (N, M)
    dct[0] *= 1.0 / math.sqrt(2.0)
    dct *= math.sqrt(2.0 / n_mels)
    return dct.T.contiguous()


class MFCC(nn.Module):
    """Waveform (B, T) float32 at ``sample_rate`` -> MFCC (B, F, n_mfcc) with F = 1 + T // hop.

    Defaults follow the paper's Table 3 MFCC baseline: 13 coefficients, 25 ms window, 5 ms shift (at 16 kHz:
    400 and 80 samples; 8192 samples -> 103 frames), 512-point FFT, 40 mel bands.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        n_mfcc: int = 13,
        win_ms: float = 25.0,
        hop_ms: float = 5.0,
        n_fft: int = 512,
        n_mels: int = 40,
        top_db: float = 80.0,
        f_max: float | None = None,
    ):
        super().__init__()
        self.sample_rate = sample_rate
        self.n_mfcc = n_mfcc
        self.win_length = round(sample_rate * win_ms / 1000)
        self.hop_length = round(sample_rate * hop_ms / 1000)
        self.n_fft = n_fft
        self.top_db = top_db
        if self.win_length > n_fft:
            raise ValueError(f"window {self.win_length} samples is longer than n_fft={n_fft}")
        n_freqs = n_fft // 2 + 1
        # Periodic Hann window of win_length, centred in n_fft (as torch.stft / librosa do).
        window = torch.hann_window(self.win_length, periodic=True, dtype=torch.float64)
        left = (n_fft - self.win_length) // 2
        window = F.pad(window, (left, n_fft - self.win_length - left))
        t = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(n_freqs, dtype=torch.float64)[:, None]
        angle = 2 * math.pi * k * t / n_fft  # (K, n_fft)
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # (2K, n_fft)
        self.register_buffer("basis", basis[:, None, :].float(), persistent=False)  # (2K, 1, n_fft)
        self.register_buffer(
            "mel", mel_filterbank(n_freqs, n_mels, sample_rate, f_max=f_max).float(), persistent=False
        )
        self.register_buffer("dct", dct_matrix(n_mfcc, n_mels).float(), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, F, n_mfcc)."""
        if wave.dim() != 2:
            raise ValueError(f"expected waveform (B, T), got shape {tuple(wave.shape)}")
        pad = self.n_fft // 2
        x = F.pad(wave[:, None, :], (pad, pad), mode="reflect")  # (B, 1, T + n_fft)
        spec = F.conv1d(x, self.basis, stride=self.hop_length)  # (B, 2K, F): real and imaginary parts
        re, im = spec.chunk(2, dim=1)
        power = re * re + im * im  # (B, K, F)
        mel = torch.matmul(power.transpose(1, 2), self.mel)  # (B, F, M)
        db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        floor = db.amax(dim=(1, 2), keepdim=True) - self.top_db  # per clip, not per batch
        db = torch.maximum(db, floor)
        return torch.matmul(db, self.dct)  # (B, F, N)

    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.hop_length

    def extra_repr(self) -> str:
        return f"n_mfcc={self.n_mfcc}, win={self.win_length}, hop={self.hop_length}, n_fft={self.n_fft}"


class RunningLevel(nn.Module):
    """Causal level tracker: bias-corrected exponential average of per-step powers.

    level[t] = num[t] / den[t] with num[t] = a num[t-1] + p[t], den[t] = a den[t-1] + 1, a = exp(-step_s / tau_s):
    the mean power so far, forgetting with time constant ``tau_s``. Both recurrences are non-negative, so they
    run as one 2-unit ReLU RNN with fixed weights (W_ih = I, W_hh = a I): exact, any length, one ATen/cuDNN call,
    and one ONNX ``RNN`` node with a dynamic time axis.

    Shape: powers (B, S) -> level (B, S); state (B, 2) = (num, den) carried between calls.
    """

    def __init__(self, step_s: float, tau_s: float = LEVEL_TAU_S):
        super().__init__()
        self.decay = math.exp(-step_s / tau_s)
        self.register_buffer("w_ih", torch.eye(2), persistent=False)
        self.register_buffer("w_hh", torch.eye(2) * self.decay, persistent=False)
        self.register_buffer("bias", torch.zeros(2), persistent=False)

    def initial_state(self, batch: int, device=None) -> torch.Tensor:
        return torch.zeros(batch, 2, device=device)

    def forward(
        self, p: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) powers, optional (B, 2) state -> ((B, S) levels, (B, 2) state)."""
        if state is None:
            state = self.initial_state(p.shape[0], p.device)
        x = torch.stack([p, torch.ones_like(p)], dim=2).transpose(0, 1)  # (S, B, 2): (p_t, 1)
        params = [self.w_ih, self.w_hh, self.bias, self.bias]
        out, h = torch.rnn_relu(x, state[None].contiguous(), params, True, 1, 0.0, False, False, False)
        level = out[..., 0] / out[..., 1]  # (S, B)
        return level.transpose(0, 1), h[0]


class CausalMFCC(nn.Module):
    """Streaming MFCC: waveform chunk (B, T) with T a multiple of ``hop`` (any T when ``state`` is None: the
    trailing T % hop samples are dropped) -> (B, T // hop, n_mfcc), new state.

    Frame f ends at sample (f + 1) * hop (window centred in the last ``n_fft`` samples), so the features of a
    stream are the same however it is chunked. Log-mel energies are taken relative to the running level of the
    frames' mean mel power (:class:`RunningLevel`) with a power floor ``top_db`` below it, then the DCT as in
    :class:`MFCC`. State: ``[tail (B, n_fft - hop) samples, level (B, 2)]``.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, n_mfcc: int = 13, top_db: float = FLOOR_DB, **kw):
        super().__init__()
        self.base = MFCC(sample_rate, n_mfcc=n_mfcc, **kw)
        self.hop = self.base.hop_length
        self.n_fft = self.base.n_fft
        self.top_db = top_db
        self.floor = 10 ** (-top_db / 10)
        self.level = RunningLevel(self.hop / sample_rate)

    def initial_state(self, batch: int, device=None) -> list[torch.Tensor]:
        return [
            torch.zeros(batch, self.n_fft - self.hop, device=device),
            self.level.initial_state(batch, device),
        ]

    def forward(self, wave: torch.Tensor, state: list | None = None) -> tuple[torch.Tensor, list]:
        """(B, T) [+ state] -> ((B, F, n_mfcc), state) with F = T // hop."""
        if wave.dim() != 2:
            raise ValueError(f"expected waveform (B, T), got shape {tuple(wave.shape)}")
        B, T = wave.shape
        if state is None:
            state = self.initial_state(B, wave.device)
            T -= T % self.hop
        elif T % self.hop:
            raise ValueError(f"streaming chunks must be a multiple of {self.hop} samples, got {T}")
        tail, level = state
        x = torch.cat([tail, wave[:, :T]], dim=1)  # (B, n_fft - hop + T)
        spec = F.conv1d(x[:, None], self.base.basis, stride=self.hop)  # (B, 2K, F)
        re, im = spec.chunk(2, dim=1)
        mel = torch.matmul((re * re + im * im).transpose(1, 2), self.base.mel)  # (B, F, M)
        lvl, level = self.level(mel.mean(dim=2), level)  # (B, F) running mean mel power
        ref = (lvl + LEVEL_EPS)[..., None]  # (B, F, 1)
        # A fixed floor top_db below the running level, added in the power domain: clean recordings look like
        # recordings with noise at that SNR (what training adds), digital silence is exactly -top_db.
        db = 10.0 * torch.log10(mel + ref * self.floor) - 10.0 * torch.log10(ref)  # (B, F, M), >= -top_db
        return torch.matmul(db, self.base.dct), [x[:, x.shape[1] - tail.shape[1] :], level]


class CausalRaw(nn.Module):
    """Streaming level-normalised waveform: (B, T) -> (B, T, 1), each ``RAW_BLOCK``-sample block divided by the
    running RMS up to and including that block (any T when ``state`` is None: the trailing T % RAW_BLOCK
    samples are dropped; streaming chunks must be a multiple of RAW_BLOCK). State: ``[level (B, 2)]``."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, block: int = RAW_BLOCK):
        super().__init__()
        self.block = block
        self.level = RunningLevel(block / sample_rate)

    def initial_state(self, batch: int, device=None) -> list[torch.Tensor]:
        return [self.level.initial_state(batch, device)]

    def forward(self, wave: torch.Tensor, state: list | None = None) -> tuple[torch.Tensor, list]:
        """(B, T) [+ state] -> ((B, T - T % block, 1), state)."""
        if wave.dim() != 2:
            raise ValueError(f"expected waveform (B, T), got shape {tuple(wave.shape)}")
        B, T = wave.shape
        if state is None:
            state = self.initial_state(B, wave.device)
            T -= T % self.block
        elif T % self.block:
            raise ValueError(f"streaming chunks must be a multiple of {self.block} samples, got {T}")
        blocks = wave[:, :T].reshape(B, T // self.block, self.block)  # (B, T/b, b)
        lvl, level = self.level(blocks.pow(2).mean(dim=2), state[0])  # (B, T/b)
        x = blocks / torch.sqrt(lvl + LEVEL_EPS)[..., None]
        return x.reshape(B, T, 1), [level]
