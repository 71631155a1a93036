"""Augmentation on real speech (the FSDD clips shipped with the package): each transform does what it says,
measurably (duration, pitch, spectral centroid, SNR, level), and the chained augmenter is shape-stable and
reproducible."""

from pathlib import Path

import numpy as np
import pytest

from speakerid import augment
from speakerid.audio import SAMPLE_RATE, load_audio

SAMPLES = Path(__file__).resolve().parents[1] / "speakerid" / "pretrained" / "default" / "samples"


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """A real recording (george saying "zero"), 16 kHz float32 (T,)."""
    return load_audio(SAMPLES / "george_1.wav")


def f0(wave: np.ndarray) -> float:
    """Median pitch (Hz) of the voiced frames (pYIN)."""
    import librosa

    f, voiced, _ = librosa.pyin(wave, fmin=60, fmax=500, sr=SAMPLE_RATE, frame_length=1024)
    assert voiced.sum() >= 5, "too few voiced frames to measure pitch"
    return float(np.nanmedian(f[voiced]))


def envelope_warp(x: np.ndarray, y: np.ndarray) -> float:
    """The frequency scaling beta that best maps x's long-term average spectrum onto y's (200-3400 Hz)."""
    from scipy.signal import stft

    def ltas(w):
        _, _, spec = stft(w, fs=SAMPLE_RATE, nperseg=512, noverlap=384)
        return 10 * np.log10((np.abs(spec) ** 2).mean(1) + 1e-12)

    f = np.linspace(0, SAMPLE_RATE / 2, 257)
    a, b, band = ltas(x), ltas(y), (f >= 200) & (f <= 3400)
    grid = np.linspace(0.7, 1.3, 121)
    err = [np.mean((b[band] - np.interp(f[band] / g, f, a)) ** 2) for g in grid]
    return float(grid[int(np.argmin(err))])


def test_speed_changes_duration_and_pitch_by_the_factor(clip):
    fast = augment.speed(clip, 1.2)
    assert len(fast) == pytest.approx(len(clip) / 1.2, abs=2)
    assert f0(fast) / f0(clip) == pytest.approx(1.2, rel=0.04)
    assert augment.speed(clip, 1.0) is clip


@pytest.mark.parametrize("semitones", [-3.0, 4.0])
def test_pitch_shift_keeps_duration_and_moves_pitch_by_semitones(clip, semitones):
    out = augment.pitch_shift(clip, semitones)
    assert out.shape == clip.shape and out.dtype == np.float32
    assert f0(out) / f0(clip) == pytest.approx(2 ** (semitones / 12), rel=0.04)
    assert envelope_warp(clip, out) == pytest.approx(2 ** (semitones / 12), abs=0.03)  # formants move too


def test_augmenter_moves_pitch_and_formants_independently(clip):
    """Voice (semitones +4, alpha 1.0): pitch up a major third, formants where they were."""
    aug = augment.Augmenter(augment.AugmentConfig(prob=0.0))  # only the voice's fixed change
    out = aug(clip, np.random.default_rng(0), len(clip) + 2000, voice=(4.0, 1.0))
    out = out[out != 0.0] if (out == 0.0).any() else out
    assert f0(out) / f0(clip) == pytest.approx(2 ** (4 / 12), rel=0.04)
    assert envelope_warp(clip, out) == pytest.approx(1.0, abs=0.04)


@pytest.mark.parametrize("alpha", [0.85, 1.15])
def test_vtlp_moves_the_formants_and_keeps_pitch_and_duration(clip, alpha):
    out = augment.vtlp(clip, alpha)
    assert out.shape == clip.shape and out.dtype == np.float32
    assert f0(out) / f0(clip) == pytest.approx(1.0, rel=0.03)
    assert envelope_warp(clip, out) == pytest.approx(alpha, abs=0.03)


@pytest.mark.parametrize("color", [0.0, 1.0, 2.0])
def test_noise_lands_at_the_requested_snr(clip, color):
    rng = np.random.default_rng(0)
    out = augment.add_noise(clip, 10.0, rng, color=color)
    noise = out.astype(np.float64) - clip
    snr = 10 * np.log10(np.mean(clip.astype(np.float64) ** 2) / np.mean(noise**2))
    assert snr == pytest.approx(10.0, abs=0.01)


