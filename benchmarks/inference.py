"""Inference speed: PyTorch eager vs ONNX Runtime CPU vs ONNX Runtime CUDA. Prints JSON lines.

    python benchmarks/inference.py                                     # Table-3 l0=3 GRU + MFCC GRU, CPU
    python benchmarks/inference.py --models dilated-gru-l0-3 --batch 1,64 --parallel 2
    python benchmarks/inference.py --checkpoint speakerid/pretrained/default/model.pt --fp16   # on a GPU
    python benchmarks/inference.py --identify 40                       # `speakerid identify` end to end

Each row: model, backend (torch-cpu, torch-cuda, ort-cpu, ort-cuda), batch (crops per call), clip length,
threads, parallel (calls in flight at once, each from its own thread: how ``speakerid identify`` uses CPU
cores), clips/s, realtime factor (seconds of audio per second), p50/p99 latency per call in ms, and the
process's CPU use (``cores_busy``, ``clips_per_cpu_s``: on a shared machine wall-clock numbers understate).
Backends that cannot run here are reported as ``{"skipped": reason}`` rows. Models are randomly initialised
presets unless ``--checkpoint`` is given (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `export/` is a top-level folder of the repo

from export import export_onnx  # noqa: E402
from speakerid.card import FrontEnd, ModelCard  # noqa: E402
from speakerid.checkpoint import save_checkpoint  # noqa: E402
from speakerid.models import build_model, preset  # noqa: E402

BACKENDS = ("torch-cpu", "ort-cpu", "ort-cuda", "torch-cuda")


def _runner(backend: str, ckpt: Path, onnx_path: Path, threads: int):
    """-> (run(x) callable, provider description) or raises RuntimeError(reason) when it cannot run here."""
    if backend.startswith("torch"):
        from speakerid.runtime import TorchEngine

        if backend == "torch-cuda" and not torch.cuda.is_available():
            raise RuntimeError("no CUDA device for PyTorch")
        if backend == "torch-cpu" and threads:
            torch.set_num_threads(threads)
        eng = TorchEngine(ckpt, device="cuda" if backend == "torch-cuda" else "cpu")
        if backend == "torch-cuda":

            def run(x):
                out = eng.run(x)
                torch.cuda.synchronize()
                return out

            return run, eng.provider
        return eng.run, eng.provider
    from speakerid.onnx_engine import OnnxEngine, cuda_status

    if backend == "ort-cuda":
        ok, why = cuda_status()
        if not ok:
            raise RuntimeError(why)
    eng = OnnxEngine(onnx_path, device="cuda" if backend == "ort-cuda" else "cpu", threads=threads)
    return eng.run, eng.provider


def bench(
    run, batch: int, n_samples: int, sample_rate: int, seconds: float, parallel: int, warmup: int = 2
) -> dict:
    x = (np.random.default_rng(0).standard_normal((batch, n_samples)) * 0.1).astype(np.float32)
    for _ in range(warmup):
        run(x)
    lat: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker():
        while time.perf_counter() < stop:
            t = time.perf_counter()
            run(x)
            dt = time.perf_counter() - t
            with lock:
                lat.append(dt)

    t0, c0 = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    clips = len(lat) * batch
    ms = np.array(lat) * 1000
    return {
        "calls": len(lat),
        "clips_per_s": round(clips / wall, 2),
        "realtime_x": round(clips * n_samples / sample_rate / wall, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        # CPU time of this process: on a shared machine, cores_busy < parallel shows the others' load, and
        # clips_per_cpu_s is what the model costs regardless of it.
        "cores_busy": round(cpu / wall, 2),
        "clips_per_cpu_s": round(clips / cpu, 2) if cpu > 0 else None,
    }


def make_audio(folder: Path, n_files: int, seconds: float, fsdd: Path) -> None:
    """``n_files`` WAVs of ``seconds`` each, FSDD recordings of one speaker joined (8 kHz 16-bit, as recorded).
    Without FSDD: a synthetic harmonic voice at 16 kHz."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    recs = sorted(fsdd.glob("*.wav")) if fsdd.is_dir() else []
    rng = np.random.default_rng(0)
    for i in range(n_files):
        if recs:
            spk = recs[i % len(recs)].stem.split("_")[1]
            mine = [r for r in recs if r.stem.split("_")[1] == spk]
            sr, parts, n = 8000, [], 0
            while n < seconds * sr:
                x, sr = sf.read(mine[rng.integers(len(mine))], dtype="float32")
                parts.append(x)
                n += len(x)
            x = np.concatenate(parts)[: int(seconds * sr)]
        else:
            sr = 16000
            t = np.arange(int(seconds * sr)) / sr
            f0 = 100 + 40 * i
            x = sum(np.sin(2 * np.pi * k * f0 * t) * 0.5**k for k in range(1, 8)).astype(np.float32) * 0.3
        sf.write(folder / f"clip_{i:03d}.wav", x, sr, subtype="PCM_16")


