"""Items -> prepared dataset (the format :mod:`speakerid.data` reads), in parallel, resumable and atomic.

How a run is laid out, and why an interrupted run ends byte-identical to an uninterrupted one:

1. The items are sorted by (speaker, utt_id) and cut into chunks of ``chunk_files`` files. Chunk k always holds
   the same files, whatever the number of workers.
2. A *plan fingerprint* (SHA-256 of the settings, the corpus description and every item with its file size) is
   written to ``OUT/.partial/plan.json``. A re-run with the same fingerprint resumes; a different one is refused
   unless ``overwrite=True``, so two different datasets never get mixed.
3. A worker turns chunk k into ``shards/{k:05d}.npy`` (temp file + ``os.replace``), then writes the done-marker
   ``.partial/chunk-{k:05d}.json`` (offsets, lengths, skipped files) the same way. A chunk counts as done only
   when its marker is there and its shard has the recorded length; anything else is redone from scratch, and
   redoing gives the same bytes (decoding and resampling are deterministic).
4. When every chunk is done, splits and labels are computed from the markers alone, and ``labels.json``,
   ``prep.json`` and finally ``manifest.csv`` are written atomically; ``.partial/`` is removed. ``manifest.csv``
   existing means the dataset is complete. ``prep.json`` holds no timestamps, paths of temp files or worker
   counts.

kill -9 at any point loses at most the chunks in flight. Workers die with the main process (on Linux the kernel
kills them at once, ``PR_SET_PDEATHSIG``; elsewhere a watchdog notices within 0.1 s); a worker killed mid-chunk
leaves at most a temp file, which the next run removes.

Shapes: a waveform is float32 (T,) at 16 kHz; a shard is a 1-D int16 (or float16) array, the utterances of one
chunk back to back.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import platform
import shutil
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speakerid.atomic import write_atomic
from speakerid.audio import CROP_SAMPLES, SAMPLE_RATE, AudioError, load_audio, trim_silence
from speakerid.data import MANIFEST_FIELDS

from .items import Item, PrepError, Scan, check_items
from .splits import SPLIT_RULES, assign_splits, describe, normalize_text

try:  # advisory lock against two runs writing one folder; not available on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = ["FORMAT", "PrepConfig", "PrepResult", "prepare"]

FORMAT = "speakerid-prepared/1"
PARTIAL = ".partial"  # work folder inside OUT; removed when the dataset is complete
TRIM_FRAME, TRIM_HOP = 400, 160  # 25 ms frames, 10 ms hop for trim_silence
_OURS = {"manifest.csv", "labels.json", "prep.json", "shards", PARTIAL}


@dataclass(frozen=True)
class PrepConfig:
    """Every setting that changes the output. Saved in prep.json; part of the plan fingerprint."""

    dtype: str = "int16"  # shard samples: int16 (round(x * 32768), clipped) or float16
    trim: bool = False  # cut leading/trailing silence with speakerid.audio.trim_silence
    trim_db: float = 40.0  # ... frames more than this many dB below the loudest frame
    split_by: str = "file"  # sentence | file | speaker (see data_prep.splits)
    valid: float = 0.1  # fraction of groups (sentence ids, files per speaker, or speakers) for validation
    test: float = 0.1  # fraction of groups for test
    seed: int = 0  # split shuffling seed
    chunk_files: int = 256  # files per shard: the unit of parallel work and of resuming
    max_seconds: float | None = 1800.0  # longer files are skipped before decoding (bounded memory)

    def __post_init__(self):
        if self.dtype not in ("int16", "float16"):
            raise PrepError(f"dtype must be int16 or float16, got {self.dtype!r}")
        if self.split_by not in SPLIT_RULES:
            raise PrepError(f"split_by must be one of {', '.join(SPLIT_RULES)}, got {self.split_by!r}")
        if not (0 <= self.valid < 1 and 0 <= self.test < 1 and self.valid + self.test < 1):
            raise PrepError(
                f"valid and test must be >= 0 with valid + test < 1, got {self.valid}, {self.test}"
            )
        if self.chunk_files < 1:
            raise PrepError(f"chunk_files must be >= 1, got {self.chunk_files}")
        if self.trim_db <= 0:
            raise PrepError(f"trim_db must be > 0, got {self.trim_db}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise PrepError(f"max_seconds must be > 0 or None, got {self.max_seconds}")


@dataclass(frozen=True)
class PrepResult:
    """What :func:`prepare` did. ``prep`` is the content of prep.json."""

    out: Path
    prep: dict
    n_chunks: int
    n_resumed: int  # chunks found finished by an earlier, interrupted run
    up_to_date: bool  # the folder already held this exact dataset; nothing was done

    @property
    def skipped(self) -> list[dict]:
        return self.prep["skipped"]

    @property
    def counts(self) -> dict:
        return self.prep["counts"]


ProgressFn = Callable[[int, int], None]  # (files done, files total)


def prepare(
    items: Scan | Iterable[Item],
    out: str | os.PathLike,
    config: PrepConfig | None = None,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    **options,
) -> PrepResult:
    """Decode, resample to 16 kHz, (optionally) trim, and store ``items`` as a prepared dataset in ``out``.

    ``options`` override fields of ``config`` (e.g. ``split_by="sentence", seed=3``); unknown names raise
    :class:`PrepError` listing the valid ones. ``workers`` defaults to ``os.cpu_count()``; the output does not
    depend on it. A re-run of an interrupted call continues where it stopped; a re-run of a finished one returns
    at once (``up_to_date``). Unusable files are skipped and listed in ``prep.json["skipped"]``.
    """
    config = _resolve_config(config, options)
    scan = items if isinstance(items, Scan) else Scan(items=list(items))
    item_list = check_items(list(scan.items))
    out = Path(out)
    if not item_list:
        where = scan.info.get("root", "the input")
        raise PrepError(f"{where}: no audio files found ({len(scan.skipped)} skipped while scanning)")
    plan = _plan(item_list, scan, config)
    fp = plan["fingerprint"]
    chunks = [item_list[i : i + config.chunk_files] for i in range(0, len(item_list), config.chunk_files)]

    existing = _read_json(out / "prep.json")
    if (out / "manifest.csv").is_file() and existing is not None and existing.get("fingerprint") == fp:
        shutil.rmtree(out / PARTIAL, ignore_errors=True)  # a run killed after its last write
        return PrepResult(out, existing, len(chunks), len(chunks), up_to_date=True)
    # Refuse to touch a folder that another run is writing, even with overwrite.
    if (out / PARTIAL / "lock").is_file():
        probe = _lock(out / PARTIAL / "lock")
        if probe is not None:
            probe.close()
    _claim(out, plan, existing, overwrite)

    lock = _lock(out / PARTIAL / "lock")
    try:
        _remove_temp_files(out)
        done: dict[int, dict] = {}
        for k, chunk in enumerate(chunks):
            marker = _read_marker(out, k, fp, len(chunk))
            if marker is not None:
                done[k] = marker
        n_resumed = len(done)
        total = len(item_list)
        n_done = sum(len(chunks[k]) for k in done)
        if progress:
            progress(n_done, total)
        pending = [k for k in range(len(chunks)) if k not in done]
        tasks = [_task(k, chunks[k], config, out, fp) for k in pending]

        def on_done(k: int, marker: dict) -> None:
            nonlocal n_done
            done[k] = marker
            n_done += len(chunks[k])
            if progress:
                progress(n_done, total)

        _run(tasks, workers, on_done, lock.fileno() if lock is not None else None)
        prep = _assemble(out, chunks, done, scan, config, plan)
    finally:
        if lock is not None:
            lock.close()
    shutil.rmtree(out / PARTIAL, ignore_errors=True)
    return PrepResult(out, prep, len(chunks), n_resumed, up_to_date=False)


# ----------------------------------------------------------------------------------------------- planning


def _resolve_config(config: PrepConfig | None, options: dict) -> PrepConfig:
    config = config or PrepConfig()
    names = {f.name for f in dataclasses.fields(PrepConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise PrepError(f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    return dataclasses.replace(config, **options) if options else config


def _plan(items: list[Item], scan: Scan, config: PrepConfig) -> dict:
    sizes = []
    for it in items:
        try:
            sizes.append(os.stat(it.path).st_size)
        except OSError:
            sizes.append(-1)
    body = {
        "format": FORMAT,
        "sample_rate": SAMPLE_RATE,
        "config": dataclasses.asdict(config),
        "corpus": scan.info,
        "scan_skipped": sorted(scan.skipped),
        "items": [[*dataclasses.astuple(it), size] for it, size in zip(items, sizes)],
    }
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return {
        "fingerprint": hashlib.sha256(blob).hexdigest(),
        "config": body["config"],
        "corpus": scan.info,
        "n_items": len(items),
    }


def _difference(old: dict, plan: dict) -> str:
    """A short, human description of how an earlier run's settings differ from this one's."""
    diffs = []
    for key in ("config", "corpus"):
        a, b = old.get(key) or {}, plan[key]
        for name in sorted(set(a) | set(b)):
            if a.get(name) != b.get(name):
                diffs.append(f"{name}: {a.get(name)!r} -> {b.get(name)!r}")
    if not diffs:
        n_old = old.get("n_items", (old.get("counts") or {}).get("items"))
        diffs.append(f"the file list or file sizes differ ({n_old} -> {plan['n_items']} files)")
    return "; ".join(diffs[:5])


def _claim(out: Path, plan: dict, existing: dict | None, overwrite: bool) -> None:
    """Make ``out`` ours for this plan: create it, resume it, or (overwrite) clear our earlier artifacts."""
    partial = out / PARTIAL
    if out.exists() and not out.is_dir():
        raise PrepError(f"{out}: exists and is not a folder")
    old_plan = _read_json(partial / "plan.json")
    if overwrite:
        for name in _OURS:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    elif old_plan is not None:
        if old_plan.get("fingerprint") != plan["fingerprint"]:
            raise PrepError(
                f"{out}: an unfinished run with different inputs or settings is in this folder "
                f"({_difference(old_plan, plan)}); pass --overwrite (overwrite=True) to start over"
            )
    elif existing is not None or (out / "manifest.csv").exists():
        what = _difference(existing, plan) if existing is not None else "no prep.json"
        raise PrepError(
            f"{out}: already holds a prepared dataset made with different inputs or settings ({what}); "
            f"pass --overwrite (overwrite=True) to replace it, or choose another --out"
        )
    elif out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in _OURS)
        if foreign:
            raise PrepError(
                f"{out}: folder is not empty and is not a prepared dataset (has {', '.join(foreign[:3])}); "
                f"choose an empty or new --out, or pass --overwrite"
            )
        # Our folders without a plan (a run killed before its first write, or hand-edited): start clean.
        for name in ("shards", PARTIAL):
            shutil.rmtree(out / name, ignore_errors=True)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    partial.mkdir(exist_ok=True)
    if _read_json(partial / "plan.json") is None:
        _write_bytes(partial / "plan.json", _json_bytes(plan))


def _lock(path: Path):
    if fcntl is None:  # pragma: no cover
        return None
    f = open(path, "a+b")  # noqa: SIM115 -- held for the whole run
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        f.close()
        raise PrepError(f"{path.parent.parent}: another data_prep run is writing to this folder") from e
    return f


def _remove_temp_files(out: Path) -> None:
    for folder in (out / "shards", out / PARTIAL):
        for p in folder.glob(".*.tmp*"):
            p.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------- chunks


def _shard_name(k: int) -> str:
    return f"{k:05d}.npy"


def _marker_path(out: Path, k: int) -> Path:
    return out / PARTIAL / f"chunk-{k:05d}.json"


@dataclass(frozen=True)
class _Task:
    k: int
    files: list[tuple[str, str]]  # (path, source)
    config: PrepConfig
    out: str
    fingerprint: str


def _task(k: int, chunk: list[Item], config: PrepConfig, out: Path, fp: str) -> _Task:
    return _Task(k, [(it.path, it.source) for it in chunk], config, os.fspath(out), fp)


def _read_marker(out: Path, k: int, fp: str, n_files: int) -> dict | None:
    """The done-marker of chunk k if it belongs to this plan and its shard is intact, else None."""
    marker = _read_json(_marker_path(out, k))
    if not marker or marker.get("fingerprint") != fp or marker.get("n_files") != n_files:
        return None
    if marker["rows"]:
        try:
            shard = np.load(out / "shards" / marker["shard"], mmap_mode="r")
        except (OSError, ValueError):
            return None
        if shard.ndim != 1 or shard.shape[0] != sum(r["length"] for r in marker["rows"]):
            return None
    return marker


def load_one(path: str, config: PrepConfig) -> np.ndarray:
    """One file -> float32 (T,) at 16 kHz, trimmed if configured. Raises AudioError (with the reason)."""
    wave = load_audio(path, max_seconds=config.max_seconds)
    if config.trim:
        wave = trim_silence(wave, top_db=config.trim_db, frame=TRIM_FRAME, hop=TRIM_HOP)
    return wave


def quantize(wave: np.ndarray, dtype: str) -> np.ndarray:
    """float32 (T,) in [-1, 1] -> int16 (round(x * 32768), clipped to the int16 range) or float16 (T,)."""
    if dtype == "int16":
        return np.clip(np.rint(wave * 32768.0), -32768, 32767).astype(np.int16)
    return wave.astype(np.float16)


def _process_chunk(task: _Task) -> dict:
    """Decode every file of one chunk, write its shard and then its done-marker. Runs in a worker process."""
    parts, rows, skipped = [], [], []
    offset = 0
    for i, (path, source) in enumerate(task.files):
        try:
            wave = quantize(load_one(path, task.config), task.config.dtype)
        except AudioError as e:
            skipped.append({"i": i, "source": source, "reason": e.reason})
            continue
        except Exception as e:  # a decoder bug or an OS error on one file must not stop the dataset
            skipped.append({"i": i, "source": source, "reason": f"{type(e).__name__}: {e}"})
            continue
        parts.append(wave)
        rows.append({"i": i, "offset": offset, "length": int(wave.shape[0])})
        offset += int(wave.shape[0])
    out = Path(task.out)
    shard = None
    if not parts:  # nothing usable: make sure no shard of an earlier attempt at this chunk is left behind
        (out / "shards" / _shard_name(task.k)).unlink(missing_ok=True)
    else:
        shard = _shard_name(task.k)
        data = np.concatenate(parts) if len(parts) > 1 else parts[0]
        buf = io.BytesIO()
        np.lib.format.write_array(buf, data, allow_pickle=False)
        _write_bytes(out / "shards" / shard, buf.getvalue())
    marker = {
        "fingerprint": task.fingerprint,
        "chunk": task.k,
        "n_files": len(task.files),
        "shard": shard,
        "rows": rows,
        "skipped": skipped,
    }
    _write_bytes(_marker_path(out, task.k), _json_bytes(marker))
    return marker


def _die_with_parent(parent_pid: int) -> None:
    """Make the kernel SIGKILL this process the moment its parent dies (Linux ``PR_SET_PDEATHSIG``); elsewhere,
    or if prctl is unavailable, a watchdog thread polls the parent every 0.1 s."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent_pid:  # the parent died before prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _worker_init(parent_pid: int, lock_fd: int | None) -> None:
    """In each worker: ignore Ctrl-C (the parent stops the pool), drop the inherited run lock, and die with the
    parent (kill -9) instead of idling or finishing a chunk nobody will collect."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if lock_fd is not None:
        try:
            os.close(lock_fd)  # the flock is released only when every copy of the descriptor is closed
        except OSError:
            pass
    _die_with_parent(parent_pid)


def _terminate_workers(ex: ProcessPoolExecutor) -> None:
    """Stop the pool's processes mid-chunk (safe: a chunk becomes visible only through atomic renames)."""
    if hasattr(ex, "terminate_workers"):  # Python >= 3.14
        ex.terminate_workers()
        return
    for proc in list((getattr(ex, "_processes", None) or {}).values()):
        try:
            proc.terminate()
        except (OSError, AttributeError):
            pass


