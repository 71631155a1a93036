"""Concurrent registry writers never lose a name: real processes, a real Gradio server and gradio_client.

Every write is a locked re-read + merge + atomic write (``SpeakerRegistry.update``); the app re-reads the file
when it changed on disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from speakerid.registry import SpeakerRegistry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_app import AppServer  # noqa: E402

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from speakerid.card import ModelCard
    from speakerid.models import ModelConfig
    from speakerid.registry import SpeakerRegistry

    class Engine:  # what update() needs of an engine: the model's card (identity, threshold) and file
        card = ModelCard(ModelConfig(n_classes=1), ["a"], fingerprint="f" * 16)
        fingerprint, threshold, source = card.fingerprint, card.threshold, "model.pt"

    path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(abs(hash(tag)) % 2**32)
    for i in range(n):
        e = rng.standard_normal((3, 8))
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        SpeakerRegistry.update(path, Engine(), lambda r: r.add(f"{tag}-{i}", e))
    """
)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def test_many_writer_processes_keep_every_name(tmp_path):
    """4 processes x 15 enrollments each into one file, as fast as they can: all 60 names are kept."""
    path = tmp_path / "reg.json"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"w{k}", "15"],
            env=_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    reg = SpeakerRegistry.load(path)
    assert len(reg) == 60 and reg.names == sorted(f"w{k}-{i}" for k in range(4) for i in range(15))
    assert not list(tmp_path.glob(".reg.json.*.tmp")), "a temporary file was left behind"


@pytest.mark.slow
def test_two_cli_enrolls_and_the_app_at_once_keep_every_name(tmp_path, fsdd):
    from gradio_client import Client, handle_file

    reg = tmp_path / "registry.json"
    files = {
        name: [str(fsdd / f"{d}_{spk}_{10 + d}.wav") for d in range(3)]
        for name, spk in (("Ann", "george"), ("Bo", "lucas"), ("Cy", "theo"), ("Di", "nicolas"))
    }
    with AppServer(tmp_path, None, "--registry", str(reg), "--device", "cpu") as server:
        server.ready()
        client = Client(server.url, verbose=False)
        try:
            # The app knows nobody yet and shows the bundled speakers; Di is enrolled there first so the app
            # holds a registry in memory that the CLIs then change under it.
            client.predict("Di", [handle_file(p) for p in files["Di"]], None, False, api_name="/enroll")
            clis = [
                subprocess.Popen(
                    [sys.executable, "-m", "speakerid.cli", "enroll", "--name", name, *files[name]]
                    + ["--registry", str(reg), "--no-progress", "--threads", "1"],
                    env=_env(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for name in ("Ann", "Bo")
            ]
            app_result = {}

            def app_enroll():
                app_result["status"] = client.predict(
                    "Cy", [handle_file(p) for p in files["Cy"]], None, False, api_name="/enroll"
                )[0]

            t = threading.Thread(target=app_enroll)
            t.start()
            for p in clis:
                out, err = p.communicate(timeout=300)
                assert p.returncode == 0, err
                assert json.loads(out)["registry"] == str(reg)
            t.join(timeout=300)
            assert app_result["status"].startswith("Enrolled **Cy**"), app_result
            names = ["Ann", "Bo", "Cy", "Di"]
            assert SpeakerRegistry.load(reg).names == names
            # The app re-read the file: it lists (and identifies against) the CLI's speakers too.
            listed = [r[0] for r in client.predict(api_name="/list_speakers")[1]["data"]]
            assert listed == names
        finally:
            with contextlib.suppress(Exception):
                client.close()
        assert "Traceback" not in server.log_text(), server.log_text()[-3000:]
