"""The trainer on a tiny model and tiny data: outputs, reload, seeding, resume, early stopping, DDP."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers.tinydata import TINY_SIZE, tiny_model, torchrun_train, train_config

import grainseg
from grainseg.train import trainer as trainer_mod
from grainseg.train.trainer import train


_cfg = train_config


def _weights(out):
    return load_file(str(Path(out) / "best" / "model.safetensors"))


def test_two_step_run_writes_checkpoint_metrics_and_reloads(tiny_data, tmp_path):
    out = tmp_path / "run"
    summary = train(_cfg(tiny_data, out), model=tiny_model())  # 4 train images, batch 2: 2 steps
    assert summary["best_epoch"] == 1 and summary["epochs_run"] == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_images"] == 4 and metrics["val_images"] == 2
    (ep,) = metrics["epochs"]
    assert {"train_loss", "val_loss", "val_dice", "val_iou", "seconds", "train_images_per_s"} <= set(ep)
    assert 0.0 <= ep["val_dice"] <= 1.0 and ep["train_loss"] > 0
    assert (out / "checkpoint.pt").is_file()
    model = grainseg.from_pretrained(out / "best")
    assert model.preprocessing["train_image_size"] == [TINY_SIZE, TINY_SIZE]
    assert model.preprocessing["input_size"] == [TINY_SIZE, TINY_SIZE]
    # the training masks' mean intercept, which predict's rescale="auto" matches
    from grainseg.data.datasets import SegmentationDataset
    from grainseg.inference.rescale import training_intercept

    expect = training_intercept(SegmentationDataset(tiny_data, "paper", "train"), [TINY_SIZE, TINY_SIZE])
    assert expect is not None and model.preprocessing["grain_intercept_px"] == pytest.approx(expect)
    width = SegmentationDataset(tiny_data, "paper", "train", preprocessing=model.preprocessing).boundary_width()
    assert width is not None and model.preprocessing["boundary_width_px"] == pytest.approx(width)
    card = (out / "best" / "README.md").read_text()
    assert "exone" in card and "val_loss" in card
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["model"][k]), k
    with pytest.raises(FileExistsError, match="--resume"):
        train(_cfg(tiny_data, out), model=tiny_model())


def test_same_seed_same_weights_other_seed_differs(tiny_data, tmp_path):
    train(_cfg(tiny_data, tmp_path / "a"), model=_seeded_model(0))
    train(_cfg(tiny_data, tmp_path / "b"), model=_seeded_model(0))
    train(_cfg(tiny_data, tmp_path / "c", seed=1), model=_seeded_model(0))
    a, b, c = (_weights(tmp_path / n) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def _seeded_model(seed):
    torch.manual_seed(seed)
    return tiny_model()


def test_resume_mid_epoch_matches_an_uninterrupted_run(tiny_data, tmp_path, monkeypatch):
    cfg = dict(epochs=2, batch_size=1, checkpoint_every=1)
    train(_cfg(tiny_data, tmp_path / "full", **cfg), model=_seeded_model(0))

    real_validate = trainer_mod._validate
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # during the second epoch's validation: its last step was not checkpointed
            raise KeyboardInterrupt
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "_validate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_data, tmp_path / "cut", **cfg), model=_seeded_model(0))
    monkeypatch.setattr(trainer_mod, "_validate", real_validate)
    ckpt = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert ckpt["loop"]["epoch"] == 1 and ckpt["loop"]["step_in_epoch"] == 3
    train(_cfg(tiny_data, tmp_path / "cut", resume=True, **cfg), model=_seeded_model(1))
    full, cut = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert all(torch.equal(full[k], cut[k]) for k in full)
    m_full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    m_cut = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert [e["val_loss"] for e in m_full["epochs"]] == [e["val_loss"] for e in m_cut["epochs"]]
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(_cfg(tiny_data, tmp_path / "never", resume=True), model=tiny_model())


def test_early_stopping_on_validation_loss(tiny_data, tmp_path):
    # min_delta so large that no epoch after the first counts as an improvement
    summary = train(_cfg(tiny_data, tmp_path / "es", epochs=6, patience=2, min_delta=100.0, batch_size=4),
                    model=tiny_model())
    assert summary["stopped_early"] and summary["epochs_run"] == 3 and summary["best_epoch"] == 1


def test_bad_config_raises(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        train(_cfg(tiny_data, tmp_path / "x", epochs=0))
    with pytest.raises(ValueError, match="lr"):
        train(_cfg(tiny_data, tmp_path / "x", lr=-1.0))
    with pytest.raises(ValueError, match="amp"):
        train(_cfg(tiny_data, tmp_path / "x", amp="fast"), model=tiny_model())


def test_bfloat16_autocast_on_a_cpu_without_native_bf16_warns_that_it_is_slow(monkeypatch):
    assert isinstance(trainer_mod.cpu_has_native_bf16(), bool)
    monkeypatch.setattr(trainer_mod, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no native bfloat16.*amp='off'"):
        assert trainer_mod.amp_setting("on", torch.device("cpu")) == (True, torch.bfloat16)
    monkeypatch.setattr(trainer_mod, "cpu_has_native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert trainer_mod.amp_setting("on", torch.device("cpu")) == (True, torch.bfloat16)
        assert trainer_mod.amp_setting("off", torch.device("cpu")) == (False, torch.bfloat16)


def test_bfloat16_autocast_on_the_cpu_is_opt_in(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_mod, "cpu_has_native_bf16", lambda: True)  # the speed warning is tested above
    assert trainer_mod.amp_setting("auto", torch.device("cpu")) == (False, torch.bfloat16)
    assert trainer_mod.amp_setting("on", torch.device("cpu")) == (True, torch.bfloat16)
    assert trainer_mod.amp_setting("auto", torch.device("cuda")) == (True, torch.float16)
    out = tmp_path / "bf16"
    summary = train(_cfg(tiny_data, out, amp="on"), model=tiny_model())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["amp"] == "bfloat16" and summary["epochs_run"] == 1
    assert all(torch.isfinite(v).all() for v in _weights(out).values())
    fp32 = json.loads((_run_metrics(tiny_data, tmp_path / "fp32")).read_text())
    assert fp32["amp"] is False


def _run_metrics(tiny_data, out):
    train(_cfg(tiny_data, out), model=tiny_model())
    return out / "metrics.json"


def test_fused_adam_is_the_default_and_matches_the_loop(tiny_data, tmp_path):
    fused = train(_cfg(tiny_data, tmp_path / "fused"), model=tiny_model())
    loop = train(_cfg(tiny_data, tmp_path / "loop", fused_adam=False), model=tiny_model())
    assert fused["epochs_run"] == loop["epochs_run"] == 1
    a, b = _weights(tmp_path / "fused"), _weights(tmp_path / "loop")
    moved = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert 0 < moved < 1e-5  # the same update up to float rounding, not the same bits
    rec = json.loads((tmp_path / "fused" / "metrics.json").read_text())["config"]
    assert rec["fused_adam"] is True


def test_resume_of_a_checkpoint_from_before_fused_adam_keeps_the_loop(tiny_data, tmp_path, capsys):
    out = tmp_path / "old"
    train(_cfg(tiny_data, out, epochs=1, fused_adam=False), model=tiny_model())
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    del ckpt["config"]["fused_adam"]  # as written before the field existed
    torch.save(ckpt, out / "checkpoint.pt")
    train(_cfg(tiny_data, out, epochs=2, resume=True), model=tiny_model())
    assert "predates fused Adam" in capsys.readouterr().out
    rec = json.loads((out / "metrics.json").read_text())["config"]
    assert rec["fused_adam"] is False


def test_ddp_two_gloo_processes(tiny_data, tmp_path):
    out = tmp_path / "ddp"
    kwargs = json.dumps({"base_channels": 4, "preprocessing": {"input_size": [TINY_SIZE, TINY_SIZE]}})
    run = torchrun_train(out, ["--model", "unet", "--model-kwargs", kwargs, "--data", str(tiny_data), "--split",
                               "paper", "--epochs", "1", "--batch-size", "1", "--lr", "1e-3"], timeout=180)
    metrics, res = run["metrics"], run["result"]
    assert metrics["world_size"] == 2 and len(metrics["epochs"]) == 1
    assert res.stdout.count("best epoch 1") == 1  # only rank 0 reports
    grainseg.from_pretrained(out / "best")


def test_export_half_is_float16_and_reloads_close(tmp_path):
    from grainseg.train.export import export_half

    model = _seeded_model(0).eval()
    model.save_pretrained(tmp_path / "src")
    weights = export_half(tmp_path / "src", tmp_path / "dst", metrics={"test_dice": 0.5}, dataset="tiny")
    dtypes = {v.dtype for k, v in load_file(str(weights)).items() if "num_batches" not in k}
    assert dtypes == {torch.float16}
    assert weights.stat().st_size < (tmp_path / "src" / "model.safetensors").stat().st_size * 0.6
    reloaded = grainseg.from_pretrained(tmp_path / "dst")
    x = torch.rand(1, 3, TINY_SIZE, TINY_SIZE)
    with torch.no_grad():
        assert torch.allclose(model(x), reloaded(x), atol=5e-3)
    assert "test_dice" in (tmp_path / "dst" / "README.md").read_text()
    with pytest.raises(ValueError, match="over the limit"):
        export_half(tmp_path / "src", tmp_path / "dst2", max_bytes=100)


def test_cosine_schedule_is_a_function_of_position_and_recorded(tiny_data, tmp_path):
    cfg = _cfg(tiny_data, tmp_path / "c", epochs=4, schedule="cosine", warmup_epochs=1.0, lr=1e-3)
    lrs = [trainer_mod.lr_at(cfg, e, s, 2) for e in range(4) for s in range(2)]
    assert lrs[0] == pytest.approx(0.5e-3) and lrs[1] == pytest.approx(1e-3)  # warm-up over epoch 1
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:])) and lrs[-1] < 0.1e-3  # then decays towards 0
    assert trainer_mod.lr_at(_cfg(tiny_data, tmp_path), 3, 1, 2) == 1e-3  # constant stays constant
    train(cfg, model=tiny_model())
    history = json.loads((tmp_path / "c" / "metrics.json").read_text())["epochs"]
    recorded = [ep["lr"] for ep in history]
    assert recorded == pytest.approx([lrs[1], lrs[3], lrs[5], lrs[7]])
    with pytest.raises(ValueError, match="schedule"):
        train(_cfg(tiny_data, tmp_path / "bad", schedule="step"), model=tiny_model())


def test_epoch_items_draws_a_small_training_set_several_times_an_epoch(tiny_data, tmp_path, capsys):
    # 4 training images, batch 2: 2 steps an epoch; at least 10 items an epoch: 3 draws of each, 6 steps
    train(_cfg(tiny_data, tmp_path / "once"), model=_seeded_model(0))
    train(_cfg(tiny_data, tmp_path / "drawn", epoch_items=10), model=_seeded_model(0))
    assert "each drawn 3 times an epoch" in capsys.readouterr().out

    def adam_steps(run):
        state = torch.load(tmp_path / run / "checkpoint.pt", weights_only=True)["optimizer"]["state"]
        return int(next(iter(state.values()))["step"])

    assert adam_steps("once") == 2 and adam_steps("drawn") == 6
    m = json.loads((tmp_path / "drawn" / "metrics.json").read_text())
    assert m["epoch_draws"] == 3 and m["config"]["epoch_items"] == 10 and m["train_images"] == 4
    with pytest.raises(ValueError, match="epoch_items"):
        train(_cfg(tiny_data, tmp_path / "bad", epoch_items=-1), model=tiny_model())
    with pytest.raises(ValueError, match="epoch_items 10 -> 0"):
        train(_cfg(tiny_data, tmp_path / "drawn", resume=True, epochs=2), model=tiny_model())


def test_resume_of_a_checkpoint_from_before_epoch_items_keeps_one_draw(tiny_data, tmp_path, capsys):
    out = tmp_path / "old"
    train(_cfg(tiny_data, out, epochs=1), model=tiny_model())
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    del ckpt["config"]["epoch_items"]  # as written before the field existed
    torch.save(ckpt, out / "checkpoint.pt")
    train(_cfg(tiny_data, out, epochs=2, resume=True, epoch_items=10), model=tiny_model())  # finetune's new default
    assert "predates --epoch-items" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["epoch_items"] == 0 and m["epoch_draws"] == 1


def test_boundary_grow_is_recorded_and_fixed_on_resume(tiny_data, tmp_path):
    out = tmp_path / "grown"
    train(_cfg(tiny_data, out, epochs=1, boundary_grow=1), model=tiny_model())
    assert json.loads((out / "metrics.json").read_text())["config"]["boundary_grow"] == 1
    with pytest.raises(ValueError, match="boundary_grow 1 -> 0"):
        train(_cfg(tiny_data, out, epochs=2, resume=True), model=tiny_model())
    with pytest.raises(ValueError, match="boundary_grow .* must be an int >= 0"):
        train(_cfg(tiny_data, tmp_path / "bad", boundary_grow=-1), model=tiny_model())
    with pytest.raises(ValueError, match="boundary_grow 40 px leaves no grain-interior pixel in .*RGMask.* choose a "
                                         "smaller --boundary-grow"):
        train(_cfg(tiny_data, tmp_path / "wide", boundary_grow=40), model=tiny_model())
    old = tmp_path / "old"  # a checkpoint from before the option was made with the masks as drawn
    train(_cfg(tiny_data, old, epochs=1), model=tiny_model())
    ckpt = torch.load(old / "checkpoint.pt", weights_only=True)
    del ckpt["config"]["boundary_grow"]
    torch.save(ckpt, old / "checkpoint.pt")
    with pytest.raises(ValueError, match="boundary_grow 0 -> 2"):
        train(_cfg(tiny_data, old, epochs=2, resume=True, boundary_grow=2), model=tiny_model())
    train(_cfg(tiny_data, old, epochs=2, resume=True), model=tiny_model())
    assert json.loads((old / "metrics.json").read_text())["config"]["boundary_grow"] == 0


def test_boundary_grow_auto_widens_the_masks_to_the_band_width_the_start_model_learnt(tiny_data, tmp_path, capsys):
    from grainseg.data.datasets import SegmentationDataset

    drawn = SegmentationDataset(tiny_data, "paper", "train", preprocessing={"input_size": [32, 32]}).boundary_width()
    learnt = drawn + 4.2  # bands 4.2 px wider than the masks': 2 px a side

    def start():
        return tiny_model(preprocessing={"input_size": [32, 32], "boundary_width_px": learnt})

    train(_cfg(tiny_data, tmp_path / "auto", boundary_grow="auto"), model=start())
    assert "widening each side by 2 px" in capsys.readouterr().out
    m = json.loads((tmp_path / "auto" / "metrics.json").read_text())
    assert m["boundary_grow_px"] == 2 and m["config"]["boundary_grow"] == "auto"
    grown = SegmentationDataset(tiny_data, "paper", "train", preprocessing={"input_size": [32, 32]},
                                boundary_grow=2).boundary_width()
    assert m["preprocessing"]["boundary_width_px"] == pytest.approx(grown) and grown > drawn + 2
    train(_cfg(tiny_data, tmp_path / "asis"), model=start())  # not asked: a note, the masks as drawn
    assert "--boundary-grow auto would widen each side by 2 px" in capsys.readouterr().out
    assert json.loads((tmp_path / "asis" / "metrics.json").read_text())["boundary_grow_px"] == 0
    train(_cfg(tiny_data, tmp_path / "none", boundary_grow="auto"), model=tiny_model())  # nothing to match
    assert "does not record it (preprocessing['boundary_width_px']" in capsys.readouterr().out
    assert json.loads((tmp_path / "none" / "metrics.json").read_text())["boundary_grow_px"] == 0
    with pytest.raises(ValueError, match="boundary_grow .an int >= 0 or 'auto'. .* got 'wide'"):
        train(_cfg(tiny_data, tmp_path / "bad", boundary_grow="wide"), model=tiny_model())
