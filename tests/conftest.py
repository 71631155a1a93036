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