def _run(
    tasks: list[_Task], workers: int | None, on_done: Callable[[int, dict], None], lock_fd: int | None
) -> None:
    """Process ``tasks``, calling ``on_done(k, marker)`` as each chunk finishes; in this process for one worker,
    else in a process pool that is stopped at once (workers terminated) on any exception, Ctrl-C included."""
    if not tasks:
        return
    n = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    if n == 1:
        for t in tasks:
            on_done(t.k, _process_chunk(t))
        return
    # fork: workers inherit the imported modules (no re-import of torch per worker); elsewhere the default.
    ctx = multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None
    ex = ProcessPoolExecutor(
        max_workers=n,
        mp_context=ctx,
        initializer=_worker_init,
        initargs=(os.getpid(), lock_fd if ctx is not None else None),
    )
    try:
        futures = {ex.submit(_process_chunk, t): t.k for t in tasks}
        for f in as_completed(futures):
            try:
                marker = f.result()
            except BrokenProcessPool as e:
                raise PrepError(
                    f"a worker process died while preparing chunk {futures[f]} (crashed decoder or out of "
                    f"memory); run the same command again to continue, or use --workers 1 to find the file"
                ) from e
            on_done(futures[f], marker)
    except (
        BaseException
    ):  # Ctrl-C, a failed chunk: stop now. Finished chunks are on disk; the rest is redone.
        _terminate_workers(ex)
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    ex.shutdown(wait=True)


