"""Open-set enrollment on ravdess-dev: enroll actors from k statement-01 clips, identify their statement-02 clips.

    python benchmarks/enroll.py [--protocols shipped cv] [--k 1 3 5] [--candidate NAME=CHECKPOINT ...]

Protocols (ravdess-dev's README; one JSON row per (system, protocol, k) in docs/results/enroll.jsonl):
- ``shipped``: the shipped model (and each ``--candidate`` checkpoint) enrolls each of the 12 actors from k
  statement-01 clips; every statement-02 clip is identified among the 12.
- ``cv``: speaker-disjoint 3-fold cross-validation: the open-set embedding recipe (``train.py --config embed``)
  is trained on 8 actors (all their clips), then the other 4 are enrolled from k statement-01 clips and their
  statement-02 clips identified among those 4. Counts and scores are pooled over the folds.

Each protocol also runs the open encoder Resemblyzer (GE2E d-vectors, Apache-2.0; ``pip install --no-deps
resemblyzer webrtcvad-wheels``) on the same clips and draws, as a comparison only; it is skipped with the
reason in the output when it is not installed. A clip our speech detection rejects (too little speech) is left
out for both systems and reported on stderr.

Enrollment sets: the k clips are drawn at random from the actor's 15 statement-01 clips, ``--draws`` times
(seeded); top-1 is averaged over the draws and the EER is computed on the pooled genuine (own centroid) and
impostor (other centroids) cosine scores. Our embeddings go through the same path as ``speakerid enroll``
(decode, speech detection, fixed crops, mean of unit embeddings).

ravdess-dev is CC BY-NC-SA 4.0: the fold models live under runs/ (git-ignored) and are never shipped. Training
is resumable (rerun the same command); a fold that finished is not retrained.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from speakerid import config
from speakerid.atomic import write_atomic
from speakerid.audio import AudioError
from speakerid.evaluation import equal_error_rate

NAME = re.compile(r"^03-01-\d\d-\d\d-(?P<statement>\d\d)-\d\d-(?P<actor>\d\d)\.flac$")
PREP_REGEX = r"^03-01-\d\d-\d\d-(?P<sentence>\d\d)-\d\d-(?P<speaker>\d\d)\.flac$"
ENCODER = "resemblyzer-0.1.4"


def list_clips(root: Path) -> dict[str, dict[str, list[Path]]]:
    """{actor: {"01": [statement-01 clips], "02": [...]}} from a ravdess-dev folder."""
    out: dict[str, dict[str, list[Path]]] = {}
    for f in sorted(root.glob("Actor_*/*.flac")):
        m = NAME.match(f.name)
        if m:
            out.setdefault(m["actor"], {"01": [], "02": []})[m["statement"]].append(f)
    if not out:
        raise FileNotFoundError(f"{root}: no ravdess-dev clips (Actor_NN/03-01-*.flac)")
    return out


# --------------------------------------------------------------------------------------------------------------
# embedders: path -> unit embedding (D,)


def speakerid_embedder(checkpoint: str | os.PathLike | None):
    from speakerid.runtime import clip_embedding, load_engine

    engine = load_engine(checkpoint, device="cpu")
    return lambda path: clip_embedding(engine, path)


def resemblyzer_embedder():
    """(embedder, None) or (None, reason it is unavailable)."""
    try:
        from resemblyzer import VoiceEncoder, preprocess_wav
    except ImportError as e:
        return None, f"resemblyzer not installed ({e}); pip install --no-deps resemblyzer webrtcvad-wheels"
    enc = VoiceEncoder("cpu", verbose=False)
    return (lambda path: enc.embed_utterance(preprocess_wav(path)).astype(np.float32)), None


def embed_all(embed, paths: list[Path]) -> dict[Path, np.ndarray]:
    out = {}
    for p in paths:
        try:
            out[p] = embed(p)
        except AudioError as e:  # reported, never fatal: one bad clip must not lose the others
            print(f"skipped {e}", file=sys.stderr)
    return out


# --------------------------------------------------------------------------------------------------------------
# scoring


def score(
    emb: dict[Path, np.ndarray],
    clips: dict[str, dict[str, list[Path]]],
    actors: list[str],
    k: int,
    draws: int,
    seed: int = 0,
) -> dict:
    """Enroll ``actors`` from k statement-01 clips (``draws`` seeded draws), identify their statement-02 clips.

    Returns counts and scores to pool: {"correct", "n", "genuine", "impostor"} summed over the draws."""
    rng = np.random.default_rng((seed, k))
    tests = [(a, p) for a in actors for p in clips[a]["02"] if p in emb]
    X = np.stack([emb[p] for _, p in tests])  # (N, D)
    y = np.array([actors.index(a) for a, _ in tests])
    correct, n, genuine, impostor = 0, 0, [], []
    for _ in range(draws):
        cent = []
        for a in actors:
            pool = [p for p in clips[a]["01"] if p in emb]
            pick = rng.choice(len(pool), size=min(k, len(pool)), replace=False)
            c = np.mean([emb[pool[i]] for i in pick], axis=0)
            cent.append(c / (np.linalg.norm(c) + 1e-12))
        S = X @ np.stack(cent).T  # (N, A) cosine scores
        correct += int((S.argmax(1) == y).sum())
        n += len(y)
        own = np.eye(len(actors), dtype=bool)[y]
        genuine.append(S[own])
        impostor.append(S[~own])
    return {"correct": correct, "n": n, "genuine": genuine, "impostor": impostor}


def summarise(parts: list[dict]) -> dict:
    g = np.concatenate([x for p in parts for x in p["genuine"]])
    i = np.concatenate([x for p in parts for x in p["impostor"]])
    correct, n = sum(p["correct"] for p in parts), sum(p["n"] for p in parts)
    eer, _ = equal_error_rate(g, i)
    return {"top1": round(correct / n, 4), "eer": round(eer, 4), "n_trials": n}


# --------------------------------------------------------------------------------------------------------------
# cv: fold datasets are views of one prepared ravdess-dev (same shards, a filtered manifest)


def prepare(root: Path, out: Path) -> Path:
    if not (out / "manifest.csv").is_file():
        from data_prep.__main__ import main as prep_main

        # Speech only (RAVDESS has ~1 s of silence around each sentence), 10 % of each actor's clips validate.
        argv = ["folder", "--root", str(root), "--out", str(out), "--speaker-regex", PREP_REGEX]
        prep_main([*argv, "--split-by", "file", "--valid", "0.1", "--test", "0", "--trim", "--workers", "1"])
    return out


def fold_view(prepared: Path, keep: list[str], out: Path) -> Path:
    """A prepared dataset of the ``keep`` speakers only, sharing ``prepared``'s shards (symlink)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(prepared / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["speaker"] in keep]
    with open(out / "manifest.csv.tmp", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(out / "manifest.csv.tmp", out / "manifest.csv")
    write_atomic(out / "labels.json", json.dumps({s: i for i, s in enumerate(sorted(keep))}, indent=1))
    shutil.copyfile(prepared / "prep.json", out / "prep.json")
    if not (out / "shards").exists():
        os.symlink((prepared / "shards").resolve(), out / "shards")
    return out


def train_fold(data: Path, run: Path, overrides: dict) -> Path:
    from speakerid.training import get_config, train

    cfg = dataclasses.replace(get_config("embed"), data=str(data), out=str(run), name=run.name)
    cfg = config.override(cfg, overrides)  # unknown keys and wrong types are refused (speakerid.config)
    if not (run / "summary.json").is_file():
        train(cfg, resume=True, progress=False)
    return run / "last.pt"  # the end of the schedule (validation is 8 actors' own clips, not strangers)


# --------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/ravdess-dev", help="ravdess-dev folder (Actor_NN/)")
    p.add_argument("--protocols", nargs="+", default=["shipped", "cv"], choices=["shipped", "cv"])
    p.add_argument("--k", nargs="+", type=int, default=[1, 3, 5])
    p.add_argument("--draws", type=int, default=10, help="random enrollment sets per k")
    p.add_argument(
        "--model", default=None, help="the shipped checkpoint (default: speakerid's bundled model)"
    )
    p.add_argument("--candidate", action="append", default=[], help="NAME=CHECKPOINT, also run on `shipped`")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--work", default="runs/enroll-cv", help="prepared data + fold runs (git-ignored)")
    p.add_argument("--epochs", type=int, default=0, help="override the embed recipe's epochs (0 = keep)")
    p.add_argument("--set", nargs="*", default=[], help="more recipe overrides KEY=VALUE (JSON values)")
    p.add_argument("--name", default="speakerid", help="system name of the cv rows (for recipe variants)")
    p.add_argument("--no-encoder", action="store_true", help="skip Resemblyzer")
    p.add_argument("--out", default="docs/results/enroll.jsonl")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    root = Path(a.data)
    if not root.is_dir():
        raise SystemExit(f"{root}: ravdess-dev not found (see ../shared/data/ravdess-dev/README.md)")
    clips = list_clips(root)
    actors = sorted(clips)
    paths = [p for a_ in actors for s in ("01", "02") for p in clips[a_][s]]
    overrides = {kv.split("=", 1)[0]: json.loads(kv.split("=", 1)[1]) for kv in a.set}
    if a.epochs:
        overrides["epochs"] = a.epochs
    try:  # check the recipe overrides before any work
        from speakerid.training import get_config

        config.override(get_config("embed"), overrides)
    except ValueError as e:
        p.error(f"--set: {e}")
    meta = {
        "host": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), torch {torch.__version__}, 1 thread",
        "draws": a.draws,
        "date": time.strftime("%Y-%m-%d"),
    }
    encoder, why = (None, "--no-encoder") if a.no_encoder else resemblyzer_embedder()
    if encoder is None:
        print(f"{ENCODER}: skipped: {why}", file=sys.stderr)
    enc_emb = embed_all(encoder, paths) if encoder else None

    rows: list[dict] = []

    def emit(system: str, protocol: str, k: int, parts: list[dict], **extra) -> None:
        row = {"system": system, "protocol": protocol, "k": k, **summarise(parts), **extra, **meta}
        rows.append(row)
        print(json.dumps(row), flush=True)

    if "shipped" in a.protocols:
        systems = [("speakerid", a.model)] + [tuple(c.split("=", 1)) for c in a.candidate]
        kept = set(paths)
        for name, ckpt in systems:
            emb = embed_all(speakerid_embedder(ckpt), paths)
            kept &= set(emb)
            for k in a.k:
                emit(
                    name, "shipped", k, [score(emb, clips, actors, k, a.draws)], model=str(ckpt or "default")
                )
        if enc_emb is not None:  # on the clips our speech detection kept, so the trials are the same
            enc_kept = {p: e for p, e in enc_emb.items() if p in kept}
            for k in a.k:
                emit(ENCODER, "shipped", k, [score(enc_kept, clips, actors, k, a.draws)])

    if "cv" in a.protocols:
        work = Path(a.work)
        prepared = prepare(root, work / "prepared")
        ours: dict[int, list[dict]] = {k: [] for k in a.k}
        theirs: dict[int, list[dict]] = {k: [] for k in a.k}
        size = len(actors) // a.folds
        for f in range(a.folds):
            test = actors[f * size : (f + 1) * size]
            train_actors = [x for x in actors if x not in test]
            data = fold_view(prepared, train_actors, work / f"fold{f}" / "data")
            t0 = time.time()
            ckpt = train_fold(data, work / f"fold{f}" / "run", overrides)
            print(f"fold {f}: test actors {test}, model {ckpt} ({time.time() - t0:.0f} s)", file=sys.stderr)
            fold_paths = [p for x in test for s in ("01", "02") for p in clips[x][s]]
            emb = embed_all(speakerid_embedder(ckpt), fold_paths)
            for k in a.k:
                ours[k].append(score(emb, clips, test, k, a.draws, seed=f))
                if enc_emb is not None:
                    enc_kept = {p: e for p, e in enc_emb.items() if p in emb}  # the same clips
                    theirs[k].append(score(enc_kept, clips, test, k, a.draws, seed=f))
        recipe = {"config": "embed", **overrides}
        for k in a.k:
            emit(a.name, "cv", k, ours[k], folds=a.folds, recipe=recipe)
            if enc_emb is not None:
                emit(ENCODER, "cv", k, theirs[k], folds=a.folds)

    out = Path(a.out)
    keep = []
    if out.is_file():  # replace only the (system, protocol, k) rows this run measured
        done = {(r["system"], r["protocol"], r["k"]) for r in rows}
        for line in out.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            if (r["system"], r["protocol"], r["k"]) not in done:
                keep.append(r)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, "".join(json.dumps(r) + "\n" for r in keep + rows))
    write_atomic(out.with_suffix(".md"), table(keep + rows))
    return 0


def table(rows: list[dict]) -> str:
    """The rows as a markdown table: one line per (protocol, system), top-1 / EER per k."""
    ks = sorted({r["k"] for r in rows})
    head = "| protocol | system | " + " | ".join(f"k={k} top-1 / EER" for k in ks) + " |\n"
    head += "|---|---|" + "---|" * len(ks) + "\n"
    lines = []
    for key in dict.fromkeys((r["protocol"], r["system"]) for r in rows):
        by_k = {r["k"]: r for r in rows if (r["protocol"], r["system"]) == key}
        cells = [
            f"{100 * by_k[k]['top1']:.1f} % / {100 * by_k[k]['eer']:.1f} %" if k in by_k else "–" for k in ks
        ]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |\n")
    return head + "".join(lines)


if __name__ == "__main__":
    sys.exit(main())
