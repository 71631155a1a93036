"""Voice-changing and channel augmentation for training speaker embeddings.

A speaker embedding trained on few voices learns those voices; it generalises when every training step shows it
a slightly different voice and channel. Each transform here is a plain function on a waveform, and
:class:`Augmenter` chains them with random strengths drawn from an :class:`AugmentConfig`:

- ``speed``: resampling (tempo, pitch and formants together, as Kaldi's 0.9/1.0/1.1 speed perturbation);
- ``pitch_shift``: pitch and formants moved by n semitones at the same tempo (librosa's phase vocoder);
- ``vtlp``: vocal-tract-length warping: the spectral envelope (formants) scaled by alpha (Jaitly & Hinton 2013)
  with the pitch kept; :class:`Augmenter` chains the two, so pitch and formants move independently;
- ``add_noise``: coloured noise (white to brown) at a given SNR;
- ``reverb``: convolution with a synthetic room impulse response (exponentially decaying noise, given RT60);
- ``gain``: level change in dB (with clipping, as a recorder would);
- ``tilt``: spectral tilt, a first-order filter 1 - a z^-1 (a > 0 brightens, a < 0 darkens by up to
  20 log10((1 + |a|) / (1 - |a|)) dB from DC to Nyquist), RMS kept: the flatter spectrum of loud, effortful speech
  and the duller one of soft speech, with pitch and formants untouched.

Voices: ``voice_params(v, n_voices, ...)`` gives pseudo-voice v a fixed (semitones, alpha); with
``TrainConfig.voices`` each training speaker becomes ``voices`` classes (speaker, voice), so a corpus of 6
speakers trains a 6 x voices-way metric-learning objective (the classic speed-perturbation-as-new-speaker trick).

Shapes: waveforms are float32 numpy arrays (T,) at ``sample_rate``; ``speed`` changes T, nothing else does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from .audio import SAMPLE_RATE

__all__ = [
    "AugmentConfig",
    "Augmenter",
    "speed",
    "pitch_shift",
    "vtlp",
    "add_noise",
    "reverb",
    "gain",
    "tilt",
    "voice_params",
]


def speed(wave: np.ndarray, factor: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Play ``factor`` times faster: (T,) -> (round(T / factor),); pitch and formants rise by ``factor``."""
    if factor <= 0:
        raise ValueError(f"speed factor must be > 0, got {factor}")
    if factor == 1.0:
        return wave
    # Resampling to sample_rate / factor and playing at sample_rate is exactly a speed change.
    return soxr.resample(wave, sample_rate, sample_rate / factor, quality="HQ").astype(np.float32)