# ----------------------------------------------------------------------------------------------- assembly


def _assemble(out: Path, chunks, done: dict[int, dict], scan: Scan, config: PrepConfig, plan: dict) -> dict:
    kept: list[tuple[Item, str, int, int]] = []  # (item, shard, offset, length)
    skipped = [{"source": s, "reason": r} for s, r in scan.skipped]
    for k, chunk in enumerate(chunks):
        marker = done[k]
        for r in marker["rows"]:
            kept.append((chunk[r["i"]], marker["shard"], r["offset"], r["length"]))
        skipped.extend({"source": s["source"], "reason": s["reason"]} for s in marker["skipped"])
    skipped.sort(key=lambda s: (s["source"], s["reason"]))
    if not kept:
        reasons = "; ".join(f"{s['source']}: {s['reason']}" for s in skipped[:3])
        raise PrepError(f"{out}: none of the {sum(map(len, chunks))} files could be used ({reasons})")

    items = [k[0] for k in kept]
    splits = assign_splits(items, config.split_by, config.valid, config.test, config.seed)
    labels = {s: i for i, s in enumerate(sorted({it.speaker for it in items}))}

    rows = []
    per_split = {s: {"utterances": 0, "samples": 0, "speakers": set()} for s in ("train", "valid", "test")}
    n_padded = 0
    for (it, shard, offset, length), split in zip(kept, splits):
        padded = int(length < CROP_SAMPLES)
        n_padded += padded
        rows.append(
            {
                "utt_id": it.utt_id,
                "speaker": it.speaker,
                "sentence_id": it.sentence_id,
                "source": it.source,
                "shard": shard,
                "offset": offset,
                "length": length,
                "duration": round(length / SAMPLE_RATE, 4),
                "split": split,
                "padded": padded,
            }
        )
        d = per_split[split]
        d["utterances"] += 1
        d["samples"] += length
        d["speakers"].add(it.speaker)

    total_s = sum(d["samples"] for d in per_split.values()) / SAMPLE_RATE
    prep = {
        "format": FORMAT,
        "sample_rate": SAMPLE_RATE,
        "dtype": config.dtype,
        "crop_samples": CROP_SAMPLES,
        "storage": (
            "int16: round(x * 32768) clipped to [-32768, 32767]; read back as x / 32768"
            if config.dtype == "int16"
            else "float16"
        ),
        "corpus": scan.info,
        "config": plan["config"],
        "trim": {"enabled": config.trim, "top_db": config.trim_db, "frame": TRIM_FRAME, "hop": TRIM_HOP},
        "split": {
            "by": config.split_by,
            "rule": describe(config.split_by),
            "seed": config.seed,
            "valid": config.valid,
            "test": config.test,
            "n_preset": sum(1 for it in items if it.split),
            "check": _split_check(items, splits),
        },
        "chunk_files": config.chunk_files,
        "max_seconds": config.max_seconds,
        "counts": {
            "items": plan["n_items"],
            "utterances": len(rows),
            "speakers": len(labels),
            "seconds": round(total_s, 2),
            "hours": round(total_s / 3600, 4),
            "skipped": len(skipped),
            "padded": n_padded,
            "shards": len({r["shard"] for r in rows}),
            "splits": {
                s: {
                    "utterances": d["utterances"],
                    "speakers": len(d["speakers"]),
                    "seconds": round(d["samples"] / SAMPLE_RATE, 2),
                    "hours": round(d["samples"] / SAMPLE_RATE / 3600, 4),
                }
                for s, d in per_split.items()
            },
        },
        "n_padded": n_padded,
        "skipped": skipped,
        "versions": _versions(),
        "fingerprint": plan["fingerprint"],
    }

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    _write_bytes(out / "labels.json", _json_bytes(labels))
    _write_bytes(out / "prep.json", _json_bytes(prep))
    _write_bytes(out / "manifest.csv", buf.getvalue().encode("utf-8"))  # last: its presence = complete
    return prep


