"""The speaker registry: which file (one resolve()), empty new registries, --with-bundled, --from-folder,
remove A B C, recalibrated thresholds, model fingerprints, and `registry list` saying what it shows.

Real FSDD clips through the real CLI (in-process ``speakerid.cli.main``), the shipped model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from speakerid.cli import main as cli_main
from speakerid.pipeline import enroll
from speakerid.registry import (
    CALIBRATE_MIN_CLIPS,
    RegistryError,
    SpeakerRegistry,
    bundled_path,
    resolve,
)
from speakerid.runtime import Identifier

pytestmark = pytest.mark.usefixtures("one_torch_thread", "home")

SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]


def clips(fsdd: Path, speaker: str, n: int = 3, first: int = 10) -> list[str]:
    """Training-split recordings (numbers >= 5) of one speaker, varied digits."""
    return [str(fsdd / f"{d}_{speaker}_{first + d}.wav") for d in range(n)]


def run(capsys, *argv) -> tuple[int, dict | None, str]:
    rc = cli_main([*argv])
    out = capsys.readouterr()
    try:
        data = json.loads(out.out) if out.out.strip() else None
    except json.JSONDecodeError:
        data = None
    return rc, data, out.err


def test_list_without_registry_says_it_shows_the_bundled_speakers(capsys, engine, home):
    rc, data, _ = run(capsys, "registry", "list")
    assert rc == 0
    assert data["bundled"] is True and data["registry"] == str(bundled_path(engine))
    assert "bundled with the model, read-only" in data["shown"] and str(home) in data["shown"]
    assert "no registry at" in data["note"] and "--with-bundled" in data["note"]
    assert [s["name"] for s in data["speakers"]] == SPEAKERS
    # Once the user registry exists, that is what is listed, and it is not the bundled one.
    path = resolve(engine).path
    SpeakerRegistry.new(engine).save(path)
    rc, data, _ = run(capsys, "registry", "list")
    assert rc == 0 and data["bundled"] is False and data["registry"] == str(path) and data["speakers"] == []
    assert "note" not in data


def test_a_new_registry_is_empty_unless_asked(capsys, fsdd, tmp_path):
    new = tmp_path / "new.json"
    rc, data, err = run(capsys, "enroll", "--name", "Ann", *clips(fsdd, "george"), "--registry", str(new))
    assert rc == 0, err
    assert "created registry" in err and "started empty" in err
    assert SpeakerRegistry.load(new).names == ["Ann"]

    bundled = tmp_path / "bundled.json"
    rc, data, err = run(
        capsys,
        "enroll",
        "--name",
        "Ann",
        *clips(fsdd, "george"),
        "--registry",
        str(bundled),
        "--with-bundled",
    )
    assert rc == 0, err
    assert SpeakerRegistry.load(bundled).names == sorted(["Ann", *SPEAKERS])


def test_default_registry_of_the_shipped_model_starts_empty_too(capsys, fsdd, engine, home):
    rc, data, err = run(capsys, "enroll", "--name", "Bo", *clips(fsdd, "lucas"))
    assert rc == 0, err
    assert data["registry"] == str(home / f"registry-{engine.fingerprint}.json")
    ident = Identifier(engine)  # "auto": the user registry now exists, so it is used, not the bundled one
    assert ident.registry.names == ["Bo"] and ident.mode == "registry"


def test_from_folder_enrolls_every_subfolder_in_one_process(capsys, fsdd, tmp_path):
    root = tmp_path / "people"
    for name, spk in (("Ann", "george"), ("Bo", "lucas"), ("Cy", "theo")):
        (root / name).mkdir(parents=True)
        for c in clips(fsdd, spk):
            shutil.copy(c, root / name)
    (root / "Empty").mkdir()
    (root / "Cy" / "notes.txt").write_text("not audio")
    reg = tmp_path / "reg.json"
    rc, data, err = run(capsys, "enroll", "--from-folder", str(root), "--registry", str(reg), "--no-progress")
    assert rc == 0, err
    assert [e["name"] for e in data["enrolled"]] == ["Ann", "Bo", "Cy"]
    assert all(e["clips"] == 3 for e in data["enrolled"])
    loaded = SpeakerRegistry.load(reg)
    assert loaded.names == ["Ann", "Bo", "Cy"]
    # 3 speakers x 3 clips: the threshold is recalibrated from them, and says so.
    assert loaded.threshold_source.startswith("enrolled: equal-error point of 9 genuine / 18 impostor")
    assert data["threshold"] == loaded.threshold != loaded.model_threshold

    rc, _, err = run(capsys, "enroll", "--from-folder", str(tmp_path / "nope"), "--registry", str(reg))
    assert rc == 2 and "not a folder" in err


def test_remove_several_at_once_or_none(capsys, fsdd, tmp_path):
    reg = tmp_path / "reg.json"
    for name, spk in (("Ann", "george"), ("Bo", "lucas"), ("Cy", "theo"), ("Di", "nicolas")):
        assert run(capsys, "enroll", "--name", name, *clips(fsdd, spk, 1), "--registry", str(reg))[0] == 0
    rc, _, err = run(capsys, "registry", "remove", "Ann", "Zed", "--registry", str(reg))
    assert rc == 2 and "not enrolled: 'Zed'; nothing was removed" in err
    assert SpeakerRegistry.load(reg).names == ["Ann", "Bo", "Cy", "Di"]
    rc, data, err = run(capsys, "registry", "remove", "Ann", "Bo", "Cy", "--registry", str(reg))
    assert rc == 0 and "removed Ann, Bo, Cy" in err
    assert [s["name"] for s in data["speakers"]] == ["Di"] == SpeakerRegistry.load(reg).names


def test_remove_from_a_registry_that_does_not_exist_yet(capsys, engine, home):
    rc, _, err = run(capsys, "registry", "remove", "theo")
    assert rc == 2 and "does not exist yet" in err and "--with-bundled" in err
    rc, data, _ = run(capsys, "registry", "remove", "theo", "--with-bundled")
    assert rc == 0 and [s["name"] for s in data["speakers"]] == [s for s in SPEAKERS if s != "theo"]


def test_threshold_rule(engine, fsdd):
    """Model threshold until CALIBRATE_MIN_SPEAKERS speakers have CALIBRATE_MIN_CLIPS clips; then the EER
    point of leave-one-out genuine vs impostor scores, which separates these (real, distinct) voices."""
    reg = SpeakerRegistry.new(engine)
    enroll(reg, "Ann", clips(fsdd, "george", CALIBRATE_MIN_CLIPS), engine)
    enroll(reg, "Bo", clips(fsdd, "lucas", CALIBRATE_MIN_CLIPS - 1), engine)
    reg.recalibrate()
    assert reg.threshold == engine.threshold and reg.threshold_source == "model"
    enroll(reg, "Bo", clips(fsdd, "lucas", CALIBRATE_MIN_CLIPS + 1), engine, overwrite=True)
    reg.recalibrate()
    assert reg.threshold_source.startswith("enrolled:") and reg.threshold != engine.threshold
    ann = np.asarray(reg.speakers["Ann"]["embeddings"])
    bo = np.asarray(reg.speakers["Bo"]["centroid"])
    assert (ann @ bo).max() < reg.threshold  # every Ann clip is below the threshold against Bo
    reg.remove("Bo")
    reg.recalibrate()
    assert reg.threshold == engine.threshold and reg.threshold_source == "model"


def test_a_registry_of_another_model_is_refused(tmp_path, engine, capsys, fsdd):
    other = tmp_path / "other.json"
    reg = SpeakerRegistry(engine.card.replace(fingerprint="0123456789abcdef"))
    reg.add("Ann", np.eye(1, 64))
    reg.save(other)
    with pytest.raises(RegistryError, match=r"other\.json: registry was made with model 0123456789abcdef"):
        Identifier(engine, other)
    rc, _, err = run(capsys, "enroll", "--name", "Bo", *clips(fsdd, "lucas", 1), "--registry", str(other))
    assert rc == 2 and "registry was made with model 0123456789abcdef" in err
    assert SpeakerRegistry.load(other).names == ["Ann"]  # untouched


def test_registries_written_before_recalibration_still_load(tmp_path, engine):
    old = tmp_path / "old.json"
    old.write_text(
        json.dumps(
            {
                "format": "speakerid-registry-v1",
                "model_fingerprint": engine.fingerprint,
                "threshold": 0.6,
                "speakers": {},
            }
        )
    )
    reg = SpeakerRegistry.load(old)
    assert reg.threshold == reg.model_threshold == 0.6 and reg.threshold_source == "model"
