"""``speakerid identify``: who speaks in each of many files, one output line per file.

    speakerid identify PATHS... [--model M.onnx|C.pt] [--top-k K] [--format table|csv|jsonl] [--out FILE]
                       [--batch-size N] [--workers N] [--segments] [--registry R|none] [--device auto|cpu|cuda]

PATHS are files, folders (searched recursively for audio files), glob patterns (``"data/**/*.flac"``, quoted so
the shell leaves them alone) and ``@list.txt`` files naming one path, folder or pattern per line (relative to
the current directory; blank lines and ``#`` comments are skipped).

Pipeline: a pool of ``--workers`` threads decodes files (``speakerid.audio.load_audio``: any format libsndfile
reads, any channel count, resampled to the model's rate with the training front-end's resampler), keeps their
speech (``speakerid.vad``: a file with no speech, or too little, gets an error row) and cuts it into the model's
crops (``fixed_crops``; at most ``--max-crops`` per file, so a 10-hour file costs what a long
one does); the main thread runs the model on batches of ``--batch-size`` crops taken from several files at once
and aggregates each file's crops with ``Identifier.score`` -- the same code as ``Identifier.identify``, so a
file gets the same answer here, in the app and in Python. Rows come out in input order as soon as a file is
done. A file that cannot be used gets a row with an ``error`` naming the problem and never stops the run.

Exit status: 0 every file identified, 1 some file failed (or a path/pattern matched nothing), 2 bad usage or a
model/registry that cannot be loaded.
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import os
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import AudioError, fixed_crops

__all__ = ["AUDIO_EXTENSIONS", "add_arguments", "run", "discover", "identify_files", "FileResult"]

# What libsndfile (soundfile) decodes; folders are searched for these. Files named explicitly are always tried.
AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .aif .aiff .aifc .au .snd .caf .w64 .rf64 .sd2 .voc .wv .nist "
    ".sph .sf .ircam .mat4 .mat5 .pvf .xi .htk .paf .svx .mpc .avr .sds".split()
)
FORMATS = ("table", "csv", "jsonl")


# ---------------------------------------------------------------------------------------------------------
# discovery


def _display(path: str) -> str:
    """A path as printable text even when the file name is not valid UTF-8."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _walk(folder: str, extensions) -> list[str]:
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
            files = _walk(arg, extensions)
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
                    for f in _walk(m, extensions):
                        add(f)
                elif named or os.path.splitext(m)[1].lower() in extensions:
                    add(m)
            return
        add(arg, "file not found")

    for a in inputs:
        expand(a)
    return out


# ---------------------------------------------------------------------------------------------------------
# the pipeline


@dataclass
class FileResult:
    """One input file's outcome: ``prediction`` (a runtime.Prediction) or ``error`` (what is wrong)."""

    path: str
    prediction: object | None = None
    error: str | None = None

    def to_row(self, segments: bool = False) -> dict:
        p = self.prediction
        row = {
            "path": _display(self.path),
            "speaker": p.speaker if p else None,
            "score": round(p.score, 6) if p else None,
            "top_k": [[n, round(s, 6)] for n, s in p.top_k] if p else [],
            "error": self.error,
            "mode": p.mode if p else None,
            "duration": round(p.duration, 3) if p else None,
            "n_crops": p.n_crops if p else 0,
            "speech": round(p.speech, 3) if p and p.speech is not None else None,
        }
        if segments:
            row["segments"] = p.segments if p else []
        return row


@dataclass
class _Decoded:
    path: str
    crops: np.ndarray | None = None  # (N, crop) float32
    starts: np.ndarray | None = None  # (N,) int64, in the speech kept
    n_samples: int = 0  # in the file
    index: np.ndarray | None = None  # (T_kept,) positions of the kept speech in the file (None: all kept)
    error: str | None = None


@dataclass
class _Pending:
    """A decoded file waiting for its crops to go through the model."""

    d: _Decoded
    sent: int = 0
    done: int = 0
    logits: dict = field(default_factory=dict)  # first crop index -> (k, K)
    emb: dict = field(default_factory=dict)  # first crop index -> (k, D)

    @property
    def n(self) -> int:
        return 0 if self.d.crops is None else len(self.d.crops)


