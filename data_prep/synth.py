"""Small synthetic corpora with the real on-disk layouts, for tests, benchmarks and trying the tool out.

The audio is speech-like, not speech: syllable-length voiced segments (a band-limited glottal wavetable shaped
by speaker-specific formants, with a moving pitch contour) and unvoiced noise bursts, separated by pauses, over
a faint noise floor. Each speaker has its own pitch, formants and brightness, so a model can tell them apart.
Everything is seeded: the same call writes the same files.

- :func:`make_vctk_tree`: VCTK 0.80 (``wav48/``, WAV) or 0.92 (``wav48_silence_trimmed/``, FLAC, mic1 + mic2)
  with transcripts and the real quirks (p315 has no transcripts, p280 no mic2, a trimming log, READMEs).
- :func:`make_folder_tree`: one folder per speaker, mixed WAV / FLAC / OGG / MP3.
- :func:`make_bad_files`: the unusable (and the merely unusual) files a real collection contains.

Writing uses soundfile directly (this module makes test data; it never reads audio).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["voice", "make_vctk_tree", "make_folder_tree", "make_bad_files", "SENTENCES", "sentence_text"]

SENTENCES = {  # the first VCTK prompts are shared by all speakers; later ids are generated below
    1: "Please call Stella.",
    2: "Ask her to bring these things with her from the store.",
    3: "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother Bob.",
    4: "We also need a small plastic snake and a big toy frog for the kids.",
    5: "She can scoop these things into three red bags, and we will go meet her Wednesday at the train station.",
    6: "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow.",
}
_WORDS = (
    "the a of government said would new people year minister time first last report market scottish week "
    "public police policy club game money support council decision later team morning question evidence"
).split()

_VCTK_SPEAKERS = ("p225", "p226", "p227", "p228", "p229", "p230", "p231", "p232", "p233", "p234")


def sentence_text(sentence: int) -> str:
    """The transcript of sentence id ``sentence``: the same for every speaker (as the id-based split assumes)."""
    if sentence in SENTENCES:
        return SENTENCES[sentence]
    rng = np.random.default_rng([7, sentence])
    words = [_WORDS[j] for j in rng.integers(0, len(_WORDS), int(rng.integers(5, 12)))]
    return " ".join(words).capitalize() + "."


def _key(*parts) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode("utf-8"))


def _speaker_params(speaker: str) -> dict:
    rng = np.random.default_rng([11, _key(speaker)])
    return {
        "f0": float(rng.uniform(85, 260)),
        "formants": np.array(
            [rng.uniform(300, 850), rng.uniform(900, 2300), rng.uniform(2300, 3300)], dtype=np.float64
        ),
        "bandwidth": float(rng.uniform(60, 140)),
        "tilt": float(rng.uniform(0.5, 1.5)),  # dB per harmonic
        "breath": float(rng.uniform(0.01, 0.06)),
    }


def _wavetable(
    f0: float, formants: np.ndarray, bw: float, tilt: float, sr: int, size: int = 2048
) -> np.ndarray:
    """One period (size,) of a band-limited harmonic tone with formant peaks (harmonics below min(4.5 kHz, sr/2))."""
    k = np.arange(1, int(min(4500.0, 0.45 * sr) // f0) + 1)
    fk = k * f0
    env = sum(np.exp(-0.5 * ((fk - F) / (bw + 0.06 * F)) ** 2) for F in formants) + 0.02
    amp = env * 10 ** (-tilt * k / 20)
    phase = 2 * np.pi * np.arange(size)[None, :] * k[:, None] / size
    table = (amp[:, None] * np.sin(phase)).sum(0)
    return (table / np.abs(table).max()).astype(np.float32)


def voice(
    speaker: str, seconds: float, seed: int, sr: int = 48000, lead: float = 0.0, tail: float = 0.0
) -> np.ndarray:
    """A speech-like utterance of ``speaker``: float32 (T,), T = round((lead + seconds + tail) * sr), peak <= 0.7.

    ``lead`` / ``tail`` add that many seconds of noise floor only (VCTK 0.80 style untrimmed silence).
    """
    p = _speaker_params(speaker)
    rng = np.random.default_rng([seed, _key(speaker)])
    n_body = max(1, int(round(seconds * sr)))
    f0 = p["f0"] * (1 + 0.03 * rng.standard_normal())
    table = _wavetable(f0, p["formants"], p["bandwidth"], p["tilt"], sr)

    # Syllables: 0.08-0.3 s segments, voiced (75 %), unvoiced (15 %) or pause (10 %), with raised-cosine edges.
    env = np.zeros(n_body, dtype=np.float32)
    unvoiced = np.zeros(n_body, dtype=np.float32)
    pos = 0
    while pos < n_body:
        length = int(rng.uniform(0.08, 0.3) * sr)
        kind = rng.choice(3, p=[0.75, 0.15, 0.10])
        seg = np.sin(np.pi * np.arange(min(length, n_body - pos)) / max(1, length)) ** 2
        if kind == 0:
            env[pos : pos + seg.size] = seg * rng.uniform(0.5, 1.0)
        elif kind == 1:
            unvoiced[pos : pos + seg.size] = seg * rng.uniform(0.1, 0.3)
        pos += length

    t = np.arange(n_body, dtype=np.float64) / sr
    contour = f0 * (
        1
        + 0.08 * np.sin(2 * np.pi * rng.uniform(0.3, 0.9) * t + rng.uniform(0, 6.28))
        - 0.05 * t / max(seconds, 1e-3)
    )
    idx = np.cumsum(contour) * (table.size / sr)  # fractional wavetable position
    i0 = idx.astype(np.int64) % table.size
    frac = (idx - np.floor(idx)).astype(np.float32)
    voiced = table[i0] * (1 - frac) + table[(i0 + 1) % table.size] * frac
    noise = rng.standard_normal(n_body).astype(np.float32)
    hiss = np.empty_like(noise)
    hiss[0] = noise[0]
    hiss[1:] = noise[1:] - 0.9 * noise[:-1]  # brighter noise for fricatives
    body = env * (voiced + p["breath"] * noise) + unvoiced * hiss * 0.5

    n_lead, n_tail = int(round(lead * sr)), int(round(tail * sr))
    x = np.concatenate([np.zeros(n_lead, np.float32), body.astype(np.float32), np.zeros(n_tail, np.float32)])
    x *= rng.uniform(0.3, 0.7) / max(float(np.abs(x).max()), 1e-6)
    x += 0.0007 * rng.standard_normal(x.size).astype(np.float32)  # noise floor (RMS about -63 dBFS)
    return x.astype(np.float32)


def _duration(seconds: float | tuple[float, float], rng: np.random.Generator) -> float:
    if isinstance(seconds, (int, float)):
        return float(seconds)
    lo, hi = seconds
    return float(rng.uniform(lo, hi))


def _speaker_names(speakers: int | Sequence[str]) -> list[str]:
    if not isinstance(speakers, int):
        return list(speakers)
    if speakers <= len(_VCTK_SPEAKERS) - 2:  # keep the two quirky speakers in small trees
        names = list(_VCTK_SPEAKERS[: max(0, speakers - 2)]) + ["p280", "p315"][:speakers]
    else:
        names, n = ["p280", "p315"], 225
        while len(names) < speakers:
            if f"p{n}" not in names:
                names.append(f"p{n}")
            n += 1
    return sorted(names[:speakers])


def make_vctk_tree(
    root: str | os.PathLike,
    version: str = "0.92",
    speakers: int | Sequence[str] = ("p225", "p226", "p280", "p315"),
    utterances: int = 6,
    seconds: float | tuple[float, float] = (0.8, 2.0),
    seed: int = 0,
    sample_rate: int = 48000,
    subtype: str = "PCM_16",
) -> Path:
    """Write a VCTK-layout tree into ``root`` (the corpus folder) and return ``root``.

    ``speakers``: names, or a count (then p280 and p315 are included). Each speaker gets ``utterances`` files;
    speakers at odd positions lack sentence id 002 and have id ``utterances + 1`` instead (the real corpus has
    gaps too). ``seconds``: speech length, a number or a (low, high) range drawn per file; 0.80 files also get
    0.2-0.6 s of leading and trailing silence, 0.92 files 0.01-0.05 s.
    """
    if version not in ("0.80", "0.92"):
        raise ValueError(f"version must be '0.80' or '0.92', got {version!r}")
    root = Path(root)
    wav_dir = root / ("wav48" if version == "0.80" else "wav48_silence_trimmed")
    names = _speaker_names(speakers)
    info = ["ID  AGE  GENDER  ACCENTS  REGION" + ("  COMMENTS" if version == "0.92" else "")]
    log = []
    for j, spk in enumerate(names):
        rng = np.random.default_rng([seed, _key(spk), 1])
        gender = "F" if _speaker_params(spk)["f0"] > 165 else "M"
        comment = {"p280": "  (mic2 files unavailable)", "p315": "  (Text missing)"}.get(spk, "")
        info.append(
            f"{spk[1:] if version == '0.80' else spk}  {int(rng.integers(18, 38))}  {gender}    English    "
            f"Southern  England{comment if version == '0.92' else ''}"
        )
        ids = [i for i in range(1, utterances + 2) if not (j % 2 == 1 and i == 2)][:utterances]
        (wav_dir / spk).mkdir(parents=True, exist_ok=True)
        for sid in ids:
            utt = f"{spk}_{sid:03d}"
            urng = np.random.default_rng([seed, _key(utt)])
            dur = _duration(seconds, urng)
            pad = (0.2, 0.6) if version == "0.80" else (0.01, 0.05)
            lead, tail = urng.uniform(*pad), urng.uniform(*pad)
            x = voice(spk, dur, seed=seed * 100003 + sid, sr=sample_rate, lead=lead, tail=tail)
            if version == "0.80":
                sf.write(wav_dir / spk / f"{utt}.wav", x, sample_rate, subtype=subtype, format="WAV")
            else:
                sf.write(wav_dir / spk / f"{utt}_mic1.flac", x, sample_rate, subtype=subtype, format="FLAC")
                if spk != "p280":
                    # Second microphone: same speech, duller and noisier channel.
                    y = 0.8 * np.convolve(x, np.full(5, 0.2, np.float32), mode="same")
                    y += 0.003 * urng.standard_normal(y.size).astype(np.float32)
                    sf.write(
                        wav_dir / spk / f"{utt}_mic2.flac",
                        np.clip(y, -1, 1),
                        sample_rate,
                        subtype=subtype,
                        format="FLAC",
                    )
                log.append(f"{utt}: trimmed {lead:.3f} s / {tail:.3f} s")
            if spk != "p315":
                (root / "txt" / spk).mkdir(parents=True, exist_ok=True)
                (root / "txt" / spk / f"{utt}.txt").write_text(sentence_text(sid) + "\n", encoding="utf-8")
    (root / "speaker-info.txt").write_text("\n".join(info) + "\n", encoding="utf-8")
    if version == "0.80":
        (root / "README").write_text(
            "CSTR VCTK Corpus (synthetic stand-in, data_prep.synth)\n", encoding="utf-8"
        )
        (root / "COPYING").write_text("Synthetic test data.\n", encoding="utf-8")
    else:
        (root / "README.txt").write_text("CSTR VCTK Corpus 0.92 (synthetic stand-in)\n", encoding="utf-8")
        (root / "license_text").write_text("Synthetic test data.\n", encoding="utf-8")
        (root / "update.txt").write_text("0.92: silence-trimmed FLAC, two microphones\n", encoding="utf-8")
        (wav_dir / "log.txt").write_text("\n".join(log) + "\n", encoding="utf-8")
    return root


def make_folder_tree(
    root: str | os.PathLike,
    speakers: Sequence[str] = ("alice", "bob", "carol"),
    utterances: int = 4,
    seconds: float | tuple[float, float] = (0.6, 1.5),
    formats: Sequence[str] = ("wav", "flac", "ogg", "mp3"),
    sample_rate: int = 44100,
    seed: int = 0,
) -> Path:
    """One folder per speaker (``root/<speaker>/<speaker>_NN.<fmt>``), formats cycling through ``formats``."""
    root = Path(root)
    fmt = {
        "wav": ("WAV", "PCM_16"),
        "flac": ("FLAC", "PCM_16"),
        "ogg": ("OGG", "VORBIS"),
        "mp3": ("MP3", "MPEG_LAYER_III"),
    }
    for spk in speakers:
        (root / spk).mkdir(parents=True, exist_ok=True)
        for i in range(utterances):
            ext = formats[i % len(formats)]
            rng = np.random.default_rng([seed, _key(spk, i)])
            x = voice(spk, _duration(seconds, rng), seed=seed * 1009 + i, sr=sample_rate)
            sf.write(
                root / spk / f"{spk}_{i:02d}.{ext}", x, sample_rate, format=fmt[ext][0], subtype=fmt[ext][1]
            )
    return root


def make_bad_files(folder: str | os.PathLike, seed: int = 0) -> dict[str, str | None]:
    """Write unusual and unusable files into ``folder``; returns {file name: expected skip reason or None}.

    ``None`` means the file is unusual but valid and must be prepared (stereo, 8/24-bit, 8 kHz, 96 kHz, float,
    a WAV whose data is cut short: libsndfile reads the frames that are there). A string is a fragment of the
    reason :mod:`speakerid.audio` gives when it rejects the file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spk = folder.name or "bad"
    good = voice(spk, 1.0, seed, sr=48000)
    expected: dict[str, str | None] = {}

    def write(name, data, sr, subtype, fmt="WAV", reason=None):
        sf.write(folder / name, data, sr, subtype=subtype, format=fmt)
        expected[name] = reason

    write("stereo.wav", np.stack([good, 0.5 * good], 1), 48000, "PCM_16")
    write("pcm8.wav", good, 48000, "PCM_U8")
    write("pcm24.flac", good, 48000, "PCM_24", fmt="FLAC")
    write("pcm24.wav", good, 48000, "PCM_24")
    write("rate8k.wav", voice(spk, 1.0, seed, sr=8000), 8000, "PCM_16")
    write("rate96k.flac", voice(spk, 1.0, seed, sr=96000), 96000, "PCM_24", fmt="FLAC")
    write("float32.wav", good, 48000, "FLOAT")
    nan = good.copy()
    nan[100:110] = np.nan
    write("nan_float.wav", nan, 48000, "FLOAT", reason="NaN/Inf")
    write("silent.wav", np.zeros(48000, np.float32), 48000, "PCM_16", reason="silent")
    write("too_short.wav", good[:240], 48000, "PCM_16", reason="too short")  # 5 ms

    (folder / "empty.wav").write_bytes(b"")
    expected["empty.wav"] = "empty file (0 bytes)"
    full = folder / "stereo.wav"
    (folder / "truncated_header.wav").write_bytes(full.read_bytes()[:30])
    expected["truncated_header.wav"] = "cannot decode audio"
    data = full.read_bytes()
    (folder / "truncated_data.wav").write_bytes(data[: len(data) // 2])
    expected["truncated_data.wav"] = None
    (folder / "random_bytes.wav").write_bytes(np.random.default_rng(seed).bytes(4096))
    expected["random_bytes.wav"] = "cannot decode audio"
    (folder / "text.flac").write_text("this is not audio\n" * 20, encoding="utf-8")
    expected["text.flac"] = "cannot decode audio"
    return expected
