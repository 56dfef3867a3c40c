"""Fixtures of the trainer tests."""
from __future__ import annotations


import pytest

from tests.helpers.tinydata import write_tiny_exone


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A tiny ExONE-layout data set (4 train / 2 val / 2 test images of 32 x 32) shared by a test module."""
    return write_tiny_exone(tmp_path_factory.mktemp("tiny") / "exone")
