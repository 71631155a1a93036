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
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .audio import SAMPLE_RATE

__all__ = ["MFCC", "mel_filterbank", "dct_matrix"]


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