def _split_check(items: list[Item], splits: list[str]) -> dict:
    """How many sentence ids / transcript texts occur in more than one split (0 and 0 for the VCTK rule)."""
    by_sentence, by_text = defaultdict(set), defaultdict(set)
    for it, s in zip(items, splits):
        if it.sentence_id:
            by_sentence[it.sentence_id].add(s)
        if it.text:
            by_text[normalize_text(it.text)].add(s)
    return {
        "sentence_ids": len(by_sentence),
        "sentence_ids_in_several_splits": sum(1 for v in by_sentence.values() if len(v) > 1),
        "texts": len(by_text),
        "texts_in_several_splits": sum(1 for v in by_text.values() if len(v) > 1),
    }


def _versions() -> dict:
    import soundfile
    import soxr

    import speakerid

    return {
        "speakerid": speakerid.__version__,
        "numpy": np.__version__,
        "soundfile": soundfile.__version__,
        "libsndfile": soundfile.__libsndfile_version__,
        "soxr": soxr.__version__,
        "python": platform.python_version(),
    }


# ----------------------------------------------------------------------------------------------- files


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_bytes(path: Path, data: bytes) -> None:
    """Atomic write (:func:`speakerid.atomic.write_atomic`); an OSError becomes a PrepError naming the file."""
    try:
        write_atomic(path, data)
    except OSError as e:
        raise PrepError(f"{path}: cannot write ({e})") from e