def bench_identify(onnx_path: Path, audio: Path, extra: list[str]) -> dict:
    """``speakerid identify`` over ``audio`` in a fresh process; the numbers from its summary line."""
    import re
    import subprocess

    out = audio.parent / "identify.csv"
    cmd = [
        sys.executable,
        "-m",
        "speakerid.identify",
        str(audio),
        "--model",
        str(onnx_path),
        "--format",
        "csv",
    ]
    cmd += ["--out", str(out), "--no-progress", *extra]
    r = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(
        r"(\d+) identified, (\d+) failed; ([\d.]+) s of audio in ([\d.]+) s, ([\d.]+)x realtime "
        r"\(([\d.]+) CPU-s, ([\d.]+) cores busy\)",
        r.stderr,
    )
    if r.returncode != 0 or not m:
        return {"error": r.stderr.strip()[-500:]}
    ok, bad, audio_s, wall, rt, cpu, busy = m.groups()
    return {
        "command": " ".join(["speakerid identify", "AUDIO", "--model", onnx_path.name, *cmd[6:8], *extra]),
        "files": int(ok),
        "failed": int(bad),
        "audio_s": float(audio_s),
        "wall_s": float(wall),
        "realtime_x": float(rt),
        "cpu_s": float(cpu),
        "cores_busy": float(busy),
        "realtime_per_cpu_s": round(float(audio_s) / float(cpu), 1) if float(cpu) else None,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="dilated-gru-l0-3,mfcc-gru-5x20", help="presets (comma-separated)")
    p.add_argument("--checkpoint", default=None, help="benchmark this checkpoint instead of presets")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--batch", default="1,64", help="crops per call (comma-separated)")
    p.add_argument("--samples", type=int, default=8192, help="samples per clip (default 8192 = 0.512 s)")
    p.add_argument("--time", type=float, default=3.0, help="seconds per measurement")
    p.add_argument("--threads", type=int, default=0, help="CPU threads per call (0 = library default)")
    p.add_argument("--parallel", default="1", help="calls in flight at once (comma-separated, e.g. 1,2)")
    p.add_argument("--fp16", action="store_true", help="also benchmark an fp16 ONNX export (CUDA rows)")
    p.add_argument(
        "--identify",
        type=int,
        default=0,
        metavar="N_FILES",
        help="instead: time `speakerid identify` end to end over N files of --identify-seconds of FSDD speech",
    )
    p.add_argument("--identify-seconds", type=float, default=30.0)
    p.add_argument("--identify-args", default="", help="extra identify options, e.g. '--threads 2'")
    p.add_argument("--fsdd", default=str(Path(__file__).resolve().parents[2] / "shared/data/fsdd/recordings"))
    args = p.parse_args(argv)
    host = {"host": platform.node(), "cpus": os.cpu_count(), "torch": torch.__version__}
    try:
        import onnxruntime as ort

        host["onnxruntime"] = ort.__version__
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.checkpoint:
            models = [(Path(args.checkpoint).stem, Path(args.checkpoint))]
        else:
            models = []
            for name in args.models.split(","):
                torch.manual_seed(0)
                m = build_model(preset(name, n_classes=6))
                ck = tmp / f"{name}.pt"
                labels = [f"s{i}" for i in range(6)]
                save_checkpoint(ck, m, ModelCard.build(m.config, labels, FrontEnd(crop=args.samples)))
                models.append((name, ck))
        if args.identify:
            audio = tmp / "audio"
            make_audio(audio, args.identify, args.identify_seconds, Path(args.fsdd))
            for name, ck in models:
                export_onnx(ck, tmp / f"{name}.onnx")
                row = {"model": name, "backend": "identify-onnx", "samples": args.samples}
                row |= bench_identify(tmp / f"{name}.onnx", audio, args.identify_args.split())
                print(json.dumps(row | host), flush=True)
            return
        for name, ck in models:
            variants = [(False, tmp / f"{name}.onnx")] + (
                [(True, tmp / f"{name}-fp16.onnx")] if args.fp16 else []
            )
            for fp16, onnx_path in variants:
                side = export_onnx(ck, onnx_path, fp16=fp16)
                sr = side["card"]["model"]["sample_rate"]
                for backend in args.backends.split(","):
                    if fp16 and not backend.startswith("ort"):
                        continue
                    base = {
                        "model": name,
                        "backend": backend,
                        "fp16": fp16,
                        "samples": args.samples,
                        "clip_s": round(args.samples / sr, 3),
                    }
                    try:
                        run, provider = _runner(backend, ck, onnx_path, args.threads)
                    except RuntimeError as e:
                        print(json.dumps(base | {"skipped": str(e)}), flush=True)
                        continue
                    for batch in [int(b) for b in args.batch.split(",")]:
                        for par in [int(x) for x in args.parallel.split(",")]:
                            row = base | {
                                "provider": provider,
                                "batch": batch,
                                "threads": args.threads,
                                "parallel": par,
                            }
                            row |= bench(run, batch, args.samples, sr, args.time, par)
                            print(json.dumps(row | host), flush=True)


if __name__ == "__main__":
    main()
