"""Fixtures of the trainer tests."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grainseg_tinydata import write_tiny_exone  # noqa: E402


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A tiny ExONE-layout data set (4 train / 2 val / 2 test images of 32 x 32) shared by a test module."""
    return write_tiny_exone(tmp_path_factory.mktemp("tiny") / "exone")
