"""Figures for the app (matplotlib; nothing here feeds the model): waveform, spectrogram, who-speaks-when.

Shapes: waveforms (T,) float32; images (H, W, 3) uint8.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .registry import UNKNOWN

__all__ = ["spectrogram_db", "render_figure", "figure_file", "merge_segments"]


def spectrogram_db(
    wave: np.ndarray, sample_rate: int, win_s: float = 0.025, hop_s: float = 0.010, top_db: float = 80.0
) -> tuple[np.ndarray, float]:
    """Log-power spectrogram for display. (T,) -> ((F, N) dB with the top at 0 dB, hop in seconds)."""
    win = max(2, round(win_s * sample_rate))
    hop = max(1, round(hop_s * sample_rate))
    n_fft = 1 << (win - 1).bit_length()
    x = np.asarray(wave, dtype=np.float32)
    if x.shape[0] < win:
        x = np.pad(x, (0, win - x.shape[0]))
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]  # (N, win), a view
    spec = np.abs(np.fft.rfft(frames * np.hanning(win).astype(np.float32), n_fft, axis=1)) ** 2  # (N, F)
    db = 10.0 * np.log10(np.maximum(spec, 1e-12))
    db -= db.max()
    return np.maximum(db, -top_db).T, hop / sample_rate


def _envelope(wave: np.ndarray, n_bins: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T,) -> (bin index, min, max) so that long recordings plot quickly."""
    n = wave.shape[0]
    if n <= n_bins:
        return np.arange(n), wave, wave
    size = math.ceil(n / n_bins)
    pad = np.pad(wave, (0, size * n_bins - n), mode="edge").reshape(n_bins, size)
    return np.arange(n_bins) * size, pad.min(1), pad.max(1)


def _colors(names: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    known = sorted(n for n in set(names) if n != UNKNOWN)
    out = {n: cmap(i % 10) for i, n in enumerate(known)}
    out[UNKNOWN] = (0.6, 0.6, 0.6, 1.0)
    return out


def figure_file(image: np.ndarray) -> str:
    """Write an (H, W, 3) uint8 image as a PNG named by its content hash; returns the path.

    Gradio would cache a numpy image by rewriting ``<hash>/image.png`` in place on every request, so two
    identical concurrent answers could serve a file while it is being rewritten (a truncated download); a
    file path goes through Gradio's atomic copy-once cache instead, and our own write is atomic too.
    """
    import hashlib
    import io
    import tempfile

    from PIL import Image

    from .atomic import write_atomic

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    data = buf.getvalue()
    folder = Path(tempfile.gettempdir()) / "speakerid-app-figures"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
    if not path.exists():
        write_atomic(path, data)
    return str(path)


def render_figure(wave: np.ndarray, sample_rate: int, segments: list[dict] | None = None) -> np.ndarray:
    """Waveform, spectrogram and (with ``segments``) a who-speaks-when strip: an (H, W, 3) uint8 image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    duration = wave.shape[0] / sample_rate
    rows = [1.0, 1.6] + ([0.45] if segments else [])
    fig = Figure(figsize=(10, 1.6 * sum(rows) + 0.6), dpi=100, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 1, sharex=True, gridspec_kw={"height_ratios": rows})

    idx, lo, hi = _envelope(wave)
    ax = axes[0]
    ax.fill_between(idx / sample_rate, lo, hi, color="#4f46e5", linewidth=0.6)
    ax.set_ylim(-1.05 * max(1e-3, float(np.abs(wave).max())), 1.05 * max(1e-3, float(np.abs(wave).max())))
    ax.set_ylabel("amplitude")
    ax.set_title(f"{duration:.2f} s at {sample_rate / 1000:g} kHz", loc="right", fontsize=9)
    ax.grid(alpha=0.3)

    db, _ = spectrogram_db(wave, sample_rate)
    ax = axes[1]
    ax.imshow(
        db,
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(0.0, duration, 0.0, sample_rate / 2000.0),  # frame k covers about [k * hop, k * hop + win]
        interpolation="nearest",
    )
    ax.set_ylabel("kHz")
    ax.text(0.995, 0.96, "log power, 80 dB range", transform=ax.transAxes, ha="right", va="top", fontsize=8,
            color="white")  # fmt: skip

    if segments:
        ax = axes[2]
        colors = _colors([s["speaker"] for s in segments])
        for s in segments:
            ax.broken_barh([(s["start"], s["end"] - s["start"])], (0, 1), color=colors[s["speaker"]])
        ax.set_yticks([])
        ax.set_ylabel("who", rotation=0, ha="right", va="center")
        handles = [
            _patch(colors[n], n)
            for n in sorted(colors, key=lambda n: (n == UNKNOWN, n))
            if any(s["speaker"] == n for s in segments)
        ]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.1), fontsize=8, frameon=False)
    axes[-1].set_xlabel("time (s)")
    axes[-1].set_xlim(0.0, max(duration, 1e-3))
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _patch(color, label):
    from matplotlib.patches import Patch

    return Patch(color=color, label=label)


def merge_segments(segments: list[dict]) -> list[dict]:
    """Join consecutive touching crops with the same speaker: [{start, end, speaker, score (mean)}]."""
    out: list[dict] = []
    for s in segments:
        last = out[-1] if out else None
        if last and last["speaker"] == s["speaker"] and s["start"] <= last["end"] + 1e-6:
            last["_scores"].append(s["score"])
            last["end"] = max(last["end"], s["end"])
        else:
            out.append({**s, "_scores": [s["score"]]})
    for m in out:
        m["score"] = float(np.mean(m.pop("_scores")))
    return out
