"""Audio I/O: the only module that decodes, downmixes, resamples, validates and crops audio.

Everything that turns a file (or an in-memory array) into model input goes through here -- data_prep,
training, ``speakerid identify``, the Gradio app and the ONNX parity tests -- so a clip gives the same
samples everywhere. Decoding uses ``soundfile`` (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3) and resampling
``soxr`` (band-limited, "HQ" quality). torchaudio is deliberately not used: from 2.9 on its ``load`` needs
TorchCodec/FFmpeg.

Shapes: a waveform is a float32 numpy array of shape (T,) in [-1, 1] at ``SAMPLE_RATE`` Hz; crops are (N, T_crop).
"""

from __future__ import annotations

import glob
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000  # Hz; every model in this project sees 16 kHz mono
CROP_SAMPLES = 8192  # 0.512 s: the paper's 0.5 s training segment (Table 3)
MIN_SAMPLES = 160  # 10 ms: anything shorter is rejected as "too short" rather than padded from nothing
SILENCE_DBFS = -60.0  # peak level below which a clip counts as silent

__all__ = [
    "SAMPLE_RATE",
    "CROP_SAMPLES",
    "AudioError",
    "AudioInfo",
    "load_audio",
    "decode",
    "resample",
    "to_mono",
    "validate",
    "pad_or_crop",
    "fixed_crops",
    "random_crop",
    "peak_dbfs",
    "trim_silence",
    "AUDIO_EXTENSIONS",
    "find_audio",
    "discover",
    "display_name",
]


class AudioError(ValueError):
    """A clip that cannot be used, with the file and the reason: ``str(e)`` is ``"<source>: <reason>"``."""

    def __init__(self, source: str, reason: str):
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


@dataclass(frozen=True)
class AudioInfo:
    """What the decoder found, before any conversion."""

    sample_rate: int
    channels: int
    frames: int
    format: str  # e.g. "WAV", "FLAC"
    subtype: str  # e.g. "PCM_16", "FLOAT"

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _name(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, "name", "<in-memory audio>")


def decode(source, max_seconds: float | None = None) -> tuple[np.ndarray, int, AudioInfo]:
    """Decode a file path, bytes or file object to float32 samples without changing rate or channels.

    Returns ``(samples (T, C) float32, sample_rate, info)``. Raises :class:`AudioError` naming the source for
    missing, empty, undecodable, too long or non-finite audio. ``max_seconds`` refuses files longer than that
    *before* decoding them, so a 10-hour upload never reaches memory.
    """
    name = _name(source)
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    if isinstance(source, (str, os.PathLike)):
        if not os.path.exists(source):
            raise AudioError(name, "file not found")
        if os.path.isdir(source):
            raise AudioError(name, "is a directory, not an audio file")
        if os.path.getsize(source) == 0:
            raise AudioError(name, "empty file (0 bytes)")
    try:
        with sf.SoundFile(source) as f:
            info = AudioInfo(f.samplerate, f.channels, f.frames, f.format, f.subtype)
            if max_seconds is not None and info.frames > max_seconds * info.sample_rate:
                raise AudioError(name, f"too long: {info.duration:.1f} s (limit {max_seconds:g} s)")
            data = f.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        bad = _header_problem(source)  # libsndfile says "SF_INFO struct incomplete" for a 0 Hz header
        if bad:
            raise AudioError(name, f"invalid header: {bad}") from e
        raise AudioError(name, f"cannot decode audio ({_clean_sf_error(e)})") from e
    if info.sample_rate <= 0:
        raise AudioError(name, f"invalid sample rate {info.sample_rate}")
    if data.shape[0] == 0:
        raise AudioError(name, "contains no audio samples (0 frames)")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise AudioError(name, f"contains {bad} NaN/Inf sample values")
    return data, info.sample_rate, info


