"""Shared test set-up: markers, paths to ../shared, skips for slow / GPU tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GRAINSEG_SHARED", REPO.parent / "shared"))
REFERENCE_FIXTURES = SHARED / "fixtures" / "reference"
EXONE_DATA = SHARED / "data" / "exone316l"


def pytest_collection_modifyitems(config, items):
    run_slow = os.environ.get("GRAINSEG_SLOW", "0") == "1"
    has_cuda = torch.cuda.is_available()
    skip_slow = pytest.mark.skip(reason="slow test: set GRAINSEG_SLOW=1 to run it")
    skip_gpu = pytest.mark.skip(reason="GPU test: no CUDA device here (skipped, not passed)")
    for item in items:
        # markers, not keywords: keywords also hold folder names (tests/gpu would match "gpu")
        if item.get_closest_marker("slow") is not None and not run_slow:
            item.add_marker(skip_slow)
        if item.get_closest_marker("gpu") is not None and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def reference_fixtures() -> Path:
    """The paper authors' reference outputs (../shared/fixtures/reference), or skip."""
    if not REFERENCE_FIXTURES.is_dir():
        pytest.skip(f"reference fixtures not found at {REFERENCE_FIXTURES} (set GRAINSEG_SHARED)")
    return REFERENCE_FIXTURES


@pytest.fixture(scope="session")
def exone_data() -> Path:
    """The real 316L micrographs (../shared/data/exone316l), or skip."""
    if not (EXONE_DATA / "splits.json").is_file():
        pytest.skip(f"ExONE 316L data not found at {EXONE_DATA} (set GRAINSEG_SHARED)")
    return EXONE_DATA
