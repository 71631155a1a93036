"""speakerid.audio: real files through real decoders, and a specific error for each bad input."""

import numpy as np
import pytest
import soundfile as sf

from speakerid.audio import (
    CROP_SAMPLES,
    SAMPLE_RATE,
    AudioError,
    fixed_crops,
    load_audio,
    pad_or_crop,
    random_crop,
    trim_silence,
)


def tone(sr, seconds=0.5, f=220.0, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.5 * np.sin(2 * np.pi * f * t)
    return np.stack([x] * channels, 1) if channels > 1 else x


@pytest.mark.parametrize(
    "sr,subtype,fmt,ext",
    [
        (8000, "PCM_16", "WAV", "wav"),
        (48000, "PCM_24", "FLAC", "flac"),
        (96000, "FLOAT", "WAV", "wav"),
        (22050, "PCM_U8", "WAV", "wav"),
        (44100, "VORBIS", "OGG", "ogg"),
        (16000, "PCM_32", "WAV", "wav"),
    ],
)
def test_formats_rates_and_depths_resample_to_16k(tmp_path, sr, subtype, fmt, ext):
    p = tmp_path / f"clip.{ext}"
    sf.write(p, tone(sr), sr, subtype=subtype, format=fmt)
    wave = load_audio(p)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - SAMPLE_RATE // 2) <= 2
    # The 220 Hz tone survives resampling: the spectral peak is at 220 Hz.
    spec = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spec) * SAMPLE_RATE / len(wave) - 220) < 4


def test_stereo_is_downmixed(tmp_path):
    p = tmp_path / "stereo.wav"
    x = tone(16000, channels=2)
    x[:, 1] *= 0.0
    sf.write(p, x, 16000)
    np.testing.assert_allclose(load_audio(p), (x[:, 0] / 2).astype(np.float32), atol=1e-4)


def test_bytes_and_path_give_the_same_samples(tmp_path):
    p = tmp_path / "a.flac"
    sf.write(p, tone(44100), 44100)
    np.testing.assert_array_equal(load_audio(p), load_audio(p.read_bytes()))


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(4000)), "cannot decode audio"),
        (lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt "), "cannot decode audio"),
        (
            lambda p: sf.write(p, np.full(1600, np.nan, dtype=np.float32), 16000, subtype="FLOAT"),
            "contains 1600 NaN/Inf sample values",
        ),
        (lambda p: sf.write(p, np.zeros(16000), 16000), "silent: peak level -inf dBFS"),
        (lambda p: sf.write(p, tone(16000, 0.005), 16000), "too short: 5.0 ms"),
        (lambda p: sf.write(p, np.zeros((0, 1)), 16000), "contains no audio samples"),
    ],
)
def test_bad_input_names_file_and_problem(tmp_path, make, message):
    p = tmp_path / "bad ünïcode.wav"
    make(p)
    with pytest.raises(AudioError) as e:
        load_audio(p)
    assert str(e.value).startswith(str(p) + ": ")
    assert message in str(e.value)


def test_missing_and_too_long(tmp_path):
    with pytest.raises(AudioError, match="nope.wav: file not found"):
        load_audio(tmp_path / "nope.wav")
    p = tmp_path / "long.wav"
    sf.write(p, tone(8000, 3.0), 8000)
    with pytest.raises(AudioError, match=r"too long: 3.0 s \(limit 2 s\)"):
        load_audio(p, max_seconds=2)


def test_crops():
    x = np.arange(20000, dtype=np.float32)
    crops, starts = fixed_crops(x, CROP_SAMPLES)
    assert crops.shape == (3, CROP_SAMPLES) and list(starts) == [0, 8192, 20000 - 8192]
    assert crops[-1, -1] == 19999  # end-aligned: nothing left out
    short = np.ones(100, dtype=np.float32)
    c, s = fixed_crops(short, 256)
    assert c.shape == (1, 256) and c.sum() == 100
    assert pad_or_crop(x, 10).tolist() == list(range(9995, 10005))
    rng = np.random.default_rng(0)
    assert random_crop(short, 256, rng).sum() == 100
    many, _ = fixed_crops(np.zeros(10 * 8192, dtype=np.float32), max_crops=4)
    assert many.shape[0] == 4


def test_trim_silence_keeps_the_speech():
    x = np.concatenate([np.zeros(8000), tone(16000, 0.5), np.zeros(8000)]).astype(np.float32)
    y = trim_silence(x)
    assert 8000 <= len(y) <= 8000 + 800
