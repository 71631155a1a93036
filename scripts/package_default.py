"""Package a trained checkpoint as the shipped default model (speakerid/pretrained/default/).

    python scripts/package_default.py --checkpoint runs/fsdd-default/best.pt --data data/fsdd \
        --samples-from /path/to/fsdd/recordings

Writes model.pt (weights + model card: config, label map, front-end, calibration; no optimizer state),
registry.json (the training speakers enrolled from their train-split utterances, so "unknown" works out of the
box), samples/ (two test-split recordings per speaker, never seen in training) and README.md (data licence and
attribution).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from speakerid.checkpoint import (
    checkpoint_card,
    load_checkpoint,
    make_checkpoint,
    model_from_checkpoint,
    save_atomic,
)
from speakerid.data import FixedCropDataset, PreparedDataset
from speakerid.evaluation import predict_crops
from speakerid.registry import SpeakerRegistry

OUT = Path(__file__).resolve().parents[1] / "speakerid" / "pretrained" / "default"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="the prepared dataset the model was trained on")
    p.add_argument("--samples-from", required=True, help="folder of the original FSDD recordings")
    p.add_argument("--name", default="fsdd-default: streaming MFCC + dilated GRU (4 x 64, dilations 1-8)")
    p.add_argument("--per-speaker", type=int, default=50, help="train utterances per speaker in the registry")
    a = p.parse_args()
    ck = load_checkpoint(a.checkpoint)
    keep = ("train_config", "metrics", "n_parameters", "versions", "epoch", "step")  # no optimizer state
    card = checkpoint_card(ck, a.checkpoint)
    card = card.replace(model=dataclasses.replace(card.model, name=a.name))
    slim = make_checkpoint(ck["model"], card, **{k: ck[k] for k in keep if k in ck})
    OUT.mkdir(parents=True, exist_ok=True)
    save_atomic(slim, OUT / "model.pt")

    model = model_from_checkpoint(slim)
    data = PreparedDataset(a.data)
    rng = np.random.default_rng(0)
    reg = SpeakerRegistry(checkpoint_card(slim))
    for name in data.speakers:
        idx = [i for i in data.split("train") if data.utterances[i].speaker == name]
        idx = sorted(rng.choice(idx, min(a.per_speaker, len(idx)), replace=False).tolist())
        ds = FixedCropDataset(data, idx, card.frontend.crop, max_crops=4)
        _, emb, _, pos = predict_crops(model, ds)
        utt = torch.zeros(len(idx), emb.shape[1]).index_add_(0, pos, emb)
        reg.add(name, torch.nn.functional.normalize(utt, dim=1).numpy())
    reg.save(OUT / "registry.json")

    # Samples: per speaker, the first two test-split recordings (indices 0-4, never trained on) in sorted order
    # that the model identifies correctly as decoded, quieter, louder and re-quantised to int16.
    from speakerid.audio import load_audio
    from speakerid.runtime import Identifier, InferenceOptions, load_engine

    engine = load_engine(OUT / "model.pt")
    judges = [Identifier(engine, reg, InferenceOptions(mode=m)) for m in ("registry", "classes")]
    samples = OUT / "samples"
    shutil.rmtree(samples, ignore_errors=True)
    samples.mkdir()
    src = Path(a.samples_from)
    for name in data.speakers:
        picked = 0
        for f in sorted(src.glob(f"*_{name}_[0-4].wav")):
            w = load_audio(f)
            q = (np.round(w * 32768).clip(-32768, 32767) / 32768).astype(np.float32)
            if all(j.identify(x).speaker == name for j in judges for x in (w, w * 0.25, w * 1.9, q)):
                picked += 1
                shutil.copy(f, samples / f"{name}_{picked}.wav")
                (samples / f"{name}_{picked}.wav").chmod(0o644)
            if picked == 2:
                break
    print(
        json.dumps(
            {
                "model": str(OUT / "model.pt"),
                "bytes": (OUT / "model.pt").stat().st_size,
                "registry_speakers": reg.names,
                "samples": sorted(p.name for p in samples.iterdir()),
            }
        )
    )


if __name__ == "__main__":
    main()
