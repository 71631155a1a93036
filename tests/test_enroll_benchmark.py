"""benchmarks/enroll.py: clip listing, enrollment scoring (top-1, pooled EER) and the speaker-disjoint fold views
(the full protocols train models and run in the benchmark, not here)."""

import sys
from pathlib import Path

import numpy as np
import pytest
from _synth import make_prepared

from speakerid.data import PreparedDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import enroll  # noqa: E402


def _layout(root: Path, actors=("01", "02", "03"), per=4) -> dict:
    for a in actors:
        d = root / f"Actor_{a}"
        d.mkdir(parents=True)
        for s in ("01", "02"):
            for e in range(1, per + 1):
                (d / f"03-01-{e:02d}-01-{s}-01-{a}.flac").touch()
        (d / "notes.txt").touch()  # not a clip
    return enroll.list_clips(root)


def test_list_clips_groups_by_actor_and_statement(tmp_path):
    clips = _layout(tmp_path)
    assert sorted(clips) == ["01", "02", "03"]
    assert [len(clips["02"][s]) for s in ("01", "02")] == [4, 4]
    assert all("-02-01-02.flac" in p.name for p in clips["02"]["02"])
    with pytest.raises(FileNotFoundError, match="no ravdess-dev clips"):
        enroll.list_clips(tmp_path / "Actor_01")


def _embeddings(clips, noise, seed=0):
    rng = np.random.default_rng(seed)
    centres = {a: np.eye(8)[i] for i, a in enumerate(sorted(clips))}
    out = {}
    for a, by in clips.items():
        for p in by["01"] + by["02"]:
            e = centres[a] + noise * rng.standard_normal(8)
            out[p] = (e / np.linalg.norm(e)).astype(np.float32)
    return out


def test_separable_speakers_score_perfectly_and_noise_costs(tmp_path):
    clips = _layout(tmp_path)
    actors = sorted(clips)
    clean = enroll.summarise([enroll.score(_embeddings(clips, 0.01), clips, actors, k=1, draws=3)])
    assert clean == {"top1": 1.0, "eer": 0.0, "n_trials": 3 * 12}
    noisy = enroll.summarise([enroll.score(_embeddings(clips, 2.0), clips, actors, k=1, draws=3)])
    assert noisy["top1"] < 1.0 and noisy["eer"] > 0.0


def test_scores_pool_over_folds_and_skip_missing_clips(tmp_path):
    clips = _layout(tmp_path, actors=("01", "02", "03", "04"))
    emb = _embeddings(clips, 0.01)
    del emb[clips["01"]["02"][0]]  # a clip that failed to embed is left out, not fatal
    a = enroll.score(emb, clips, ["01", "02"], k=3, draws=2)
    b = enroll.score(emb, clips, ["03", "04"], k=3, draws=2)
    assert (a["n"], b["n"]) == (2 * 7, 2 * 8)
    assert enroll.summarise([a, b])["n_trials"] == 30


def test_fold_view_keeps_only_the_training_speakers(tmp_path):
    data = make_prepared(tmp_path / "prep", n_speakers=3, per_speaker=4)
    full = PreparedDataset(data)
    view = enroll.fold_view(data, ["spk0", "spk2"], tmp_path / "fold")
    ds = PreparedDataset(view)
    assert ds.speakers == ["spk0", "spk2"] and ds.labels == {"spk0": 0, "spk2": 1}
    assert {u.speaker for u in ds.utterances} == {"spk0", "spk2"}
    i = next(i for i, u in enumerate(full.utterances) if u.speaker == "spk2")
    j = next(j for j, u in enumerate(ds.utterances) if u.utt_id == full.utterances[i].utt_id)
    assert np.array_equal(ds.waveform(j), full.waveform(i)) and ds.label(j) == 1
    enroll.fold_view(data, ["spk0", "spk2"], tmp_path / "fold")  # rerunning (resume) is fine


def test_table_has_one_line_per_protocol_and_system():
    rows = [
        {"system": "speakerid", "protocol": "cv", "k": 1, "top1": 0.5, "eer": 0.25},
        {"system": "speakerid", "protocol": "cv", "k": 3, "top1": 0.625, "eer": 0.2},
        {"system": "enc", "protocol": "cv", "k": 3, "top1": 0.9, "eer": 0.05},
    ]
    md = enroll.table(rows).splitlines()
    assert md[0] == "| protocol | system | k=1 top-1 / EER | k=3 top-1 / EER |"
    assert md[2] == "| cv | speakerid | 50.0 % / 25.0 % | 62.5 % / 20.0 % |"
    assert md[3] == "| cv | enc | – | 90.0 % / 5.0 % |"
