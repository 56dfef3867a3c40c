"""The trainer against interrupts, changed resume settings, bad masks and divergence."""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.tinydata import TINY_SIZE, tiny_model, train_config

import grainseg
from grainseg.models.base import SegmentationModel
from grainseg.models.registry import tiny_config
from grainseg.train import trainer as trainer_mod
from grainseg.train.trainer import train


_cfg = train_config


def _seeded(seed=0, **kw):
    torch.manual_seed(seed)
    return tiny_model(**kw)


def _drop_path_model():
    """A model that draws from the global RNG while training (drop-path), unlike the tiny U-Net."""
    torch.manual_seed(0)
    return grainseg.create_model("vmunet_aspp", **{**tiny_config("vmunet_aspp"), "drop_path_rate": 0.3,
                                                   "preprocessing": {"input_size": [TINY_SIZE, TINY_SIZE]}})


def test_ctrl_c_while_best_is_rewritten_keeps_the_previous_best(tiny_data, tmp_path, monkeypatch):
    losses = iter([0.5, 0.4])  # epoch 2 improves, so best/ is rewritten

    def validate(*args, **kwargs):
        return {"val_loss": next(losses), "val_dice": 0.5, "val_iou": 0.4}

    real_save = SegmentationModel._save_pretrained
    saves = {"n": 0}

    def save_then_interrupt(self, directory):
        saves["n"] += 1
        real_save(self, directory)
        if saves["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_mod, "_validate", validate)
    monkeypatch.setattr(SegmentationModel, "_save_pretrained", save_then_interrupt)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_data, out, epochs=2), model=_seeded())
    assert sorted(p.name for p in (out / "best").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert "| epoch | 1 |" in (out / "best" / "README.md").read_text()
    grainseg.from_pretrained(out / "best")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary folder left


def _interrupt_at_step(monkeypatch, n):
    """The n-th loss evaluation (training and validation, counting from 1) raises KeyboardInterrupt."""
    real = trainer_mod.build_loss

    def build(name):
        crit, calls = real(name), {"n": 0}

        def loss(logits, target):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return crit(logits, target)

        return loss

    monkeypatch.setattr(trainer_mod, "build_loss", build)


def test_mid_epoch_resume_is_bit_identical_with_drop_path(tiny_data, tmp_path, monkeypatch):
    cfg = dict(epochs=2, batch_size=1, checkpoint_every=1, crop_size=[24, 24])
    train(_cfg(tiny_data, tmp_path / "full", **cfg), model=_drop_path_model())
    _interrupt_at_step(monkeypatch, 8)  # 4 train + 2 val losses in epoch 1, then epoch 2 step 2
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_data, tmp_path / "cut", **cfg), model=_drop_path_model())
    monkeypatch.undo()
    loop = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["loop"]
    assert (loop["epoch"], loop["step_in_epoch"]) == (1, 1)
    train(_cfg(tiny_data, tmp_path / "cut", resume=True, **cfg), model=_drop_path_model())
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(full[k], cut[k]) for k in full)
    history = [json.loads((tmp_path / n / "metrics.json").read_text())["epochs"] for n in ("full", "cut")]
    assert [e["train_loss"] for e in history[0]] == [e["train_loss"] for e in history[1]]


@pytest.mark.parametrize("change, field", [
    (dict(lr=1e-2), "lr"), (dict(batch_size=1), "batch_size"), (dict(crop_size=[16, 16]), "crop_size"),
    (dict(schedule="cosine"), "schedule"), (dict(seed=3), "seed"), (dict(loss="dice"), "loss"),
])
def test_resume_refuses_changed_settings_naming_the_field(tiny_data, tmp_path, change, field):
    out = tmp_path / "run"
    train(_cfg(tiny_data, out, epochs=1), model=_seeded())
    with pytest.raises(ValueError, match=rf"--resume: .*checkpoint.pt.*\b{field}\b"):
        train(_cfg(tiny_data, out, epochs=2, resume=True, **change), model=_seeded())