def _header_problem(source) -> str | None:
    """Why a WAV (RIFF/RIFX/RF64) or FLAC header is invalid ("sample rate 0", "0 channels"), else None."""
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                head = f.read(1 << 16)
        elif hasattr(source, "seek") and hasattr(source, "read"):
            pos = source.tell()
            source.seek(0)
            head = source.read(1 << 16)
            source.seek(pos)
        else:
            return None
    except (OSError, ValueError):
        return None
    rate = channels = None
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        order = "big" if head[:4] == b"RIFX" else "little"
        i = 12
        while i + 16 <= len(head):  # walk the chunks up to "fmt "
            size = int.from_bytes(head[i + 4 : i + 8], order)
            if head[i : i + 4] == b"fmt ":  # then: format tag, channels, sample rate
                channels = int.from_bytes(head[i + 10 : i + 12], order)
                rate = int.from_bytes(head[i + 12 : i + 16], order)
                break
            i += 8 + size + (size & 1)
    elif head[:4] == b"fLaC" and len(head) >= 26 and head[4] & 0x7F == 0:  # STREAMINFO comes first
        info = head[8:26]
        rate = (info[10] << 12) | (info[11] << 4) | (info[12] >> 4)  # 20 bits
        channels = ((info[12] >> 1) & 0x07) + 1
    if rate == 0:
        return "sample rate 0"
    if channels == 0:
        return "0 channels"
    return None


def _clean_sf_error(e: Exception) -> str:
    msg = str(e).strip()
    # libsndfile's messages embed the path; keep just the reason.
    if ": " in msg and msg.startswith("Error opening"):
        msg = msg.split(": ", 1)[1]
    return msg or type(e).__name__


def to_mono(samples: np.ndarray) -> np.ndarray:
    """(T, C) or (T,) -> (T,) by averaging channels."""
    if samples.ndim == 1:
        return samples
    if samples.shape[1] == 1:
        return samples[:, 0]
    return samples.mean(axis=1, dtype=np.float32)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling of a (T,) float32 waveform with soxr (HQ)."""
    if orig_sr == target_sr:
        return np.ascontiguousarray(wave, dtype=np.float32)
    out = soxr.resample(np.ascontiguousarray(wave, dtype=np.float32), orig_sr, target_sr, quality="HQ")
    return np.asarray(out, dtype=np.float32)


def peak_dbfs(wave: np.ndarray) -> float:
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    return 20.0 * np.log10(peak) if peak > 0 else -np.inf


def validate(
    wave: np.ndarray, name: str, min_samples: int = MIN_SAMPLES, silence_dbfs: float | None = SILENCE_DBFS
) -> np.ndarray:
    """Check a (T,) waveform at SAMPLE_RATE: long enough, finite and not silent. Returns it unchanged."""
    if wave.shape[0] < min_samples:
        ms = 1000.0 * wave.shape[0] / SAMPLE_RATE
        raise AudioError(
            name, f"too short: {ms:.1f} ms (need at least {1000.0 * min_samples / SAMPLE_RATE:g} ms)"
        )
    if silence_dbfs is not None:
        level = peak_dbfs(wave)
        if level < silence_dbfs:
            raise AudioError(
                name, f"silent: peak level {level:.1f} dBFS is below {silence_dbfs:g} dBFS (no speech found)"
            )
    return wave


def load_audio(
    source,
    sample_rate: int = SAMPLE_RATE,
    *,
    min_samples: int = MIN_SAMPLES,
    silence_dbfs: float | None = SILENCE_DBFS,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Decode ``source`` (path, bytes or file object), downmix to mono, resample, validate.

    Returns a float32 waveform of shape (T,) at ``sample_rate``. Raises :class:`AudioError` naming the file and
    the problem (not found, empty, undecodable, NaN/Inf, too short, silent, too long).
    """
    name = _name(source)
    data, sr, _ = decode(source, max_seconds=max_seconds)
    wave = resample(to_mono(data), sr, sample_rate)
    # Decoders can return slightly out-of-range floats (float WAV); keep the model's input bounded.
    np.clip(wave, -1.0, 1.0, out=wave)
    return validate(wave, name, min_samples=min_samples, silence_dbfs=silence_dbfs)


def pad_or_crop(wave: np.ndarray, length: int = CROP_SAMPLES) -> np.ndarray:
    """(T,) -> (length,): keep the centre if longer, zero-pad both sides equally if shorter."""
    n = wave.shape[0]
    if n == length:
        return wave
    if n > length:
        start = (n - length) // 2
        return wave[start : start + length]
    left = (length - n) // 2
    return np.pad(wave, (left, length - n - left))


