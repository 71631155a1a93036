"""The app's Live tab: microphone chunks streamed to a real ``python app.py`` server by a real gradio_client; the
timeline grows chunk by chunk and ends as the library's StreamingIdentifier says for the same audio."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("gradio", reason="the web demo needs gradio (pip install -e '.[app]')")
pytest.importorskip("gradio_client", reason="needs gradio_client (pip install -e '.[test]')")

from gradio_client import Client, handle_file  # noqa: E402
from test_app import AppServer  # noqa: E402

from speakerid.audio import load_audio, resample  # noqa: E402
from speakerid.checkpoint import checkpoint_card, load_checkpoint, model_from_checkpoint  # noqa: E402
from speakerid.runtime import default_model_path  # noqa: E402
from speakerid.streaming import LiveStream, StreamingIdentifier, TorchStep  # noqa: E402

SAMPLES = default_model_path().parent / "samples"
pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="shipped model and samples missing")
MIC_RATE = 48000  # what browsers record at; the server resamples each chunk in a streaming resampler


def _meeting() -> np.ndarray:
    rng = np.random.default_rng(3)
    parts = []
    for who in ["lucas", "nicolas"]:
        parts += [(1e-4 * rng.standard_normal(8000)).astype(np.float32), load_audio(SAMPLES / f"{who}_1.wav")]
    parts.append(np.zeros(8000, np.float32))
    return resample(np.concatenate(parts), 16000, MIC_RATE)


def test_live_tab_streams_the_microphone(tmp_path):
    audio = _meeting()
    step = MIC_RATE // 2  # 0.5 s chunks, as the tab's stream_every
    chunks = []
    for i in range(0, len(audio), step):
        f = tmp_path / f"chunk{i // step:03d}.wav"
        sf.write(f, np.round(audio[i : i + step] * 32767).astype(np.int16), MIC_RATE, subtype="PCM_16")
        chunks.append(f)
    with AppServer(tmp_path, None, "--device", "cpu") as srv:
        client = Client(srv.ready().url, verbose=False)
        try:
            tables = [client.predict(handle_file(str(f)), api_name="/live") for f in chunks]
        finally:
            with contextlib.suppress(Exception):
                client.close()
    rows = [t["data"] for t in tables]
    assert [len(r) for r in rows] == sorted(len(r) for r in rows) and len(rows[-1]) > len(rows[0])  # it grows
    # the library, fed the same int16 chunks at the same rate, with the registry the server uses (bundled)
    from speakerid.registry import SpeakerRegistry

    ckpt = load_checkpoint(default_model_path())
    reg = SpeakerRegistry.load(default_model_path().parent / "registry.json")
    labels = list(checkpoint_card(ckpt).labels)
    ref = LiveStream(StreamingIdentifier(TorchStep(model_from_checkpoint(ckpt)), labels, reg))
    for f in chunks:
        x, sr = sf.read(f, dtype="int16")
        ref.feed(sr, x)
    expect = [[s.start, s.end, s.speaker or "(no speech)"] for s in ref.timeline()]
    assert [r[:3] for r in rows[-1]] == expect
    assert [r[2] for r in rows[-1] if r[2] != "(no speech)"] == ["lucas", "nicolas"], rows[-1]