def test_reverb_keeps_length_and_level_but_smears_in_time(clip):
    out = augment.reverb(clip, 0.6, np.random.default_rng(0))
    assert out.shape == clip.shape
    rms = lambda x: np.sqrt(np.mean(x.astype(np.float64) ** 2))  # noqa: E731
    assert rms(out) == pytest.approx(rms(clip), rel=1e-4)
    corr = float(np.corrcoef(out, clip)[0, 1])
    assert 0.5 < corr < 0.95, corr
    wetter = augment.reverb(clip, 0.6, np.random.default_rng(0), drr_db=-3.0)
    assert float(np.corrcoef(wetter, clip)[0, 1]) < corr


def test_gain_scales_and_clips(clip):
    assert np.allclose(augment.gain(clip, 6.0206), np.clip(clip * 2, -1, 1), atol=1e-6)
    assert np.abs(augment.gain(clip, 60.0)).max() <= 1.0


def test_tilt_moves_the_spectral_balance_and_keeps_level_and_pitch(clip):
    """a = +-0.5 (at most 20 log10(3) = 9.5 dB from DC to Nyquist): the 4-8 kHz band up / down against 0-1 kHz by
    several dB, same RMS and f0."""
    rms = lambda x: np.sqrt(np.mean(x.astype(np.float64) ** 2))  # noqa: E731

    def balance(x):  # dB of 4-8 kHz over 0-1 kHz energy
        s = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
        f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
        return 10 * np.log10(s[f >= 4000].sum() / s[f < 1000].sum())

    bright, dull = augment.tilt(clip, 0.5), augment.tilt(clip, -0.5)
    assert bright.shape == clip.shape and bright.dtype == np.float32
    assert rms(bright) == pytest.approx(rms(clip), rel=1e-4) and rms(dull) == pytest.approx(
        rms(clip), rel=1e-4
    )
    assert 3.0 < balance(bright) - balance(clip) < 14.0 and 3.0 < balance(clip) - balance(dull) < 14.0
    assert f0(bright) == pytest.approx(f0(clip), rel=0.03)
    assert augment.tilt(clip, 0.0) is clip
    with pytest.raises(ValueError, match=r"tilt coefficient must be in \(-1, 1\)"):
        augment.tilt(clip, 1.0)
    assert augment.AugmentConfig(tilt=0.3).enabled


def test_voice_params_voice_zero_is_the_speaker_and_the_rest_differ():
    vs = [augment.voice_params(v, 16, 5.0, 0.2) for v in range(16)]
    assert vs[0] == (0.0, 1.0)
    assert len(set(vs)) == 16
    assert all(abs(s) <= 5.0 and 0.8 <= a <= 1.2 for s, a in vs)
    with pytest.raises(ValueError, match="voice 16 out of range"):
        augment.voice_params(16, 16, 5.0, 0.2)


def test_augmenter_crops_to_length_reproducibly(clip):
    cfg = augment.AugmentConfig(
        speed=0.1, pitch=2.0, vtlp=0.1, noise_snr_db=5.0, reverb=0.5, gain_db=6.0, prob=1.0
    )
    aug = augment.Augmenter(cfg)
    a = aug(clip, np.random.default_rng(1), 4000, voice=(3.0, 1.1))
    b = aug(clip, np.random.default_rng(1), 4000, voice=(3.0, 1.1))
    c = aug(clip, np.random.default_rng(2), 4000, voice=(3.0, 1.1))
    assert a.shape == (4000,) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.allclose(a, c)
    # Longer than the clip: padded, never an error.
    assert aug(clip, np.random.default_rng(0), 3 * len(clip)).shape == (3 * len(clip),)
    assert not augment.AugmentConfig().enabled and cfg.enabled


def test_bad_factors_raise(clip):
    with pytest.raises(ValueError, match="speed factor must be > 0"):
        augment.speed(clip, 0.0)
    with pytest.raises(ValueError, match="vtlp alpha must be > 0"):
        augment.vtlp(clip, -1.0)
