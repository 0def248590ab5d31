"""Shared fixtures: where the real annotation files live, and small seeded helpers."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("PARKIT_REALDATA", REPO.parent / "shared" / "realdata"))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Root of the real PA-100K / PETA / RAP files; skips the test when they are absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real annotation files not found at {REALDATA} (set PARKIT_REALDATA)")
    return REALDATA


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(2)
    yield
