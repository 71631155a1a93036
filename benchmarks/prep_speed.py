"""data_prep speed: realtime factor per core on a generated VCTK 0.92 tree (48 kHz FLAC). Prints JSON lines.

    python benchmarks/prep_speed.py                         # 30 min of audio, workers 1 and all cores
    python benchmarks/prep_speed.py --minutes 60 --workers 1,2,4 --trim both
    python benchmarks/prep_speed.py --tree /tmp/vctk-synth  # keep (or reuse) the generated tree

It times ``data_prep.prepare`` (scan + decode + mono + 48->16 kHz soxr HQ + optional trim + int16 shards +
manifest), the same call ``python -m data_prep vctk`` makes, excluding interpreter start-up. Reported:

- ``realtime``: seconds of audio per wall-clock second;
- ``realtime_per_core``: that divided by the number of worker processes;
- ``realtime_per_cpu_s``: seconds of audio per CPU-second spent (parent + workers), which stays meaningful on a
  machine shared with other jobs.

Target (issue 4): >= 300x realtime per core, i.e. VCTK (44 h) in under 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import soundfile as sf

from data_prep import prepare, synth, vctk


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def make_tree(root: Path, minutes: float, speakers: int, seed: int) -> None:
    lo, hi = (
        1.5,
        5.0,
    )  # seconds of speech per file (VCTK averages about 3 s), plus 0.01-0.05 s silence each end
    per_speaker = math.ceil(minutes * 60 / (speakers * (lo + hi) / 2) * 1.05)
    synth.make_vctk_tree(root, "0.92", speakers, per_speaker, (lo, hi), seed=seed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0, help="audio in the generated tree (default 30)")
    p.add_argument("--speakers", type=int, default=20)
    p.add_argument("--workers", default=f"1,{os.cpu_count() or 1}", help="comma-separated worker counts")
    p.add_argument("--trim", choices=("off", "on", "both"), default="off", help="silence trimming")
    p.add_argument(
        "--chunk-files", type=int, default=32, help="files per shard (VCTK at 256 has ~170 chunks)"
    )
    p.add_argument("--tree", default=None, help="generate into (or reuse) this folder instead of a temp dir")
    p.add_argument("--repeat", type=int, default=1, help="runs per setting; the fastest is reported")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="prep_speed_"))
    try:
        tree = Path(args.tree) if args.tree else tmp / "VCTK-Corpus-0.92"
        if not (tree / "wav48_silence_trimmed").is_dir():
            t0 = time.perf_counter()
            make_tree(tree, args.minutes, args.speakers, seed=0)
            print(
                json.dumps(
                    {"event": "generated", "tree": str(tree), "seconds": round(time.perf_counter() - t0, 1)}
                )
            )
        n_cores = os.cpu_count() or 1
        scan = vctk.scan(tree)
        audio_s = 0.0
        for it in scan.items:  # header only, no decoding
            info = sf.info(it.path)
            audio_s += info.frames / info.samplerate
        trims = {"off": [False], "on": [True], "both": [False, True]}[args.trim]
        for trim in trims:
            for workers in (int(w) for w in args.workers.split(",")):
                best = None
                for _ in range(args.repeat):
                    out = tmp / "out"
                    shutil.rmtree(out, ignore_errors=True)
                    c0, t0 = cpu_seconds(), time.perf_counter()
                    res = prepare(
                        vctk.scan(tree),
                        out,
                        split_by="sentence",
                        trim=trim,
                        chunk_files=args.chunk_files,
                        workers=workers,
                    )
                    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
                    if best is None or wall < best[0]:
                        best = (wall, cpu, res)
                wall, cpu, res = best
                print(
                    json.dumps(
                        {
                            "bench": "prep_speed",
                            "layout": "vctk-0.92 FLAC 48 kHz 16-bit mono",
                            "files": res.counts["utterances"],
                            "audio_min": round(audio_s / 60, 2),
                            "trim": trim,
                            "workers": workers,
                            "wall_s": round(wall, 3),
                            "cpu_s": round(cpu, 3),
                            "realtime": round(audio_s / wall, 1),
                            "realtime_per_core": round(audio_s / wall / workers, 1),
                            "realtime_per_cpu_s": round(audio_s / cpu, 1),
                            "vctk_44h_minutes_at_this_rate": round(44 * 3600 / (audio_s / wall) / 60, 2),
                            "cores": n_cores,
                            "cpu": platform.processor() or platform.machine(),
                        }
                    ),
                    flush=True,
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
