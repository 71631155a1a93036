"""Streaming identification: meetings of real clips, offline-vs-streaming accuracy, cost per chunk. JSON lines.

    python benchmarks/stream.py [--checkpoint PT] [--corpus fsdd|ravdess] [--meetings 10] [--chunk-s 0.1]

A *meeting* concatenates test clips of 3-6 speakers in turns of 1-3 clips, with 0.3-0.8 s gaps of a -80 dBFS
noise floor between clips, and is streamed through ``StreamingIdentifier`` (chunks of ``--chunk-s``):

* ``speech_acc``: fraction of the truth speech time (Silero VAD spans of each clip, found offline per clip)
  covered by a predicted segment naming the right speaker ("unknown" and no-speech count as wrong);
* change points: the truth is the first speech of each turn whose speaker differs from the previous turn's;
  a predicted change is the start of a speech segment whose speaker differs from the previous speech
  segment's. A truth change is found when a predicted change lies within ``--tolerance`` (0.3 s), each used once.

``clips`` rows: closed-set accuracy on every test clip (FSDD: recordings 0-4; RAVDESS: statement 02) of the
same causal model run offline on the whole clip (``model(clip)``) and streamed alone (the speaker of the
timeline's longest speech), plus the shipped pipeline (speech detection + crops vote) for reference.
``cost`` rows: compute per chunk on 1 CPU thread (PyTorch and the ONNX streaming step in ONNX Runtime), the ratio
to real time, the state size and the first-output latency (one chunk of audio + its compute).

Corpora: FSDD (CC BY-SA 4.0) for the shipped model; ravdess-dev (CC BY-NC-SA 4.0, Livingstone & Russo 2018)
only with a model trained on its statement-01 clips, for measurement (never shipped).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from speakerid import vad
from speakerid.audio import SAMPLE_RATE, load_audio
from speakerid.checkpoint import checkpoint_card, load_checkpoint, model_from_checkpoint
from speakerid.registry import SpeakerRegistry
from speakerid.runtime import default_model_path
from speakerid.streaming import StreamingIdentifier, StreamSettings, TorchStep

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_clips(corpus: str, root: Path) -> list[tuple[Path, str]]:
    if corpus == "fsdd":
        files = sorted((root / "fsdd" / "recordings").glob("*.wav"))
        return [(f, f.stem.split("_")[1]) for f in files if int(f.stem.rsplit("_", 1)[1]) < 5]
    files = sorted((root / "ravdess-dev").glob("Actor_*/03-01-*-*-02-01-*.flac"))
    return [(f, f.stem.rsplit("-", 1)[1]) for f in files]


def make_meeting(by_speaker: dict, rng, n_turns: int):
    """-> (audio (T,), [(start_s, end_s, speaker, turn)] speech spans of each clip, turn starts)."""
    names = sorted(by_speaker)
    chosen = list(rng.choice(names, size=int(rng.integers(3, min(6, len(names)) + 1)), replace=False))
    parts, spans, t, prev = [], [], 0, None
    for turn in range(n_turns):
        who = str(rng.choice([c for c in chosen if c != prev]))
        prev = who
        for _ in range(int(rng.integers(1, 4))):
            gap = int(rng.uniform(0.3, 0.8) * SAMPLE_RATE)
            parts.append((10 ** (-80 / 20) * rng.standard_normal(gap)).astype(np.float32))
            t += gap
            wave, regions = by_speaker[who][int(rng.integers(len(by_speaker[who])))]
            for a, b in regions:
                spans.append(((t + a) / SAMPLE_RATE, (t + b) / SAMPLE_RATE, who, turn))
            parts.append(wave)
            t += len(wave)
    parts.append(np.zeros(int(0.5 * SAMPLE_RATE), np.float32))
    return np.concatenate(parts), spans


def score_meeting(segments, spans, tolerance: float) -> dict:
    total = right = 0.0
    for a, b, who, _ in spans:
        total += b - a
        for s in segments:
            if s.speaker == who:
                right += max(0.0, min(b, s.end) - max(a, s.start))
    truth, last_turn, last_who = [], None, None
    for a, _, who, turn in spans:
        if turn != last_turn:
            if last_who is not None and who != last_who:
                truth.append(a)
            last_turn, last_who = turn, who
    pred, last = [], None
    for s in segments:
        if s.speaker is None:
            continue
        if last is not None and s.speaker != last:
            pred.append(s.start)
        last = s.speaker
    used, errors = set(), []
    for c in truth:
        best = (
            min((abs(p - c), i) for i, p in enumerate(pred) if i not in used)
            if len(used) < len(pred)
            else None
        )
        if best is not None and best[0] <= tolerance:
            used.add(best[1])
            errors.append(best[0])
    return {
        "speech_s": round(total, 3),
        "speech_acc": right / total,
        "changes": len(truth),
        "changes_found": len(errors),
        "predicted_changes": len(pred),
        "change_error_s": errors,
    }


def timeline(step, labels, registry, settings, audio):
    eng = StreamingIdentifier(step, labels, registry, settings)
    eng.feed(audio)
    eng.flush()
    return eng.segments


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="causal checkpoint (default: the shipped model)")
    p.add_argument(
        "--registry", default="auto", help="registry JSON for registry mode (auto: the bundled one)"
    )
    p.add_argument("--corpus", default="fsdd", choices=["fsdd", "ravdess"])
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--meetings", type=int, default=10)
    p.add_argument("--turns", type=int, default=12)
    p.add_argument("--chunk-s", type=float, default=0.1)
    p.add_argument("--tolerance", type=float, default=0.3)
    p.add_argument("--cost-chunks", type=int, default=300)
    p.add_argument("--skip", nargs="*", default=[], choices=["meetings", "clips", "cost"])
    a = p.parse_args()
    torch.set_num_threads(1)
    path = Path(a.checkpoint) if a.checkpoint else default_model_path()
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt)
    labels = list(checkpoint_card(ckpt).labels)
    settings = StreamSettings(chunk_s=a.chunk_s)
    registry = None
    if a.registry == "auto" and not a.checkpoint:
        registry = SpeakerRegistry.load(path.parent / "registry.json")
    elif a.registry not in ("auto", "none"):
        registry = SpeakerRegistry.load(a.registry)
    modes = {"classes": None, **({"registry": registry} if registry is not None else {})}
    info = {"checkpoint": str(path), "corpus": a.corpus, "chunk_s": a.chunk_s, "threads": 1}

    clips = test_clips(a.corpus, Path(a.data))
    waves = {f: load_audio(f) for f, _ in clips}
    if "meetings" not in a.skip:
        by_speaker: dict[str, list] = {}
        for f, who in clips:
            regions = vad.detect(waves[f]).spans or [(0, len(waves[f]))]
            by_speaker.setdefault(who, []).append((waves[f], regions))
        rng = np.random.default_rng(0)
        results: dict[str, list] = {m: [] for m in modes}
        for i in range(a.meetings):
            audio, spans = make_meeting(by_speaker, rng, a.turns)
            for mode, reg in modes.items():
                segs = timeline(TorchStep(model, a.chunk_s), labels, reg, settings, audio)
                r = score_meeting(segs, spans, a.tolerance)
                results[mode].append(r)
                print(json.dumps({"kind": "meeting", "mode": mode, "meeting": i, **info, **r}), flush=True)
        for mode, rs in results.items():
            speech = sum(r["speech_s"] for r in rs)
            errs = [e for r in rs for e in r["change_error_s"]]
            summary = {
                "kind": "meetings",
                "mode": mode,
                **info,
                "meetings": len(rs),
                "speech_s": round(speech, 2),
                "speech_acc": round(sum(r["speech_acc"] * r["speech_s"] for r in rs) / speech, 4),
                "change_recall": round(
                    sum(r["changes_found"] for r in rs) / sum(r["changes"] for r in rs), 4
                ),
                "change_precision": round(
                    sum(r["changes_found"] for r in rs) / max(1, sum(r["predicted_changes"] for r in rs)), 4
                ),
                "change_error_median_s": round(float(np.median(errs)), 3) if errs else None,
                "change_error_max_s": round(float(np.max(errs)), 3) if errs else None,
            }
            print(json.dumps(summary), flush=True)

    if "clips" not in a.skip:
        offline = stream = 0
        for f, who in clips:
            with torch.inference_mode():
                logits = model(torch.from_numpy(waves[f])[None])[0]
            offline += labels[int(logits.argmax())] == who
            segs = [
                s
                for s in timeline(TorchStep(model, a.chunk_s), labels, None, settings, waves[f])
                if s.speaker
            ]
            best = max(segs, key=lambda s: s.end - s.start).speaker if segs else None
            stream += best == who
        row = {"kind": "clips", **info, "clips": len(clips)}
        row |= {"offline_acc": round(offline / len(clips), 4), "stream_acc": round(stream / len(clips), 4)}
        row["gap_points"] = round(100 * (row["offline_acc"] - row["stream_acc"]), 2)
        print(json.dumps(row), flush=True)

    if "cost" not in a.skip:
        rng = np.random.default_rng(1)
        audio = np.concatenate([waves[f] for f, _ in clips[:40]])
        steps = {"torch": TorchStep(model, a.chunk_s)}
        tmp = tempfile.TemporaryDirectory()
        try:
            from export.stream_export import OnnxStep, export_stream

            export_stream(ckpt, Path(tmp.name) / "step.onnx", chunk_s=a.chunk_s)
            steps["onnx"] = OnnxStep(Path(tmp.name) / "step.onnx", threads=1)
        except ImportError as e:  # onnx / onnxruntime not installed
            print(json.dumps({"kind": "cost", "engine": "onnx", "skipped": str(e)}))
        for name, step in steps.items():
            n = step.chunk
            chunks = [audio[i : i + n] for i in range(0, len(audio) - n, n)][: a.cost_chunks]
            step.step(chunks[0])  # warm-up
            step.reset()
            times = []
            for c in chunks:
                t0 = time.perf_counter()
                step.step(c)
                times.append(time.perf_counter() - t0)
            ms = np.array(times) * 1000
            chunk_ms = 1000 * n / SAMPLE_RATE
            print(
                json.dumps(
                    {
                        "kind": "cost",
                        "engine": name,
                        **info,
                        "chunk_samples": n,
                        "chunks": len(times),
                        "ms_per_chunk_median": round(float(np.median(ms)), 3),
                        "ms_per_chunk_p95": round(float(np.percentile(ms, 95)), 3),
                        "ms_per_100ms_audio": round(float(np.median(ms)) * 100 / chunk_ms, 3),
                        "realtime_ratio": round(float(np.median(ms)) / chunk_ms, 4),
                        "state_bytes": step.state_bytes,
                        "first_output_s": round((n / SAMPLE_RATE) + float(ms[0]) / 1000, 4),
                    }
                ),
                flush=True,
            )
        tmp.cleanup()
        del rng


if __name__ == "__main__":
    main()
