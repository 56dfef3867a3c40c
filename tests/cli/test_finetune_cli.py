"""``grainseg finetune`` and ``grainseg train --init`` end to end on tiny data."""
from __future__ import annotations

import json

import pytest

from tests.helpers.benchmarks import load_benchmark
from tests.helpers.tinydata import write_tiny_folders

from grainseg.cli import build_parser, main
from grainseg.cli.train import DEFAULT_INIT, _val_fraction


def test_finetune_defaults_are_the_small_data_ones():
    args = build_parser().parse_args(["finetune", "--data", "d", "--out", "o"])
    assert args.init == DEFAULT_INIT and args.split == "auto" and _val_fraction(args) == 0.2
    assert args.schedule == "cosine" and args.lr == 1e-4 and args.freeze_encoder_epochs == 2
    assert args.crop_size == [128, 128] and args.augment_extra == "" and args.max_pixels is None
    assert args.epoch_items == 64
    assert args.boundary_grow == "auto"
    assert build_parser().parse_args(["finetune", "--data", "d", "--out", "o", "--boundary-grow", "3"]).boundary_grow == 3
    assert build_parser().parse_args(["finetune", "--data", "d", "--out", "o", "--boundary-grow", "auto"]).boundary_grow == "auto"
    plain = build_parser().parse_args(["train", "--data", "d", "--out", "o"])
    assert plain.init is None and plain.split == "paper" and plain.freeze_encoder_epochs == 0
    assert plain.epoch_items == 0
    assert plain.boundary_grow == 0
    assert _val_fraction(plain) is None and plain.model is None


def test_finetune_with_a_named_split_uses_its_val_list_not_the_default_hold_out():
    named = build_parser().parse_args(["finetune", "--data", "d", "--out", "o", "--split", "grouped"])
    assert _val_fraction(named) is None  # was: 0.2, which the trainer refused next to a named split
    none = build_parser().parse_args(["finetune", "--data", "d", "--out", "o", "--split", "none"])
    assert _val_fraction(none) == 0.2
    asked = build_parser().parse_args(["finetune", "--data", "d", "--out", "o", "--split", "grouped",
                                       "--val-fraction", "0.3"])
    assert _val_fraction(asked) == 0.3  # asked for explicitly: the trainer's clear error stays


def test_finetune_the_bundled_default_on_a_folder(tmp_path, capsys):
    data = write_tiny_folders(tmp_path / "mine", n=3)
    out = tmp_path / "ft"
    args = ["finetune", "--data", str(data), "--out", str(out), "--epochs", "2", "--input-size", "32",
            "--crop-size", "32", "--freeze-encoder-epochs", "1", "--augment-extra", "gamma,blur", "--no-progress",
            "--epoch-items", "4"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "starting from grainseg/vmunet-aspp-small-exone316l" in text and "encoder frozen" in text
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["model"] == "vmunet_aspp_small" and m["init"]["id"] == DEFAULT_INIT
    assert m["config"]["augment_extra"] == ["gamma", "blur"] and m["config"]["schedule"] == "cosine"
    assert m["train_images"] == 2 and m["val_images"] == 1 and m["epoch_draws"] == 2  # 2 images, >= 4 items
    card = (out / "best" / "README.md").read_text()
    assert f"Fine-tuned from `{DEFAULT_INIT}`" in card and f"base_model: {DEFAULT_INIT}" in card


def test_cli_errors_of_the_finetune_options(tmp_path, capsys):
    data = write_tiny_folders(tmp_path / "mine", n=2)
    base = ["--data", str(data), "--out", str(tmp_path / "o"), "--no-progress", "--epochs", "1"]
    assert main(["finetune", *base, "--augment-extra", "sharpen"], catch_errors=True) == 2
    assert "unknown extra augmentation" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["finetune", *base, "--boundary-grow", "-1"])
    assert "expected 'auto' or pixels (an int >= 0), got '-1'" in capsys.readouterr().err
    assert main(["finetune", *base, "--model", "unet"], catch_errors=True) == 2
    assert "drop --model" in capsys.readouterr().err
    assert main(["finetune", *base, "--init", str(tmp_path / "missing")], catch_errors=True) == 2
    assert main(["finetune", *base, "--model-kwargs", '{"in_chans": 1}'], catch_errors=True) == 2
    assert "input channel" in capsys.readouterr().err
    assert main(["train", *base, "--model", "unet", "--split", "paper", "--val-fraction", "0.5"],
                catch_errors=True) == 2


def test_augment_ablation_runs_each_option_and_reuses_runs(tmp_path, capsys):
    augment_ablation = load_benchmark("augment_ablation")

    data = write_tiny_folders(tmp_path / "mine", n=3)
    kw = json.dumps({"base_channels": 4})
    rest = ["--model", "unet", "--model-kwargs", kw, "--data", str(data), "--epochs", "1", "--input-size", "32"]
    out = tmp_path / "abl"
    assert augment_ablation.main(["--out", str(out), "--options", "invert,jpeg", "--command", "train", "--",
                                  *rest, "--split", "none", "--val-fraction", "0.34"]) == 0
    summary = json.loads((out / "ablation.json").read_text())
    assert [r["option"] for r in summary["rows"]] == ["none", "invert", "jpeg"]
    assert all(r["best_epoch"] == 1 for r in summary["rows"]) and summary["rows"][0]["val_loss_vs_none"] == 0
    assert json.loads((out / "jpeg" / "metrics.json").read_text())["config"]["augment_extra"] == ["jpeg"]
    # a second call resumes (nothing left to train) instead of refusing the existing run folders
    assert augment_ablation.main(["--out", str(out), "--options", "invert", "--command", "train", "--",
                                  *rest, "--split", "none", "--val-fraction", "0.34"]) == 0
    assert "ranking by val loss" in capsys.readouterr().out