def pitch_shift(wave: np.ndarray, semitones: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Shift pitch by ``semitones`` at the same duration: (T,) -> (T,)."""
    if semitones == 0.0:
        return wave
    import librosa  # imported here: only training needs it

    out = librosa.effects.pitch_shift(wave, sr=sample_rate, n_steps=semitones, res_type="soxr_hq")
    return _fit(out.astype(np.float32), len(wave))


def vtlp(wave: np.ndarray, alpha: float, sample_rate: int = SAMPLE_RATE, f_hi: float = 4800.0) -> np.ndarray:
    """Vocal-tract-length warping: the spectral envelope (formants) moves from f to about alpha * f while the
    harmonics (pitch) stay where they are; (T,) -> (T,).

    Per STFT frame, the log-magnitude is split by cepstral liftering into a smooth envelope (quefrencies below
    2 ms, i.e. above any voice's pitch period) and the excitation; only the envelope's frequency axis is warped,
    with Jaitly & Hinton's piecewise-linear map (f -> alpha f below f_hi min(alpha, 1) / alpha, then a straight
    line to Nyquist). Phases are kept, so the frames overlap-add coherently (iSTFT).
    """
    if alpha <= 0:
        raise ValueError(f"vtlp alpha must be > 0, got {alpha}")
    if alpha == 1.0:
        return wave
    from scipy.signal import istft, stft

    n_fft, hop = 512, 128
    _, _, spec = stft(wave, fs=sample_rate, nperseg=n_fft, noverlap=n_fft - hop)  # (K, F) complex
    n_bins = spec.shape[0]
    log_mag = np.log(np.abs(spec) + 1e-8)  # (K, F)
    cep = np.fft.irfft(log_mag, n=n_fft, axis=0)  # (n_fft, F) real cepstrum
    cut = int(0.002 * sample_rate)  # 2 ms
    cep[cut + 1 : n_fft - cut] = 0.0
    env = np.fft.rfft(cep, n=n_fft, axis=0).real  # (K, F) smooth log envelope
    nyq = sample_rate / 2
    freqs = np.linspace(0, nyq, n_bins)  # (K,)
    edge = f_hi * min(alpha, 1.0) / alpha
    edge_out = alpha * edge
    # Inverse warp: for each output frequency, the input frequency whose envelope lands there.
    src = np.where(
        freqs <= edge_out, freqs / alpha, edge + (freqs - edge_out) * (nyq - edge) / (nyq - edge_out)
    )
    pos = src / nyq * (n_bins - 1)  # fractional input bin per output bin (K,)
    lo = np.clip(np.floor(pos).astype(int), 0, n_bins - 1)
    hi = np.clip(lo + 1, 0, n_bins - 1)
    w = (pos - lo)[:, None]
    env_warped = env[lo] * (1 - w) + env[hi] * w  # (K, F)
    warped = spec * np.exp(env_warped - env)  # excitation (and phase) kept, envelope replaced
    _, out = istft(warped, fs=sample_rate, nperseg=n_fft, noverlap=n_fft - hop)
    return _fit(out.astype(np.float32), len(wave))


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator, color: float = 0.0) -> np.ndarray:
    """Add noise with power spectrum ~ 1/f^color (0 white, 1 pink, 2 brown) at ``snr_db``: (T,) -> (T,)."""
    n = len(wave)
    noise = rng.standard_normal(n)
    if color:
        spec = np.fft.rfft(noise)
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        noise = np.fft.irfft(spec / f ** (color / 2), n)
    p_sig = float(np.mean(wave.astype(np.float64) ** 2)) + 1e-12
    p_noise = float(np.mean(noise**2)) + 1e-20
    return (wave + noise * np.sqrt(p_sig / p_noise * 10 ** (-snr_db / 10))).astype(np.float32)


def reverb(
    wave: np.ndarray,
    rt60: float,
    rng: np.random.Generator,
    sample_rate: int = SAMPLE_RATE,
    drr_db: float = 3.0,
) -> np.ndarray:
    """Convolve with a synthetic room response: a direct path plus an exponentially decaying noise tail (-60 dB
    after ``rt60`` seconds) ``drr_db`` below it in energy; the output keeps the input's length and RMS:
    (T,) -> (T,)."""
    from scipy.signal import fftconvolve

    n = max(2, int(rt60 * sample_rate))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)
    tail[0] = 0.0
    rir = tail * np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))
    rir[0] = 1.0
    return _match_rms(fftconvolve(wave.astype(np.float64), rir)[: len(wave)], wave)


def gain(wave: np.ndarray, db: float) -> np.ndarray:
    """Scale by ``db`` decibels and clip to [-1, 1]: (T,) -> (T,)."""
    return np.clip(wave * np.float32(10 ** (db / 20)), -1.0, 1.0).astype(np.float32)


def tilt(wave: np.ndarray, a: float) -> np.ndarray:
    """Spectral tilt: y[n] = x[n] - a x[n-1] (x[-1] = 0), rescaled to the input's RMS; |a| < 1: (T,) -> (T,)."""
    if not -1.0 < a < 1.0:
        raise ValueError(f"tilt coefficient must be in (-1, 1), got {a}")
    if a == 0.0:
        return wave
    x = wave.astype(np.float64)
    out = x.copy()
    out[1:] -= a * x[:-1]
    return _match_rms(out, wave)


def voice_params(v: int, n_voices: int, max_semitones: float, max_warp: float) -> tuple[float, float]:
    """Pseudo-voice v of n_voices -> (semitones, vtlp alpha), fixed per voice and spread over a grid.

    Voice 0 is the speaker's own voice (0, 1.0). The others walk a low-discrepancy (golden-ratio) sequence over
    [-max_semitones, max_semitones] x [1 - max_warp, 1 + max_warp], so neighbouring voice ids differ."""
    if not 0 <= v < n_voices:
        raise ValueError(f"voice {v} out of range 0..{n_voices - 1}")
    if v == 0:
        return 0.0, 1.0
    a = (v * 0.6180339887) % 1.0
    b = (v * 0.7548776662) % 1.0
    return (2 * a - 1) * max_semitones, 1.0 + (2 * b - 1) * max_warp


def _match_rms(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``out`` (T,) float64 scaled to the RMS of ``ref`` (T,), as float32."""
    rms_in = np.sqrt(np.mean(ref.astype(np.float64) ** 2))
    rms_out = np.sqrt(np.mean(out**2)) + 1e-12
    return (out * (rms_in / rms_out)).astype(np.float32)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad the end to exactly n samples (vocoders round lengths)."""
    if len(x) >= n:
        return x[:n]
    return np.pad(x, (0, n - len(x)))


@dataclass(frozen=True)
class AugmentConfig:
    """Random strengths; each transform is skipped when its range is 0 (the default: no augmentation)."""

    speed: float = 0.0  # speed factor drawn from [1 - speed, 1 + speed]
    pitch: float = 0.0  # semitones drawn from [-pitch, pitch]
    vtlp: float = 0.0  # alpha drawn from [1 - vtlp, 1 + vtlp]
    noise_snr_db: float = 0.0  # > 0: noise at an SNR drawn from [this, this + 30] dB, colour in [0, 2]
    reverb: float = 0.0  # probability of a room response: RT60 in [0.2, 0.8] s, direct/reverb [-3, 10] dB
    gain_db: float = 0.0  # level change drawn from [-gain_db, gain_db]
    tilt: float = 0.0  # spectral tilt coefficient drawn from [-tilt, tilt] (< 1)
    prob: float = 0.8  # probability that a voice change (speed / pitch / vtlp) is applied to a crop

    @property
    def enabled(self) -> bool:
        return any(
            (self.speed, self.pitch, self.vtlp, self.noise_snr_db, self.reverb, self.gain_db, self.tilt)
        )


class Augmenter:
    """``augmenter(wave, rng, crop, voice=(semitones, alpha) | None) -> (crop,)`` float32.

    Order: (voice change on a segment a little longer than the crop) -> random crop -> tilt -> reverb -> noise
    -> gain.
    A pseudo-voice's fixed shift and warp are added to the random ones."""

    def __init__(self, config: AugmentConfig, sample_rate: int = SAMPLE_RATE):
        self.config, self.sample_rate = config, sample_rate

    def __call__(
        self,
        wave: np.ndarray,
        rng: np.random.Generator,
        crop: int,
        voice: tuple[float, float] | None = None,
    ) -> np.ndarray:
        from .audio import random_crop

        c, sr = self.config, self.sample_rate
        semis, alpha = voice or (0.0, 1.0)
        factor = 1.0
        if rng.random() < c.prob:
            factor = rng.uniform(1 - c.speed, 1 + c.speed) if c.speed else 1.0
            semis += rng.uniform(-c.pitch, c.pitch) if c.pitch else 0.0
            alpha *= rng.uniform(1 - c.vtlp, 1 + c.vtlp) if c.vtlp else 1.0
        # Transform a segment just long enough for the crop after the speed change (cheaper than the clip).
        seg = random_crop(wave, int(np.ceil(crop * factor)) + 1, rng)
        seg = speed(seg, factor, sr)
        # pitch_shift moves pitch and formants by 2^(semis/12); the warp then puts the formants at alpha.
        seg = pitch_shift(seg, semis, sr)
        seg = vtlp(seg, alpha / 2 ** (semis / 12), sr)
        x = random_crop(seg, crop, rng).astype(np.float32, copy=True)
        if c.tilt:
            x = tilt(x, rng.uniform(-c.tilt, c.tilt))
        if c.reverb and rng.random() < c.reverb:
            x = reverb(x, rng.uniform(0.2, 0.8), rng, sr, drr_db=rng.uniform(-3.0, 10.0))
        if c.noise_snr_db > 0:
            x = add_noise(x, rng.uniform(c.noise_snr_db, c.noise_snr_db + 30), rng, rng.uniform(0, 2))
        if c.gain_db:
            x = gain(x, rng.uniform(-c.gain_db, c.gain_db))
        return x
