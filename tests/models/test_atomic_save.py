"""save_pretrained / export_half replace the whole folder at once: an interrupt never leaves a partial model."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from tests.helpers.tinydata import tiny_model

import grainseg
from grainseg.models.base import SegmentationModel

NAMES = ("config.json", "model.safetensors", "README.md")


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _interrupt_after_weights(monkeypatch):
    """The next save writes its weights, then gets Ctrl-C (before config.json and the card)."""
    real = SegmentationModel._save_pretrained

    def interrupted(self, save_directory):
        real(self, save_directory)
        raise KeyboardInterrupt

    monkeypatch.setattr(SegmentationModel, "_save_pretrained", interrupted)


def test_interrupted_overwrite_keeps_the_old_model_complete(tmp_path, monkeypatch):
    torch.manual_seed(0)
    first = tiny_model()
    folder = tmp_path / "best"
    first.save_pretrained(folder, metrics={"val_loss": 0.5})
    (folder / "notes.txt").write_text("mine")
    before = _snapshot(folder)
    _interrupt_after_weights(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        tiny_model().save_pretrained(folder, overwrite=True, metrics={"val_loss": 0.4})
    assert _snapshot(folder) == before  # every file, byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]  # no temporary folder left behind
    monkeypatch.undo()
    second = tiny_model()
    second.save_pretrained(folder, overwrite=True, metrics={"val_loss": 0.4})
    assert (folder / "notes.txt").read_text() == "mine"  # other files in the folder are kept
    assert "0.4000" in (folder / "README.md").read_text()
    loaded = grainseg.from_pretrained(folder)
    for k, v in second.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_interrupted_first_save_leaves_nothing(tmp_path, monkeypatch):
    _interrupt_after_weights(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        tiny_model().save_pretrained(tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


def test_saved_files_and_folder_have_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        tiny_model().save_pretrained(tmp_path / "m")
        tiny_model().save_pretrained(tmp_path / "m", overwrite=True)
    finally:
        os.umask(old)
    modes = {n: stat.S_IMODE((tmp_path / "m" / n).stat().st_mode) for n in NAMES}
    assert modes == {n: 0o644 for n in NAMES}
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == 0o755


def test_save_into_a_file_path_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        tiny_model().save_pretrained(tmp_path / "f")


def test_export_half_over_the_limit_writes_nothing_and_keeps_the_old_copy(tmp_path):
    from grainseg.train.export import export_half

    tiny_model().save_pretrained(tmp_path / "src")
    with pytest.raises(ValueError, match="over the limit"):
        export_half(tmp_path / "src", tmp_path / "dst", max_bytes=100)
    assert not (tmp_path / "dst").exists()
    export_half(tmp_path / "src", tmp_path / "dst")
    before = _snapshot(tmp_path / "dst")
    with pytest.raises(ValueError, match="over the limit"):
        export_half(tmp_path / "src", tmp_path / "dst", max_bytes=100, overwrite=True)
    assert _snapshot(tmp_path / "dst") == before
    with pytest.raises(FileExistsError, match="overwrite"):
        export_half(tmp_path / "src", tmp_path / "dst")
