"""MFCC front-end against librosa's reference implementation with the same settings."""

import numpy as np
import pytest
import torch

from speakerid.features import MFCC, dct_matrix, mel_filterbank

librosa = pytest.importorskip("librosa", reason="librosa (test extra) provides the reference MFCC")


def _speechlike(n, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    x = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate([140, 280, 420, 900, 2400], 1))
    return (0.3 * x * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(n)).astype(np.float32)


def test_filterbank_and_dct_match_librosa():
    fb = mel_filterbank(257, 40, 16000).numpy()
    ref = librosa.filters.mel(sr=16000, n_fft=512, n_mels=40, htk=True, norm=None).T
    np.testing.assert_allclose(fb, ref, rtol=1e-4, atol=1e-6)
    import scipy.fft

    eye = np.eye(40)
    np.testing.assert_allclose(
        dct_matrix(13, 40).numpy(), scipy.fft.dct(eye, type=2, norm="ortho")[:, :13] * 1.0, atol=1e-12
    )


@pytest.mark.parametrize("n", [8192, 5000, 16000])
def test_mfcc_matches_librosa(n):
    x = _speechlike(n)
    ours = MFCC()(torch.from_numpy(x)[None])[0].double().numpy()  # (F, 13)
    import scipy.fft

    mel = librosa.feature.melspectrogram(
        y=x.astype(np.float64),
        sr=16000,
        n_fft=512,
        hop_length=80,
        win_length=400,
        n_mels=40,
        htk=True,
        norm=None,
        center=True,
        pad_mode="reflect",
        power=2.0,
        fmin=0.0,
        fmax=8000.0,
    )
    db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0)  # the 80 dB floor, per clip
    ref = scipy.fft.dct(db, axis=0, type=2, norm="ortho")[:13].T  # (F, 13)
    assert ours.shape == ref.shape == (1 + n // 80, 13)
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=2e-3 * np.abs(ref).max())


def test_floor_is_per_clip_not_per_batch():
    loud = torch.from_numpy(_speechlike(8192))
    quiet = loud * 1e-4
    m = MFCC()
    alone = m(quiet[None])
    batched = m(torch.stack([loud, quiet]))[1:]
    torch.testing.assert_close(alone, batched, rtol=1e-4, atol=1e-3)


def test_table3_frame_count_and_shape_errors():
    m = MFCC()
    assert m.n_frames(8192) == 103  # ~100 frames for a 0.5 s crop, as in the paper
    with pytest.raises(ValueError, match=r"expected waveform \(B, T\), got shape \(8192,\)"):
        m(torch.zeros(8192))