def _open_for_decode(path: str):
    """A path libsndfile can open: the name itself, or the bytes when the name is not valid UTF-8."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        with open(path, "rb") as f:
            return f.read()


def _decode(identifier, path: str) -> _Decoded:
    """Worker: decode + validate + keep the speech + crop one file; every failure becomes an error string."""
    from .runtime import load_speech

    o, crop = identifier.options, identifier.engine.crop
    try:
        wave, index, n = load_speech(identifier.engine, _open_for_decode(path), o.max_seconds, _display(path))
        crops, starts = fixed_crops(wave, crop, o.hop, o.max_crops)
        return _Decoded(path, np.ascontiguousarray(crops), starts, n, index)
    except AudioError as e:
        return _Decoded(path, error=e.reason)
    except MemoryError:
        return _Decoded(path, error="out of memory while decoding (file too large; try --max-seconds)")
    except OSError as e:
        return _Decoded(path, error=f"cannot read file ({e.strerror or e})")
    except Exception as e:  # a decoder bug must not stop the run either
        return _Decoded(path, error=f"cannot decode audio ({type(e).__name__}: {e})")


class _Inline:
    """Executor stand-in for --workers 0: decode in the calling thread."""

    def submit(self, fn, *args):
        f: Future = Future()
        f.set_result(fn(*args))
        return f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def identify_files(
    identifier,
    items: list[tuple[str, str | None]],
    workers: int = 2,
    batch_size: int | None = None,
    model_workers: int = 1,
):
    """Yield a FileResult per item, in input order. ``items`` as from :func:`discover`.

    Decoding runs in ``workers`` threads, ahead of the model by at most ``2 * workers`` files. The model runs
    on batches of up to ``batch_size`` crops (default ``identifier.options.batch_size``) drawn from consecutive
    files, with up to ``model_workers`` calls in flight at once (data parallel: for CPU engines with one
    intra-op thread each, which scales better on few cores than one call using all of them). Each file's
    crops are aggregated by ``identifier.score``, as in ``Identifier.identify``.
    """
    engine = identifier.engine
    bs = max(1, int(batch_size or identifier.options.batch_size))
    n_model = max(1, int(model_workers))
    ahead = max(2, 2 * workers)
    todo = deque(items)
    futures: deque = deque()  # decode jobs, in input order
    waiting: deque[_Pending] = deque()  # decoded files whose crops are not all scored yet, in input order
    inflight: deque = deque()  # (model call future, [(file, first crop, n crops)])
    queued = 0  # crops decoded but not yet sent to the model
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") if workers > 0 else _Inline()
    runner = ThreadPoolExecutor(max_workers=n_model, thread_name_prefix="model") if n_model > 1 else _Inline()
    with pool, runner:

        def refill() -> None:
            while todo and len(futures) < ahead:
                path, err = todo.popleft()
                if err is not None:
                    f: Future = Future()
                    f.set_result(_Decoded(path, error=err))
                    futures.append(f)
                else:
                    futures.append(pool.submit(_decode, identifier, path))

        def collect() -> None:
            fut, parts = inflight.popleft()
            logits, emb = fut.result()  # a model failure propagates: it is not one file's fault
            off = 0
            for p, a, k in parts:
                p.logits[a] = logits[off : off + k]
                p.emb[a] = emb[off : off + k]
                p.done += k
                off += k

        refill()
        while futures or waiting:
            while futures and queued < bs:
                p = _Pending(futures.popleft().result())
                refill()
                waiting.append(p)
                queued += p.n
            submitted = False
            if queued >= bs or (not futures and queued):
                # One model call over the next crops, possibly from several files. At the tail, split what
                # is left over the idle model workers so they all get some.
                free = max(1, n_model - len(inflight))
                take = min(bs, queued if futures else -(-queued // free))
                parts = []
                for p in waiting:
                    k = min(take, p.n - p.sent)
                    if k > 0:
                        parts.append((p, p.sent, k))
                        p.sent += k
                        take -= k
                    if take == 0:
                        break
                x = np.concatenate([p.d.crops[a : a + k] for p, a, k in parts])  # (B, crop)
                inflight.append((runner.submit(engine.run, x), parts))
                queued -= len(x)
                submitted = True
            while inflight and (len(inflight) >= n_model or not submitted or inflight[0][0].done()):
                collect()
                submitted = True  # waited once; go on filling
            while waiting and waiting[0].done == waiting[0].n:
                p = waiting.popleft()
                if p.d.error is not None:
                    yield FileResult(p.d.path, error=p.d.error)
                    continue
                order = sorted(p.logits)
                pred = identifier.score(
                    np.concatenate([p.logits[a] for a in order]),
                    np.concatenate([p.emb[a] for a in order]),
                    p.d.starts,
                    p.d.n_samples,
                    p.d.index,
                )
                p.d.crops = None
                yield FileResult(p.d.path, prediction=pred)


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
        path = _display(r.path)
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


class _Output:
    """stdout (streamed, flushed per row) or FILE (streamed into a temp file beside it, renamed at the end)."""

    def __init__(self, out: str | None):
        self.out = Path(out) if out else None
        self.tmp = None
        if self.out is None:
            sys.stdout.flush()
            self.f = (
                io.TextIOWrapper(
                    sys.stdout.buffer, encoding="utf-8", newline="", line_buffering=True, write_through=True
                )
                if hasattr(sys.stdout, "buffer")
                else sys.stdout
            )
            self._own = self.f is not sys.stdout
        else:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            fd, self.tmp = tempfile.mkstemp(prefix=f".{self.out.name}.", suffix=".tmp", dir=self.out.parent)
            self.f = os.fdopen(fd, "w", encoding="utf-8", newline="")

    def commit(self) -> None:
        if self.out is None:
            self.f.flush()
            if self._own:
                self.f.detach()
            return
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.out)
        self.tmp = None

    def abort(self) -> None:
        if self.out is None:
            try:
                self.f.flush()
                if self._own:
                    self.f.detach()
            except (OSError, ValueError):
                pass
            return
        self.f.close()
        if self.tmp and os.path.exists(self.tmp):
            os.unlink(self.tmp)


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


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_batch(engine) -> int:
    """Crops per model call on CPU: keep one call's GRU gate activations (steps x 3H floats per crop) within
    ~8 MB, i.e. in cache. Measured (ORT, one thread): the raw 8192-step l0=3 GRU does 23 clips per CPU-second
    at 1 crop per call and 18 at 4..32; the MFCC GRU (103 frames) 1040 at 1 and 1230 at 32."""
    c = engine.model_config
    steps = engine.crop
    if c.get("frontend") == "mfcc":
        steps = 1 + engine.crop // max(1, round(engine.sample_rate * 0.005))  # 5 ms MFCC hop
    per_crop = steps * 3 * max(c.get("hidden") or [64]) * 4
    return int(min(64, max(1, 8_000_000 // per_crop)))


def _load(args):
    """-> (engine, model_workers). On CPU the model runs ``threads`` single-threaded calls on different batches
    at once: with tiny hidden sizes that scales far better than splitting one call over the cores."""
    from .runtime import load_engine

    threads = args.threads or _cpu_count()
    model = args.model
    if model and Path(model).suffix == ".onnx":
        from .onnx_engine import OnnxEngine

        engine = OnnxEngine(model, device=args.device, threads=1)
        return engine, (1 if engine.on_cuda else threads)
    engine = load_engine(model, device=args.device)
    if getattr(engine, "device", None) is not None and engine.device.type == "cpu":
        import torch

        torch.set_num_threads(1)
        return engine, threads
    return engine, 1


def run(args) -> int:
    """Run ``speakerid identify`` with parsed ``args``; returns the exit status (0 ok, 1 file errors, 2 usage)."""
    from tqdm import tqdm

    from .registry import RegistryError
    from .runtime import Identifier, InferenceOptions

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
        engine, model_workers = _load(args)
    except (OSError, ValueError, RuntimeError) as e:  # CheckpointError/OnnxModelError are ValueErrors
        return _error(f"cannot load the model: {e}")
    on_gpu = (
        getattr(engine, "on_cuda", False) or getattr(getattr(engine, "device", None), "type", "") == "cuda"
    )
    batch_size = args.batch_size or (256 if on_gpu else _cpu_batch(engine))
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
    desc = engine.describe()
    note = f" ({desc['provider_note']})" if desc.get("provider_note") else ""
    cpu = f", {model_workers} model threads" if model_workers > 1 else ""
    print(
        f"model {engine.source} [{desc['name'] or 'unnamed'}, {engine.n_parameters:,} parameters] "
        f"on {engine.provider}{note}{cpu}; scoring {identifier.mode} ({len(names)} speakers); scores: {scores}",
        file=sys.stderr,
    )

    items = discover(args.paths, exts)
    try:
        out = _Output(args.out)
    except OSError as e:
        return _error(f"cannot write {args.out}: {e.strerror or e}")
    writer = WRITERS[args.format](out.f, args.segments, args.top_k, names, scores)
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
        writer.header()
        for r in identify_files(
            identifier, items, workers=args.workers, batch_size=batch_size, model_workers=model_workers
        ):
            writer.write(r)
            if r.error is None:
                n_ok += 1
                audio_s += r.prediction.duration
            else:
                n_bad += 1
            bar.update(1)
        out.commit()
    except KeyboardInterrupt:
        out.abort()
        bar.close()
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `| head`: the reader is gone, nothing more to say
        out.abort()
        bar.close()
        return 1 if n_bad else 0
    except OSError as e:  # writing the results failed (disk full, ...)
        out.abort()
        bar.close()
        return _error(f"cannot write the results: {e}")
    except (
        RuntimeError,
        ValueError,
        MemoryError,
    ) as e:  # the model failed on a batch: no single file is to blame
        out.abort()
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
