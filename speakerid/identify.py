"""``speakerid identify``: who speaks in each of many files, one output line per file.

    speakerid identify PATHS... [--model M.onnx|C.pt] [--top-k K] [--format table|csv|jsonl] [--out FILE]
                       [--batch-size N] [--workers N] [--segments] [--registry R|none] [--device auto|cpu|cuda]

PATHS are files, folders (searched recursively for audio files), glob patterns (``"data/**/*.flac"``, quoted so
the shell leaves them alone) and ``@list.txt`` files naming one path, folder or pattern per line (relative to
the current directory; blank lines and ``#`` comments are skipped).

This module is the command line only: inputs are expanded by ``speakerid.audio.discover`` and identified by
``speakerid.pipeline.Identifier.identify_files`` (``--workers`` decoding threads, speech detection, at most
``--max-crops`` crops per file, the model on batches of ``--batch-size`` crops taken from several files at
once, each file voted by ``Identifier.score``: the same code as ``Identifier.identify``, ``speakerid evaluate``
and the app). Rows come out in input order as soon as a file is done, to stdout or atomically to ``--out``
(``speakerid.atomic``). A file that cannot be used gets a row with an ``error`` naming the problem and never
stops the run.

Exit status: 0 every file identified, 1 some file failed (or a path/pattern matched nothing), 2 bad usage or a
model/registry that cannot be loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
import time
from typing import TYPE_CHECKING

from .audio import AUDIO_EXTENSIONS, discover, display_name

if TYPE_CHECKING:
    from .pipeline import FileResult

__all__ = ["add_arguments", "run", "main", "WRITERS"]

FORMATS = ("table", "csv", "jsonl")


# ---------------------------------------------------------------------------------------------------------
# output


class _Writer:
    def __init__(self, stream, segments: bool, top_k: int, labels: list[str], scores: str = ""):
        self.f = stream
        self.segments = segments
        self.top_k = top_k
        self.name_w = min(24, max([len(n) for n in labels] + [7]))
        self.scores = scores  # what a score is, for human-readable output ("cosine similarity, ...")

    def header(self) -> None:
        pass

    def write(self, r: FileResult) -> None:
        raise NotImplementedError


class _Table(_Writer):
    def header(self) -> None:
        top = f"top-{self.top_k}" + (f" ({self.scores})" if self.scores else "")
        self.topw = max(12, min(60, self.top_k * (self.name_w + 8)), len(top))
        self.f.write(f"{'speaker':<{self.name_w}}  {'score':>8}  {top:<{self.topw}}  file\n")

    def write(self, r: FileResult) -> None:
        path = display_name(r.path)
        if r.error is not None:
            self.f.write(f"{'ERROR':<{self.name_w}}  {'-':>8}  {r.error:<{self.topw}}  {path}\n")
            return
        p = r.prediction
        top = ", ".join(f"{n} {s:.3f}" for n, s in p.top_k)
        self.f.write(f"{p.speaker:<{self.name_w}}  {p.score:>8.4f}  {top:<{self.topw}}  {path}\n")
        if self.segments:
            for s in p.segments:
                self.f.write(
                    f"    {s['start']:9.3f}-{s['end']:<9.3f} {s['speaker']:<{self.name_w}} {s['score']:.4f}\n"
                )


class _Csv(_Writer):
    COLUMNS = ["path", "speaker", "score", "top_k", "error", "mode", "duration", "n_crops"]

    def header(self) -> None:
        self.w = csv.writer(self.f, lineterminator="\n")
        self.w.writerow(self.COLUMNS + (["segments"] if self.segments else []))

    def write(self, r: FileResult) -> None:
        row = r.to_row(self.segments)
        # top_k (and segments) as JSON: speaker names are data and may contain any separator.
        row["top_k"] = json.dumps(row["top_k"], ensure_ascii=False)
        if self.segments:
            row["segments"] = json.dumps(row["segments"], ensure_ascii=False)
        self.w.writerow(
            ["" if row[c] is None else row[c] for c in self.COLUMNS + (["segments"] if self.segments else [])]
        )


class _Jsonl(_Writer):
    def write(self, r: FileResult) -> None:
        self.f.write(json.dumps(r.to_row(self.segments), ensure_ascii=False) + "\n")


WRITERS = {"table": _Table, "csv": _Csv, "jsonl": _Jsonl}


@contextlib.contextmanager
def _stdout():
    """stdout as UTF-8 text, flushed per row (results stream out as files finish)."""
    sys.stdout.flush()
    if not hasattr(sys.stdout, "buffer"):
        yield sys.stdout
        return
    f = io.TextIOWrapper(
        sys.stdout.buffer, encoding="utf-8", newline="", line_buffering=True, write_through=True
    )
    try:
        yield f
    finally:
        with contextlib.suppress(OSError, ValueError):
            f.flush()
        f.detach()


def _output(out: str | None):
    """stdout, or FILE written through ``speakerid.atomic`` (renamed into place only when the run succeeds)."""
    from .atomic import atomic_open

    return _stdout() if out is None else atomic_open(out, "w", encoding="utf-8", newline="")


# ---------------------------------------------------------------------------------------------------------
# CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "Identify the speaker of each audio file (folders are searched recursively)."
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="audio files, folders, quoted glob patterns, @file lists"
    )
    p.add_argument(
        "--model",
        "--checkpoint",
        dest="model",
        default=None,
        help="model.onnx (with its .json sidecar) or checkpoint .pt (default: the shipped model)",
    )
    p.add_argument(
        "--registry",
        default="auto",
        help="speaker registry JSON, 'auto' (the model's registry if any) or 'none' (model classes)",
    )
    p.add_argument(
        "--mode",
        choices=["auto", "registry", "classes"],
        default="auto",
        help="score against enrolled speakers or the model's own classes (auto: registry if any)",
    )
    p.add_argument("--top-k", type=int, default=5, help="speakers listed per file (default 5)")
    p.add_argument("--threshold", type=float, default=None, help="'unknown' threshold in registry mode")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    p.add_argument("--out", default=None, help="write to FILE (atomically, at the end) instead of stdout")
    p.add_argument(
        "--segments", action="store_true", help="also output one prediction per crop (who speaks when)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="crops per model call, across files (default: 256 on CUDA; on CPU as many as keep the "
        "activations in cache: 1 for raw-waveform models, up to 64 for MFCC models)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="decoding threads (0 = decode in the main thread; default min(4, CPUs))",
    )
    p.add_argument("--max-crops", type=int, default=256, help="crops scored per file at most (evenly spread)")
    p.add_argument(
        "--hop", type=float, default=None, help="seconds between crop starts (default: crop length)"
    )
    p.add_argument("--max-seconds", type=float, default=3600.0, help="refuse longer files (0 = no limit)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU model threads: that many single-threaded model calls at once (0 = all CPUs)",
    )
    p.add_argument(
        "--extensions",
        default=None,
        help="comma-separated extensions searched in folders (default: every format libsndfile reads)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _error(msg: str) -> int:
    print(f"speakerid identify: error: {msg}", file=sys.stderr)
    return 2


def _cpu_batch(engine) -> int:
    """Crops per model call on CPU: keep one call's GRU gate activations (steps x 3H floats per crop) within
    ~8 MB, i.e. in cache. Measured (ORT, one thread): the raw 8192-step l0=3 GRU does 23 clips per CPU-second
    at 1 crop per call and 18 at 4..32; the MFCC GRU (103 frames) 1040 at 1 and 1230 at 32."""
    c = engine.card.model
    steps = engine.crop
    if c.frontend == "mfcc":
        steps = 1 + engine.crop // max(1, round(engine.sample_rate * 0.005))  # 5 ms MFCC hop
    per_crop = steps * 3 * max(c.hidden or [64]) * 4
    return int(min(64, max(1, 8_000_000 // per_crop)))


def run(args) -> int:
    """Run ``speakerid identify`` with parsed ``args``; returns the exit status (0 ok, 1 file errors, 2 usage)."""
    from tqdm import tqdm

    from .engine import cpu_count
    from .pipeline import Identifier, InferenceOptions
    from .registry import RegistryError
    from .runtime import load_engine

    if (
        args.top_k < 1
        or (args.batch_size is not None and args.batch_size < 1)
        or args.workers < 0
        or args.max_crops < 1
    ):
        return _error("--top-k, --batch-size and --max-crops must be >= 1 and --workers >= 0")
    if args.hop is not None and args.hop <= 0:
        return _error("--hop must be > 0 seconds")
    if args.out and os.path.isdir(args.out):
        return _error(f"--out {args.out} is a folder; name a file")
    exts = AUDIO_EXTENSIONS
    if args.extensions:
        exts = frozenset("." + e.strip().lower().lstrip(".") for e in args.extensions.split(",") if e.strip())
    try:
        # On CPU the model runs ``threads`` single-threaded calls on different batches at once: with tiny
        # hidden sizes that scales far better than splitting one call over the cores.
        engine = load_engine(args.model, device=args.device, workers=args.threads or cpu_count())
    except (OSError, ValueError, RuntimeError) as e:  # CheckpointError/OnnxModelError are ValueErrors
        return _error(f"cannot load the model: {e}")
    batch_size = args.batch_size or (256 if engine.on_gpu else _cpu_batch(engine))
    registry = None if str(args.registry).lower() == "none" else args.registry
    options = InferenceOptions(
        top_k=args.top_k,
        hop=round(args.hop * engine.sample_rate) if args.hop else None,
        max_crops=args.max_crops,
        batch_size=batch_size,
        threshold=args.threshold,
        mode=args.mode,
        segments=args.segments,
        max_seconds=args.max_seconds or None,
    )
    try:
        identifier = Identifier(engine, registry=registry, options=options)
    except (RegistryError, OSError, ValueError) as e:
        return _error(f"cannot use the speaker registry: {e}")
    if identifier.mode == "registry" and (identifier.registry is None or not len(identifier.registry)):
        return _error("--mode registry needs a registry with enrolled speakers (speakerid enroll ...)")
    names = identifier.registry.names if identifier.mode == "registry" else engine.labels
    if identifier.mode == "registry":
        scores = f'cosine similarity; "unknown" below {identifier.threshold:.3f}'
    else:
        scores = "class probability"
    note = f" ({engine.provider_note})" if engine.provider_note else ""
    cpu = f", {engine.workers} model threads" if engine.workers > 1 else ""
    print(
        f"model {engine.source} [{engine.card.name or 'unnamed'}, {engine.n_parameters:,} parameters] "
        f"on {engine.provider}{note}{cpu}; scoring {identifier.mode} ({len(names)} speakers); scores: {scores}",
        file=sys.stderr,
    )

    items = discover(args.paths, exts)
    n_ok = n_bad = 0
    audio_s = 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    bar = tqdm(
        total=len(items),
        unit="file",
        disable=True if args.no_progress else None,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    try:
        with _output(args.out) as f:
            writer = WRITERS[args.format](f, args.segments, args.top_k, names, scores)
            writer.header()
            for r in identifier.identify_files(items, workers=args.workers, batch_size=batch_size):
                writer.write(r)
                if r.error is None:
                    n_ok += 1
                    audio_s += r.prediction.duration
                else:
                    n_bad += 1
                bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `| head`: the reader is gone, nothing more to say
        bar.close()
        return 1 if n_bad else 0
    except OSError as e:  # opening or writing the results failed (disk full, ...)
        bar.close()
        return _error(f"cannot write {'the results' if args.out is None else args.out}: {e.strerror or e}")
    except (RuntimeError, ValueError, MemoryError) as e:  # the model failed on a batch: no file is to blame
        bar.close()
        return _error(f"inference failed: {type(e).__name__}: {e}")
    bar.close()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    speed = f", {audio_s / wall:.1f}x realtime" if wall > 0 and audio_s else ""
    speed += f" ({cpu:.2f} CPU-s, {cpu / wall:.2f} cores busy)" if wall > 0 else ""
    print(
        f"{n_ok} identified, {n_bad} failed; {audio_s:.1f} s of audio in {wall:.2f} s{speed}"
        + (f"; wrote {args.out}" if args.out else ""),
        file=sys.stderr,
    )
    return 1 if n_bad else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m speakerid.identify ...`` (same as ``speakerid identify ...``)."""
    p = argparse.ArgumentParser(prog="speakerid identify")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
