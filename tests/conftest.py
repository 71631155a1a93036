"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_ENV_AT_START = {k: os.environ.get(k) for k in ("TRITON_INTERPRET",)}


@pytest.fixture(autouse=True)
def no_env_leaks(request):
    """Process-wide switches (TRITON_INTERPRET) are set only by the module that needs them, through monkeypatch
    or in a subprocess's env: every other test, and the subprocesses it starts, sees the session's own value."""
    if request.node.module.__name__ != "test_triton_kernel":
        for key, value in _ENV_AT_START.items():
            assert os.environ.get(key) == value, (
                f"{key}={os.environ.get(key)!r} leaked into {request.node.nodeid}"
            )
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (fsdd/, mnist/, ptb/): ``$SPEAKERID_SHARED_DATA``, else the checkout's sibling
    ``../shared/data``. Skips the test, saying where it looked, when neither exists."""
    env = os.environ.get("SPEAKERID_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(
            f"shared data not found at {path} (set SPEAKERID_SHARED_DATA or put it in ../shared/data)"
        )
    return path


# -- the shipped model and real speech, shared by the inference tests ------------------------------------------


@pytest.fixture(scope="session")
def fsdd(shared_data) -> Path:
    """FSDD's recordings (``<digit>_<speaker>_<n>.wav``; numbers 0-4 are its test split)."""
    d = shared_data / "fsdd" / "recordings"
    if not d.is_dir():
        pytest.skip(f"FSDD recordings not found in {d}")
    return d


@pytest.fixture(scope="module")
def engine():
    """The shipped model on CPU (``speakerid.runtime.load_engine``)."""
    from speakerid.runtime import default_model_path, load_engine

    return load_engine(default_model_path(), device="cpu")


@pytest.fixture(scope="module")
def one_torch_thread():
    """PyTorch with one thread (use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): on a shared
    2-core machine two spinning threads are ~3x slower, and the small models gain nothing from more."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private ``$SPEAKERID_HOME``: the shipped model's user registry lands here, never in ~/.cache."""
    h = tmp_path / "home"
    monkeypatch.setenv("SPEAKERID_HOME", str(h))
    return h
