"""The shipped default model: the README's main command, and answers that survive level and quantisation."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speakerid.audio import load_audio
from speakerid.runtime import Identifier, InferenceOptions, default_model_path, load_engine

SAMPLES = default_model_path().parent / "samples"
pytestmark = pytest.mark.skipif(not default_model_path().is_file(), reason="shipped model missing")


def test_readme_main_command_identifies_every_sample(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "speakerid.cli", "identify", str(SAMPLES), "--format", "jsonl"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"SPEAKERID_HOME": str(tmp_path), "PATH": ""},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert len(rows) == 12
    for row in rows:
        assert row["error"] in (None, ""), row
        assert row["speaker"] == Path(row["path"]).name.split("_")[0], row


@pytest.mark.parametrize("mode", ["registry", "classes"])
def test_answers_survive_gain_and_int16_requantisation(mode):
    ident = Identifier(load_engine(), options=InferenceOptions(mode=mode))
    for f in sorted(SAMPLES.glob("*.wav")):
        w = load_audio(f)
        truth = f.name.split("_")[0]
        q = np.round(w * 32768).clip(-32768, 32767) / 32768  # what data_prep's int16 shards hold
        for x in (w, w * 0.25, w * 1.9, q.astype(np.float32)):
            assert ident.identify(x.astype(np.float32)).speaker == truth, f.name
