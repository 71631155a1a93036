"""One number per model: ``speakerid evaluate`` and ``speakerid identify`` give the same answer for every file.

Both run ``speakerid.pipeline.Identifier`` (same decoding, speech detection, crops and vote); evaluate reads
each utterance's source file named in the prepared manifest, as identify does. Real speech (FSDD) through the
shipped model, real data_prep, the real console-script entry points.
"""

from __future__ import annotations

import json
import shutil

import pytest

from speakerid.cli import main as cli_main
from speakerid.runtime import default_model_path

SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]


@pytest.fixture(scope="module")
def prepared(shared_data, tmp_path_factory):
    """A prepared dataset of FSDD clips: recordings 0-2 of digits 0-1 are the test split (36 files)."""
    src = shared_data / "fsdd" / "recordings"
    if not src.is_dir():
        pytest.skip(f"FSDD not found at {src}")
    root = tmp_path_factory.mktemp("one")
    corpus = root / "corpus"
    corpus.mkdir()
    for spk in SPEAKERS:
        for d in (0, 1):
            for k in (0, 1, 2, 10, 11, 12):
                shutil.copy(src / f"{d}_{spk}_{k}.wav", corpus / f"{d}_{spk}_{k}.wav")
    from data_prep.__main__ import main as prep_main

    out = root / "prep"
    rc = prep_main(
        [
            "folder",
            "--root",
            str(corpus),
            "--out",
            str(out),
            "--speaker-regex",
            r"^(?P<sentence>\d+)_(?P<speaker>[a-z]+)_\d+\.wav$",
            "--test-pattern",
            r"_[0-2]\.wav$",
            "--quiet",
        ]
    )
    assert rc == 0
    tests = sorted(str(corpus / f"{d}_{s}_{k}.wav") for s in SPEAKERS for d in (0, 1) for k in (0, 1, 2))
    return out, tests


def test_evaluate_and_identify_give_the_same_answer_per_file(prepared, tmp_path, capsys):
    data, tests = prepared
    capsys.readouterr()
    rc = cli_main(
        ["evaluate", "--checkpoint", str(default_model_path()), "--data", str(data), "--out", str(tmp_path)]
    )
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["decoded"] == "source files" and summary["n_utterances"] == len(tests)
    report = json.loads((tmp_path / "report.json").read_text())
    evaluated = {f["path"]: f["predicted"] for f in report["files"]}
    assert sorted(evaluated) == tests

    out = tmp_path / "id.jsonl"
    rc = cli_main(["identify", *tests, "--model", str(default_model_path()), "--registry", "none",
                   "--format", "jsonl", "--out", str(out), "--no-progress"])  # fmt: skip
    assert rc == 0
    identified = {r["path"]: r["speaker"] for r in map(json.loads, out.read_text().splitlines())}
    assert identified == evaluated  # the same answer for every file
    truth = {p: p.rsplit("/", 1)[1].split("_")[1] for p in tests}
    accuracy = sum(identified[p] == truth[p] for p in tests) / len(tests)
    assert (
        summary["utt_top1"] == pytest.approx(accuracy) and accuracy > 0.8
    )  # one number, and it is the model's


def test_without_source_files_evaluate_says_it_scored_the_shards(prepared, tmp_path, capsys):
    data, _ = prepared
    moved = tmp_path / "prep"
    shutil.copytree(data, moved)
    prep = json.loads((moved / "prep.json").read_text())
    prep["corpus"]["root"] = str(tmp_path / "gone")
    (moved / "prep.json").write_text(json.dumps(prep))
    capsys.readouterr()
    rc = cli_main(
        [
            "evaluate",
            "--checkpoint",
            str(default_model_path()),
            "--data",
            str(moved),
            "--out",
            str(tmp_path / "r"),
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["decoded"] == "prepared shards" and summary["utt_top1"] > 0.8