def test_resume_refuses_other_data_and_cosine_length(tiny_data, tmp_path):
    out = tmp_path / "run"
    train(_cfg(tiny_data, out, epochs=2, schedule="cosine"), model=_seeded())
    with pytest.raises(ValueError, match="epochs 2 -> 3"):
        train(_cfg(tiny_data, out, epochs=3, schedule="cosine", resume=True), model=_seeded())
    other = tmp_path / "other"
    shutil.copytree(tiny_data, other)
    splits = json.loads((other / "splits.json").read_text())
    splits["paper"]["train"] = splits["paper"]["train"][:3]
    (other / "splits.json").write_text(json.dumps(splits))
    with pytest.raises(ValueError, match=r"data .*->.*data: the train images differ \(0 added, 1 removed"):
        train(_cfg(other, out, epochs=2, schedule="cosine", resume=True), model=_seeded())


def test_resume_records_the_settings_it_changed(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    train(_cfg(tiny_data, out, epochs=1), model=_seeded())
    train(_cfg(tiny_data, out, epochs=2, patience=7, resume=True), model=_seeded())
    assert "resuming with changed settings: epochs 1 -> 2, patience 4 -> 7" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumes"] == [{"epoch": 1, "step_in_epoch": 0,
                                   "changed": {"epochs": [1, 2], "patience": [4, 7]}}]
    assert metrics["config"]["epochs"] == 2 and len(metrics["epochs"]) == 2


