"""Test-wide settings: offline, CPU, and the optional ``../shared`` material."""

import os
from pathlib import Path

import pytest

# Nothing may reach the network from tests (set before any library reads them).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SVDE_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout; tests using it are skipped where it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared material not found at {SHARED} (only developers' checkouts have it)")
    return SHARED
