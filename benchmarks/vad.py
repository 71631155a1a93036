"""Speech detection on FSDD: accuracy of the shipped model on the test clips as recorded and padded with digital
silence / a -60 dBFS noise floor, and the detector's speed. Prints JSON lines.

    python benchmarks/vad.py [--data ../shared/data/fsdd/recordings] [--every 1] [--detector silero-vad|none]

``--detector none`` turns speech detection off (the behaviour before it existed). 2 shared CPU cores: the full
300 clips x 7 inputs x 2 modes take ~6 minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from speakerid import vad
from speakerid.audio import SAMPLE_RATE, load_audio
from speakerid.registry import bundled_path
from speakerid.runtime import Identifier, InferenceOptions, load_engine


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/fsdd/recordings")
    p.add_argument("--every", type=int, default=1, help="use every n-th test clip")
    p.add_argument("--detector", default="silero-vad", choices=["silero-vad", "none"])
    a = p.parse_args()
    torch.set_num_threads(1)
    files = sorted(f for f in Path(a.data).glob("*.wav") if int(f.stem.rsplit("_", 1)[1]) < 5)[:: a.every]
    engine = load_engine(None, device="cpu")
    fe = dataclasses.replace(engine.card.frontend, vad=dataclasses.replace(engine.vad, detector=a.detector))
    engine.card = engine.card.replace(frontend=fe)
    bundled = bundled_path(engine)
    idents = {m: Identifier(engine, bundled, InferenceOptions(mode=m)) for m in ("classes", "registry")}
    rng = np.random.default_rng(0)
    answers: dict[str, list[str]] = {}
    truth = []
    for f in files:
        truth.append(f.stem.split("_")[1])
        w = load_audio(f)
        inputs = {"plain": w}
        for s in (0.5, 2.0, 5.0):
            n = int(s * SAMPLE_RATE)
            z = np.zeros(n, np.float32)
            inputs[f"silence-{s:g}s"] = np.concatenate([z, w, z])
            noise = [(rng.standard_normal(n) * 10 ** (-60 / 20)).astype(np.float32) for _ in range(2)]
            inputs[f"noise60dB-{s:g}s"] = np.concatenate([noise[0], w, noise[1]])
        for name, x in inputs.items():
            for mode, ident in idents.items():
                try:
                    ans = ident.identify(x, name=f.name).speaker
                except ValueError:  # AudioError: no speech / too little
                    ans = "ERROR"
                answers.setdefault(f"{mode}/{name}", []).append(ans)
    for key, ans in answers.items():
        plain = answers[key.split("/")[0] + "/plain"]
        print(
            json.dumps(
                {
                    "detector": a.detector,
                    "mode": key.split("/")[0],
                    "input": key.split("/")[1],
                    "clips": len(ans),
                    "correct": sum(x == t for x, t in zip(ans, truth)),
                    "same_as_plain": sum(x == y for x, y in zip(ans, plain)),
                    "refused": ans.count("ERROR"),
                }
            )
        )
    if a.detector == "none":
        return
    waves = [load_audio(f) for f in files[:200]]
    vad.detect(waves[0])
    t, c = time.perf_counter(), time.process_time()
    for w in waves:
        vad.detect(w)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    audio = sum(len(w) for w in waves) / SAMPLE_RATE
    long = np.tile(np.concatenate(waves), 60)[: 60 * SAMPLE_RATE]
    t2, c2 = time.perf_counter(), time.process_time()
    vad.detect(long)
    wall2, cpu2 = time.perf_counter() - t2, time.process_time() - c2
    print(
        json.dumps(
            {
                "speed": "silero-vad, 1 torch thread",
                "short_clips": {
                    "n": len(waves),
                    "x_realtime": round(audio / wall, 1),
                    "x_per_cpu_s": round(audio / cpu, 1),
                },
                "one_60s_file": {"x_realtime": round(60 / wall2, 1), "x_per_cpu_s": round(60 / cpu2, 1)},
            }
        )
    )


if __name__ == "__main__":
    main()