def fixed_crops(
    wave: np.ndarray, length: int = CROP_SAMPLES, hop: int | None = None, max_crops: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic evaluation crops covering the whole clip.

    (T,) -> (crops (N, length) float32, starts (N,) int64). Clips shorter than ``length`` give one centred,
    zero-padded crop (start 0). The last crop is aligned to the end so no audio is left out. ``max_crops``
    subsamples evenly (bounded memory and time for very long files).
    """
    hop = hop or length
    n = wave.shape[0]
    if n <= length:
        return pad_or_crop(wave, length)[None].astype(np.float32, copy=False), np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n - length + 1, hop, dtype=np.int64)
    if starts[-1] != n - length:
        starts = np.append(starts, n - length)
    if max_crops is not None and len(starts) > max_crops:
        starts = starts[np.linspace(0, len(starts) - 1, max_crops).round().astype(np.int64)]
    crops = np.stack([wave[s : s + length] for s in starts]).astype(np.float32, copy=False)
    return crops, starts


def random_crop(wave: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """(T,) -> (length,) at a random offset; shorter clips are zero-padded at a random offset."""
    n = wave.shape[0]
    if n >= length:
        start = int(rng.integers(0, n - length + 1))
        return wave[start : start + length]
    left = int(rng.integers(0, length - n + 1))
    return np.pad(wave, (left, length - n - left))


def trim_silence(wave: np.ndarray, top_db: float = 40.0, frame: int = 400, hop: int = 160) -> np.ndarray:
    """Cut leading/trailing frames whose RMS is more than ``top_db`` below the loudest frame. (T,) -> (T',)."""
    n = wave.shape[0]
    if n < frame:
        return wave
    n_frames = 1 + (n - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n_frames)[:, None]
    rms = np.sqrt(np.mean(np.square(wave[idx], dtype=np.float64), axis=1) + 1e-20)
    db = 20 * np.log10(rms / rms.max())
    keep = np.flatnonzero(db > -top_db)
    if keep.size == 0:
        return wave
    start = keep[0] * hop
    end = min(n, keep[-1] * hop + frame)
    return wave[start:end]


# ---------------------------------------------------------------------------------------------------------
# finding audio files

# What libsndfile (soundfile) decodes; folders are searched for these. Files named explicitly are always tried.
AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .aif .aiff .aifc .au .snd .caf .w64 .rf64 .sd2 .voc .wv .nist "
    ".sph .sf .ircam .mat4 .mat5 .pvf .xi .htk .paf .svx .mpc .avr .sds".split()
)


def display_name(path) -> str:
    """A path as printable text even when the file name is not valid UTF-8."""
    if isinstance(path, (str, os.PathLike)):
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    return getattr(path, "name", "<in-memory audio>")


def find_audio(folder: str, extensions=None) -> list[str]:
    """Audio files under ``folder`` (recursively, sorted, hidden files and folders skipped)."""
    extensions = AUDIO_EXTENSIONS if extensions is None else extensions
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions:
                found.append(os.path.join(root, name))
    return found


def discover(inputs: list[str], extensions=AUDIO_EXTENSIONS) -> list[tuple[str, str | None]]:
    """Expand files, folders, globs and @lists into ``[(path, error or None)]`` in order, without duplicates.

    An input that yields nothing (missing path, pattern without matches, folder without audio, unreadable
    list) gives one entry with an error, so it is reported like a bad file.
    """
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()

    def add(path: str, error: str | None = None) -> None:
        key = os.path.normpath(os.path.abspath(path)) if error is None else f"\0{path}\0{error}"
        if key not in seen:
            seen.add(key)
            out.append((path, error))

    def expand(arg: str, depth: int = 0) -> None:
        if arg.startswith("@") and len(arg) > 1:
            if depth > 4:
                add(arg, "file lists nested too deeply")
                return
            try:
                lines = Path(arg[1:]).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                add(arg, f"cannot read file list ({e.strerror if isinstance(e, OSError) else e})")
                return
            for line in lines:
                line = line.strip()
                if line and not line.startswith("#"):
                    expand(line, depth + 1)
            return
        if os.path.isdir(arg):
            files = find_audio(arg, extensions)
            if not files:
                add(
                    arg,
                    f"no audio files found in this folder (looked for {', '.join(sorted(extensions)[:6])}, ...)",
                )
            for f in files:
                add(f)
            return
        if os.path.lexists(arg):
            add(arg)  # a file named explicitly is tried whatever its extension (a dangling link: not found)
            return
        if glob.has_magic(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                add(arg, "no file matches this pattern")
            # "*.xyz" names its files; "data/*" or "data/**" keeps to audio extensions.
            named = os.path.splitext(arg)[1] not in ("", ".*")
            for m in matches:
                if os.path.isdir(m):
                    for f in find_audio(m, extensions):
                        add(f)
                elif named or os.path.splitext(m)[1].lower() in extensions:
                    add(m)
            return
        add(arg, "file not found")

    for a in inputs:
        expand(a)
    return out
