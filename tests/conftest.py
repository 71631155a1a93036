"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