def test_checkpoint_of_the_previous_format_still_resumes(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    train(_cfg(tiny_data, out, epochs=1), model=_seeded())
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    old_keys = ("model", "optimizer", "scaler", "loop", "rng_cpu", "rng_cuda", "model_name", "split")
    old_loop = ("epoch", "step_in_epoch", "loss_sum", "seen", "best_val_loss", "best_epoch", "bad_epochs",
                "history", "stopped_early", "epoch_seconds")
    old = {k: ckpt[k] for k in old_keys}
    old["loop"] = {k: ckpt["loop"][k] for k in old_loop}
    torch.save(old, out / "checkpoint.pt")
    train(_cfg(tiny_data, out, epochs=2, lr=5e-3, resume=True), model=_seeded())  # no check possible
    assert "predates recorded run settings" in capsys.readouterr().out
    assert len(json.loads((out / "metrics.json").read_text())["epochs"]) == 2


def test_mask_size_mismatch_is_found_before_the_first_step(tiny_data, tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(data / "RGMask" / "RGMask6_1_1.jpg")  # a val mask
    monkeypatch.setattr(trainer_mod, "build_loss", lambda name: pytest.fail("training started"))
    with pytest.raises(ValueError, match=r"RGMask6_1_1.jpg is 20x20 but image .*RG6_1_1.jpg is 32x32"):
        train(_cfg(data, tmp_path / "run"), model=_seeded())


def test_empty_masks_warn_about_polarity(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    for mask in (data / "RGMask").iterdir():
        Image.fromarray(np.zeros((TINY_SIZE, TINY_SIZE), np.uint8)).save(mask)
    with pytest.warns(UserWarning, match=r"4 of 4 training masks have no grain-interior pixel.*--polarity"):
        train(_cfg(data, tmp_path / "run"), model=_seeded())


def test_divergence_warns_and_the_first_non_finite_loss_stops(tiny_data, tmp_path, monkeypatch):
    values = iter([0.7, 1e13, float("nan"), 0.5])

    def build(name):
        def loss(logits, target):
            return logits.float().mean() * 0 + next(values)
        return loss

    monkeypatch.setattr(trainer_mod, "build_loss", build)
    out = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(FloatingPointError, match="loss became nan at epoch 1, step 3.*lower --lr"):
            train(_cfg(tiny_data, out, epochs=2, batch_size=1), model=_seeded())
    assert [str(w.message) for w in caught if "diverging" in str(w.message)] != []
    assert json.loads((out / "metrics.json").read_text())["stopped_reason"].startswith("non-finite loss (nan)")
    assert next(values) == 0.5  # stopped at the first non-finite loss


def test_bad_device_names_the_field(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N, got 'foo'"):
        train(_cfg(tiny_data, tmp_path / "run", device="foo"), model=_seeded())


def test_interrupted_checkpoint_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    trainer_mod._atomic_save({"a": torch.zeros(2)}, path)
    real_save = torch.save

    def interrupted(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer_mod._atomic_save({"a": torch.ones(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.zeros(2))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_bad_runs_are_refused_with_clear_errors_and_leave_nothing_behind(tiny_data, tmp_path):
    """From an audit of the trainer: each of these was a traceback, a silent no-op or an empty folder."""
    # a model with several output channels: the trainer trains one (was a shape error deep in the loop)
    out = tmp_path / "multi"
    with pytest.raises(ValueError, match="one output channel .* num_classes=3"):
        train(_cfg(tiny_data, out), model=_seeded(num_classes=3))
    assert not out.exists()  # the run failed before writing anything: no empty folder is left
    # --out naming a file
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(NotADirectoryError, match="is a file; expected a run directory"):
        train(_cfg(tiny_data, tmp_path / "notes.txt"), model=_seeded())
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    # a run of 1 epoch, resumed with a corrupt checkpoint, or with fewer epochs than it has run
    run = tmp_path / "run"
    train(_cfg(tiny_data, run), model=_seeded())
    with pytest.raises(ValueError, match="has already run 1 epochs; --epochs 0|epochs must be an int >= 1"):
        train(_cfg(tiny_data, run, epochs=0, resume=True), model=_seeded())
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="checkpoint.pt is not a readable checkpoint"):
        train(_cfg(tiny_data, broken, epochs=2, resume=True), model=_seeded())
    # sizes given as one int are squares; a model_kwargs string is refused by name
    cfg = _cfg(tiny_data, tmp_path / "x", input_size=32, crop_size=16)
    cfg.validate()
    assert cfg.input_size == [32, 32] and cfg.crop_size == [16, 16]
    with pytest.raises(ValueError, match="model_kwargs must be a dict"):
        _cfg(tiny_data, tmp_path / "y", model_kwargs='{"base_channels": 4}').validate()
    with pytest.raises(ValueError, match="weight_decay must be a number >= 0, got -1"):
        _cfg(tiny_data, tmp_path / "z", weight_decay=-1).validate()


def test_resume_with_fewer_epochs_than_done_is_refused(tiny_data, tmp_path):
    run = tmp_path / "run"
    train(_cfg(tiny_data, run, epochs=2), model=_seeded())
    before = (run / "metrics.json").read_bytes()
    with pytest.raises(ValueError, match="has already run 2 epochs; --epochs 1 would train nothing"):
        train(_cfg(tiny_data, run, epochs=1, resume=True), model=_seeded())
    assert (run / "metrics.json").read_bytes() == before


def test_out_inside_the_init_model_folder_is_refused(tiny_data, tmp_path):
    init = tmp_path / "init"
    _seeded().save_pretrained(init)
    files = sorted(p.name for p in init.iterdir())
    for out in (init, init / "run"):
        with pytest.raises(ValueError, match="is the --init model folder .* or inside it"):
            train(_cfg(tiny_data, out, init=str(init), model=None))
    assert sorted(p.name for p in init.iterdir()) == files


def test_colour_coded_masks_are_warned_about(tiny_data, tmp_path):
    """A mask whose colour channels differ is averaged to grey: pure red grains (mean 85) fall below 127."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    for mask in sorted((data / "RGMask").iterdir())[:2]:
        grey = np.asarray(Image.open(mask).convert("L"))
        rgb = np.zeros((*grey.shape, 3), np.uint8)
        rgb[..., 0] = np.where(grey > 127, 255, 0)  # grains drawn red on black
        Image.fromarray(rgb).save(mask.with_suffix(".png"))
        mask.unlink()
    with pytest.warns(UserWarning, match=r"2 of 4 training masks are colour images whose channels differ"):
        train(_cfg(data, tmp_path / "run"), model=_seeded())
