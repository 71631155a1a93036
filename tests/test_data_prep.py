"""data_prep: real files (generated FLAC/WAV/OGG/MP3 trees, a slice of FSDD) through the real decoders.

Checks counts, durations, stored samples, label maps, split rules, bad files, and that an interrupted run
(kill -9 of the process group, or a torn work folder) resumes to a byte-identical dataset.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from data_prep import Item, PrepError, folder, manifest, prepare, synth, vctk
from data_prep.__main__ import main
from data_prep.splits import assign_splits
from speakerid.audio import CROP_SAMPLES, SAMPLE_RATE, decode, load_audio
from speakerid.data import MANIFEST_FIELDS, PreparedDataset

REPO = Path(__file__).resolve().parents[1]
SPEAKERS = ("p225", "p226", "p280", "p315")


def tree_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_identical(a: Path, b: Path) -> None:
    fa, fb = tree_files(a), tree_files(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        assert fa[name] == fb[name], f"{name} differs"


def manifest_rows(out: Path) -> list[dict]:
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tree92(tmp_path_factory) -> Path:
    root = synth.make_vctk_tree(tmp_path_factory.mktemp("vctk") / "VCTK-Corpus-0.92", "0.92", SPEAKERS, 6)
    src = root / "wav48_silence_trimmed" / "p225" / "p225_001_mic1.flac"
    shutil.copy(src, src.with_name("p225_001.flac"))  # audio named off-pattern: reported
    shutil.copy(src, src.with_name("._p225_001_mic1.flac"))  # macOS AppleDouble-style hidden file: ignored
    return root


@pytest.fixture(scope="module")
def prepared92(tree92, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out") / "vctk92"
    prepare(vctk.scan(tree92), out, split_by="sentence", workers=1, chunk_files=5)
    return out


# ------------------------------------------------------------------------------------------------- VCTK


def test_synthetic_vctk_trees_have_the_real_layouts(tree92, tmp_path):
    w = tree92 / "wav48_silence_trimmed"
    assert sorted(p.name for p in (w / "p225").glob("p225_00[12]_mic*.flac")) == [
        "p225_001_mic1.flac",
        "p225_001_mic2.flac",
        "p225_002_mic1.flac",
        "p225_002_mic2.flac",
    ]
    assert not list((w / "p280").glob("*_mic2.flac")) and len(list((w / "p280").glob("*_mic1.flac"))) == 6
    assert not (tree92 / "txt" / "p315").exists() and (tree92 / "txt" / "p225" / "p225_001.txt").is_file()
    assert (w / "log.txt").is_file() and (tree92 / "speaker-info.txt").is_file()
    _, sr, info = decode(w / "p226" / "p226_003_mic1.flac")
    assert (sr, info.format, info.channels) == (48000, "FLAC", 1)
    old = synth.make_vctk_tree(tmp_path / "VCTK-Corpus", "0.80", ("p225", "p315"), 2, seconds=0.3)
    assert sorted(p.relative_to(old).as_posix() for p in old.rglob("*.wav")) == [
        "wav48/p225/p225_001.wav",
        "wav48/p225/p225_002.wav",
        "wav48/p315/p315_001.wav",
        "wav48/p315/p315_003.wav",  # odd-position speakers lack id 002, like the real corpus's gaps
    ]
    assert (old / "txt" / "p225" / "p225_001.txt").read_text().strip() == "Please call Stella."


def test_vctk_092_counts_labels_durations_and_samples(tree92, prepared92):
    data = PreparedDataset(prepared92)
    prep = data.prep
    assert len(data) == 24 and data.speakers == list(SPEAKERS)
    assert json.loads((prepared92 / "labels.json").read_text()) == {s: i for i, s in enumerate(SPEAKERS)}
    with open(prepared92 / "manifest.csv", newline="") as f:
        assert next(csv.reader(f)) == MANIFEST_FIELDS
    assert prep["sample_rate"] == SAMPLE_RATE and prep["dtype"] == "int16"
    assert prep["corpus"]["version"] == "0.92" and prep["corpus"]["mic"] == "mic1"
    assert prep["corpus"]["speakers_without_text"] == ["p315"]
    assert prep["skipped"] == [
        {
            "source": "wav48_silence_trimmed/p225/p225_001.flac",
            "reason": "file name does not follow the VCTK 0.92 pattern p225_001_mic1.flac",
        }
    ]
    assert prep["counts"]["utterances"] == 24 and prep["counts"]["shards"] == 5 and prep["n_padded"] == 0
    assert {"speakerid", "numpy", "soundfile", "soxr"} <= set(prep["versions"])
    assert "mic2" not in (prepared92 / "manifest.csv").read_text()
    for i in (0, 7, 23):
        u = data.utterances[i]
        assert u.utt_id == f"{u.speaker}_{u.sentence_id}" and u.source.endswith("_mic1.flac")
        _, sr, info = decode(tree92 / u.source)
        assert abs(u.length - info.frames * SAMPLE_RATE / sr) <= 1  # 48 kHz -> 16 kHz, nothing lost
        assert u.duration == pytest.approx(u.length / SAMPLE_RATE, abs=1e-4)
        ref = load_audio(tree92 / u.source)
        np.testing.assert_allclose(data.waveform(i), ref, atol=1.0 / 32768 + 1e-7)


def test_vctk_split_is_by_sentence_id_and_seeded(tree92, prepared92):
    rows = manifest_rows(prepared92)
    by_split = {s: {r["sentence_id"] for r in rows if r["split"] == s} for s in ("train", "valid", "test")}
    assert all(by_split.values())
    assert not (by_split["train"] & by_split["valid"] or by_split["train"] & by_split["test"])
    assert not by_split["valid"] & by_split["test"]
    check = json.loads((prepared92 / "prep.json").read_text())["split"]["check"]
    assert check["sentence_ids_in_several_splits"] == 0 and check["texts_in_several_splits"] == 0
    assert check["texts"] == 7  # p315 has audio but no text; ids 001-007 have texts
    items = vctk.scan(tree92).items
    seeds = [tuple(assign_splits(items, "sentence", 0.1, 0.1, s)) for s in range(4)]
    assert seeds[0] == tuple(r["split"] for r in rows)  # the manifest is exactly the seed-0 rule
    assert len(set(seeds)) > 1


def test_vctk_092_mic2_and_080_layout_with_trim(tree92, tmp_path):
    s = vctk.scan(tree92, mic="mic2")
    assert sorted({it.speaker for it in s.items}) == ["p225", "p226", "p315"]
    assert ("wav48_silence_trimmed/p280", "no mic2 recordings for this speaker") in s.skipped
    assert all(it.source.endswith("_mic2.flac") and it.utt_id.count("_") == 1 for it in s.items)

    root = synth.make_vctk_tree(
        tmp_path / "download" / "VCTK-Corpus", "0.80", ("p225", "p315"), 3, (0.8, 1.0)
    )
    (root / "wav48" / "p225" / "notes.txt").write_text("not audio")
    scan = vctk.scan(tmp_path / "download")  # the folder *containing* the corpus works too
    assert scan.info["version"] == "0.80" and scan.info["ignored_non_audio_files"] == 1
    assert [it.utt_id for it in scan.items] == [
        "p225_001",
        "p225_002",
        "p225_003",
        "p315_001",
        "p315_003",
        "p315_004",
    ]
    assert scan.items[0].text == "Please call Stella." and scan.items[3].text == ""
    res = prepare(scan, tmp_path / "out", split_by="sentence", trim=True, trim_db=40, workers=1)
    assert res.prep["trim"]["enabled"] and res.counts["utterances"] == 6
    data = PreparedDataset(tmp_path / "out")
    for i, u in enumerate(data.utterances):
        untrimmed = load_audio(root / u.source)
        # 0.80 files carry 0.2-0.6 s of silence at each end; trimming removes most of it, keeps the speech.
        assert 0.4 * SAMPLE_RATE <= u.length <= len(untrimmed) - 0.3 * SAMPLE_RATE
        assert np.abs(data.waveform(i)).max() > 0.2


# ------------------------------------------------------------------------------------------------- FSDD


def test_fsdd_slice_folder_regex_official_split(shared_data, tmp_path, capsys):
    rec = shared_data / "fsdd" / "recordings"
    if not rec.is_dir():
        pytest.skip(f"FSDD recordings not found at {rec}")
    sl = tmp_path / "fsdd"
    sl.mkdir()
    for spk in ("george", "jackson", "theo"):
        for digit in (0, 1):
            for idx in range(10):
                shutil.copy(rec / f"{digit}_{spk}_{idx}.wav", sl)
    (sl / "README.md").write_text("not audio")
    out = tmp_path / "prepared"
    rc = main(
        [
            "folder",
            "--root",
            str(sl),
            "--out",
            str(out),
            "--speaker-regex",
            r"^(?P<sentence>\d+)_(?P<speaker>[a-z]+)_\d+\.wav$",
            "--test-pattern",
            r"_[0-4]\.wav$",
            "--quiet",
            "--workers",
            "2",
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0 and "3 speakers, 60 utterances" in printed and "skipped: none" in printed
    data = PreparedDataset(out)
    assert data.labels == {"george": 0, "jackson": 1, "theo": 2}
    for u in data.utterances:
        idx = int(u.utt_id.rsplit("_", 1)[1])
        assert (u.split == "test") == (idx <= 4), u.utt_id  # FSDD's official split: recordings 0-4 are test
        assert u.sentence_id == u.utt_id.split("_")[0] and u.speaker in u.utt_id
        _, sr, info = decode(sl / u.source)
        assert sr == 8000 and abs(u.length - 2 * info.frames) <= 1 and u.padded == (u.length < CROP_SAMPLES)
    for spk in data.labels:  # 10 train files per speaker; 10 % (1 file) goes to valid, seeded
        assert sum(u.speaker == spk and u.split == "valid" for u in data.utterances) == 1
    prep = data.prep
    assert prep["split"]["test"] == 0 and prep["split"]["n_preset"] == 30
    assert prep["n_padded"] == sum(u.padded for u in data.utterances) > 0
    assert prep["corpus"]["ignored_non_audio_files"] == {".md": 1}


# ------------------------------------------------------------------------------------------------- bad files


def test_bad_files_are_reported_and_skipped_the_rest_prepared(tmp_path, capsys):
    root = synth.make_folder_tree(tmp_path / "corpus", ("alice", "bob"), utterances=4)
    expected = synth.make_bad_files(root / "carol")
    (root / "loose.wav").write_bytes((root / "carol" / "stereo.wav").read_bytes())  # no speaker folder
    out = tmp_path / "out"
    rc = main(
        ["folder", "--root", str(root), "--out", str(out), "--quiet", "--workers", "2", "--chunk-files", "3"]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    prep = json.loads((out / "prep.json").read_text())
    skipped = {s["source"]: s["reason"] for s in prep["skipped"]}
    bad = {f"carol/{n}": r for n, r in expected.items() if r is not None}
    assert set(skipped) == set(bad) | {"loose.wav"}
    for src, fragment in bad.items():
        assert fragment in skipped[src], (src, skipped[src])
        assert src in printed or "more)" in printed
    assert f"skipped {len(bad) + 1} file(s)" in printed and "empty file (0 bytes)" in printed

    data = PreparedDataset(out)
    got = {u.source: i for i, u in enumerate(data.utterances)}
    ok = [f"carol/{n}" for n, r in expected.items() if r is None]
    assert set(got) == set(ok) | {
        f"{s}/{s}_{i:02d}.{e}" for s in ("alice", "bob") for i, e in enumerate(synth_exts())
    }
    for name in ("rate8k.wav", "rate96k.flac", "pcm8.wav", "pcm24.wav", "pcm24.flac", "float32.wav"):
        assert abs(data.utterances[got[f"carol/{name}"]].length - SAMPLE_RATE) <= 2, name
    w = data.waveform(got["carol/stereo.wav"])
    np.testing.assert_allclose(w, load_audio(root / "carol" / "stereo.wav"), atol=1.0 / 32768 + 1e-7)
    mono = data.waveform(got["carol/float32.wav"])
    np.testing.assert_allclose(w, 0.75 * mono, atol=2e-3)  # stereo = (x + 0.5 x) / 2
    assert data.utterances[got["carol/truncated_data.wav"]].length < 0.6 * SAMPLE_RATE


def synth_exts() -> list[str]:
    return ["wav", "flac", "ogg", "mp3"]


# ------------------------------------------------------------------------------------------------- resume


def _cli(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "data_prep",
        "vctk",
        "--root",
        str(root),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def test_kill_9_mid_run_then_rerun_is_byte_identical(tmp_path, capsys):
    root = synth.make_vctk_tree(tmp_path / "vctk", "0.92", ("p225", "p226", "p280", "p315"), 15, (0.5, 1.0))
    ref = tmp_path / "ref"
    prepare(vctk.scan(root), ref, split_by="sentence", chunk_files=1, workers=1)

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        _cli(root, out, "--chunk-files", "1", "--workers", "2"), cwd=REPO, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 60
    try:
        while len(list((out / ".partial").glob("chunk-*.json"))) < 3:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no progress within 60 s"
            time.sleep(0.002)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and its worker processes, like kill -9 of the job
        proc.wait()
    n_done = len(list((out / ".partial").glob("chunk-*.json")))
    assert not (out / "manifest.csv").exists() and 3 <= n_done < 60

    assert main(["vctk", "--root", str(root), "--out", str(out), "--quiet", "--chunk-files", "1"]) == 0
    assert f"resumed: {n_done} of 60 chunks were done by an earlier run" in capsys.readouterr().out
    assert_identical(ref, out)


def test_torn_work_folder_resumes_identically_and_any_worker_count(tmp_path):
    root = synth.make_folder_tree(tmp_path / "corpus", ("a", "b", "c"), utterances=4, formats=("flac", "wav"))
    items = folder.scan(root)
    ref = tmp_path / "ref"
    prepare(items, ref, chunk_files=2, workers=1)

    out = tmp_path / "out"
    calls = []

    def crash(done, total):  # simulated crash after the 4th chunk has been written
        calls.append(done)
        if len(calls) == 5:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare(items, out, chunk_files=2, workers=1, progress=crash)
    assert not (out / "manifest.csv").exists()
    partial = out / ".partial"
    assert len(list(partial.glob("chunk-*.json"))) == 4
    (partial / "chunk-00001.json").unlink()  # lost marker: the chunk is redone
    shard = out / "shards" / "00002.npy"
    shard.write_bytes(shard.read_bytes()[:-100])  # torn shard under a marker: the chunk is redone
    (out / "shards" / ".00004.npy.x1y2.tmp").write_bytes(b"half a file")  # temp file of a killed writer
    res = prepare(items, out, chunk_files=2, workers=2)
    assert res.n_resumed == 2 and not res.up_to_date
    assert_identical(ref, out)

    again = prepare(items, out, chunk_files=2, workers=3)
    assert again.up_to_date
    assert_identical(ref, out)


def test_other_settings_are_refused_unless_overwrite(tmp_path):
    root = synth.make_folder_tree(tmp_path / "corpus", ("a", "b"), utterances=3, formats=("wav",))
    out = tmp_path / "out"
    prepare(folder.scan(root), out, workers=1)
    with pytest.raises(PrepError, match=r"different inputs or settings \(seed: 0 -> 1\).*--overwrite"):
        prepare(folder.scan(root), out, workers=1, seed=1)
    res = prepare(folder.scan(root), out, workers=1, seed=1, overwrite=True, dtype="float16")
    assert res.prep["split"]["seed"] == 1 and not res.up_to_date
    assert np.load(out / "shards" / "00000.npy", mmap_mode="r").dtype == np.float16
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("x")
    with pytest.raises(PrepError, match="not empty and is not a prepared dataset"):
        prepare(folder.scan(root), tmp_path / "busy", workers=1)
    with pytest.raises(PrepError, match="unknown option.*seeds"):
        prepare(folder.scan(root), tmp_path / "x", seeds=3)
    fcntl = pytest.importorskip("fcntl")
    (tmp_path / "locked" / ".partial").mkdir(parents=True)
    with open(tmp_path / "locked" / ".partial" / "lock", "a+b") as held:  # as if another run were writing
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(PrepError, match="another data_prep run is writing to this folder"):
            prepare(folder.scan(root), tmp_path / "locked", workers=1, overwrite=True)


# ------------------------------------------------------------------------------------------------- splits, CSV


def _items(n_speakers: int, per: int) -> list[Item]:
    return [
        Item(f"/x/s{s}_{k}.wav", f"s{s}_{k}.wav", f"s{s}", f"s{s}_{k:02d}", f"{k:02d}")
        for s in range(n_speakers)
        for k in range(per)
    ]


def test_split_rules_file_speaker_and_presets():
    items = _items(5, 20)
    by_file = assign_splits(items, "file", 0.1, 0.2, 0)
    for s in range(5):
        mine = [sp for it, sp in zip(items, by_file) if it.speaker == f"s{s}"]
        assert (mine.count("train"), mine.count("valid"), mine.count("test")) == (14, 2, 4)
    # Per-speaker streams: adding a speaker does not move anyone else's files.
    assert assign_splits(items + _items(6, 20)[100:], "file", 0.1, 0.2, 0)[:100] == by_file
    assert assign_splits(items, "file", 0.1, 0.2, 1) != by_file

    by_spk = assign_splits(_items(10, 3), "speaker", 0.1, 0.2, 0)
    spk_split = {}
    for it, sp in zip(_items(10, 3), by_spk):
        assert spk_split.setdefault(it.speaker, sp) == sp  # speaker-disjoint
    assert sorted(spk_split.values()).count("test") == 2 and list(spk_split.values()).count("valid") == 1

    preset = [Item(**{**it.__dict__, "split": "test"}) if it.sentence_id < "05" else it for it in items]
    out = assign_splits(preset, "sentence", 0.1, 0.0, 0)
    assert all(sp == "test" for it, sp in zip(preset, out) if it.sentence_id < "05")
    assert set(out[5:20]) == {"train", "valid"}
    with pytest.raises(PrepError, match="needs a sentence id"):
        assign_splits([Item("/x/a.wav", "a.wav", "a", "a")], "sentence", 0.1, 0.1, 0)


def test_manifest_csv_with_split_column_and_missing_file(tmp_path):
    root = synth.make_folder_tree(tmp_path / "c", ("ann", "ben"), utterances=3, formats=("flac",))
    lines = ["path,speaker,split"]
    lines += [
        f"c/{s}/{s}_{i:02d}.flac,{s},{'test' if i == 0 else ''}" for s in ("ann", "ben") for i in range(3)
    ]
    lines.append(f"{root / 'ann' / 'ann_00.flac'},ann2,valid")  # absolute path, another speaker
    lines.append("c/ghost.wav,ben,")
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    scan = manifest.scan(tmp_path / "list.csv")
    res = prepare(scan, tmp_path / "out", workers=1, valid=0.0, test=0.0)
    data = PreparedDataset(tmp_path / "out")
    split = {u.source: u.split for u in data.utterances}
    assert split["c/ann/ann_00.flac"] == "test" and split["c/ann/ann_01.flac"] == "train"
    assert split[str(root / "ann" / "ann_00.flac")] == "valid"
    assert res.skipped == [{"source": "c/ghost.wav", "reason": "file not found"}]
    assert data.speakers == ["ann", "ann2", "ben"]

    (tmp_path / "bad.csv").write_text("a.wav,ann\nb.wav,ben,holdout\n")
    with pytest.raises(
        PrepError, match=r"bad\.csv: line 2: split 'holdout' is not one of train, valid, test"
    ):
        manifest.scan(tmp_path / "bad.csv")


def test_short_clips_are_padded_not_dropped_and_float16(tmp_path):
    root = synth.make_folder_tree(
        tmp_path / "c", ("a", "b"), utterances=3, seconds=(0.2, 0.3), formats=("wav",)
    )
    res = prepare(folder.scan(root), tmp_path / "out", workers=1, dtype="float16")
    data = PreparedDataset(tmp_path / "out")
    assert len(data) == 6 and res.prep["n_padded"] == 6 and all(u.padded for u in data.utterances)
    assert all(0.2 * SAMPLE_RATE - 2 <= u.length <= 0.3 * SAMPLE_RATE + 2 for u in data.utterances)
    u = data.utterances[4]
    np.testing.assert_allclose(data.waveform(4), load_audio(root / u.source), atol=1e-3, rtol=1e-3)


def test_readable_errors_for_bad_roots_and_options(tmp_path):
    with pytest.raises(PrepError, match=r"not a VCTK corpus \(no wav48/ or wav48_silence_trimmed/ in it"):
        vctk.scan(tmp_path)
    with pytest.raises(PrepError, match="no such folder"):
        folder.scan(tmp_path / "nope")
    with pytest.raises(PrepError, match=r"needs a named group \(\?P<speaker>"):
        folder.scan(tmp_path, speaker_regex=r"^\d+_([a-z]+)")
    root = synth.make_vctk_tree(tmp_path / "v", "0.80", ("p225",), 1, 0.3)
    with pytest.raises(PrepError, match="0.80 has one microphone"):
        vctk.scan(root, mic="mic2")
    (tmp_path / "f" / "ann").mkdir(parents=True)
    (tmp_path / "f" / "ann" / "a.wav").write_bytes(b"")
    with pytest.raises(PrepError, match=r"none of the 1 files could be used \(ann/a.wav: empty file"):
        prepare(folder.scan(tmp_path / "f"), tmp_path / "out", workers=1)


def test_data_prep_starts_without_importing_torch():
    """The CLI only decodes audio and writes shards; importing torch would add seconds to every start."""
    code = "import sys, data_prep.__main__; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
