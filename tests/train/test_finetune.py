"""Fine-tuning: --init (weights, head, channels, records, resume), encoder freezing, --val-fraction,
the one-image fallback and the inverted-polarity warning."""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.helpers.tinydata import tiny_model, torchrun_train, train_config, write_tiny_folders

import grainseg
from grainseg.train import trainer as trainer_mod
from grainseg.train.finetune import EncoderFreeze, holdout_split, load_init_model
from grainseg.train.trainer import train


@pytest.fixture(scope="module")
def init_dir(tmp_path_factory):
    """A saved tiny U-Net (random weights, seed 0) to start from."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("init") / "unet"
    tiny_model().save_pretrained(folder)
    return folder


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_init_loads_the_saved_weights_and_records_them(tiny_data, tmp_path, init_dir):
    out = tmp_path / "ft"
    train(train_config(tiny_data, out, model=None, init=str(init_dir), freeze_encoder_epochs=1))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model"] == "unet"  # taken from the init model's architecture
    assert metrics["init"]["id"] == str(init_dir.resolve())
    assert metrics["init"]["sha256"] == _sha(init_dir / "model.safetensors")
    card = (out / "best" / "README.md").read_text()
    assert "Fine-tuned from" in card and metrics["init"]["sha256"] in card
    assert "base_model" not in card  # a local folder is no Hub id for the metadata
    start, tuned = load_file(str(init_dir / "model.safetensors")), load_file(str(out / "best" / "model.safetensors"))
    enc = set(grainseg.from_pretrained(init_dir).encoder_parameters())
    # the encoder was frozen for the only epoch: exactly the init's values; the decoder trained
    assert all(torch.equal(start[k], tuned[k]) for k in enc)
    assert any(not torch.equal(start[k], tuned[k]) for k in tuned if k not in enc and k in start
               and tuned[k].is_floating_point() and "running" not in k)


def test_without_freezing_the_encoder_trains_too(tiny_data, tmp_path, init_dir):
    out = tmp_path / "ft"
    train(train_config(tiny_data, out, init=str(init_dir)))
    start, tuned = load_file(str(init_dir / "model.safetensors")), load_file(str(out / "best" / "model.safetensors"))
    enc = grainseg.from_pretrained(init_dir).encoder_parameters()
    assert any(not torch.equal(start[k], tuned[k]) for k in enc)


def test_head_for_another_class_count_is_reinitialised(tmp_path):
    torch.manual_seed(0)
    tiny_model(num_classes=3).save_pretrained(tmp_path / "three")
    model, info = load_init_model(str(tmp_path / "three"))
    assert model.num_classes == 1 and info["saved_num_classes"] == 3
    assert sorted(info["head_reinitialised"]) == ["head.bias", "head.weight"]
    saved = load_file(str(tmp_path / "three" / "model.safetensors"))
    own = model.state_dict()
    assert all(torch.equal(saved[k], own[k]) for k in own if not k.startswith("head."))


def test_init_errors_name_the_problem(tiny_data, tmp_path, init_dir):
    with pytest.raises(ValueError, match="input channel"):
        load_init_model(str(init_dir), {"in_chans": 1})
    with pytest.raises(ValueError, match="drop --model"):
        load_init_model(str(init_dir), model="segnet")
    with pytest.raises(FileNotFoundError):
        load_init_model(str(tmp_path / "nothing-here"))
    torch.manual_seed(0)
    tiny_model(in_chans=2).save_pretrained(tmp_path / "two")  # RGB data cannot become 2 channels
    with pytest.raises(ValueError, match=r"cannot be fed to the --init model .*2 input channel"):
        train(train_config(tiny_data, tmp_path / "o", init=str(tmp_path / "two")))
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


def test_resume_refuses_another_init_or_changed_init_weights(tiny_data, tmp_path, init_dir):
    out = tmp_path / "ft"
    train(train_config(tiny_data, out, init=str(init_dir), epochs=1))
    torch.manual_seed(5)
    tiny_model().save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="init"):
        train(train_config(tiny_data, out, init=str(tmp_path / "other"), epochs=2, resume=True))
    moved = tmp_path / "same-place"
    torch.manual_seed(0)
    tiny_model().save_pretrained(moved)
    out2 = tmp_path / "ft2"
    train(train_config(tiny_data, out2, init=str(moved), epochs=1))
    torch.manual_seed(9)
    tiny_model().save_pretrained(moved, overwrite=True)  # same folder, other weights
    with pytest.raises(ValueError, match="starting model changed"):
        train(train_config(tiny_data, out2, init=str(moved), epochs=2, resume=True))
    train(train_config(tiny_data, out, init=str(init_dir), epochs=2, resume=True))  # unchanged: resumes


def test_mid_epoch_resume_with_init_freezing_and_extra_augment_is_bit_identical(tiny_data, tmp_path, init_dir,
                                                                               monkeypatch):
    kw = dict(init=str(init_dir), epochs=3, batch_size=1, checkpoint_every=1, freeze_encoder_epochs=1,
              augment_extra=["scale", "elastic", "invert", "gamma", "blur", "noise", "jpeg"], crop_size=[24, 24])
    train(train_config(tiny_data, tmp_path / "full", **kw))
    real = trainer_mod._validate
    calls = {"n": 0}

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(trainer_mod, "_validate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(train_config(tiny_data, tmp_path / "cut", **kw))
    monkeypatch.setattr(trainer_mod, "_validate", real)
    train(train_config(tiny_data, tmp_path / "cut", resume=True, **kw))
    a = load_file(str(tmp_path / "full" / "best" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "best" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="augment_extra"):
        train(train_config(tiny_data, tmp_path / "cut", resume=True, **{**kw, "augment_extra": ["invert"]}))


def test_encoder_freeze_restores_the_flags_it_found():
    model = tiny_model()
    enc = model.encoder_parameters()
    assert enc and len(enc) < len(dict(model.named_parameters()))
    first = next(iter(enc))
    enc[first].requires_grad_(False)  # frozen by the model itself (as SAM freezes its encoder)
    freeze = EncoderFreeze(model, 2)
    model.train()
    assert freeze.apply(0) and not any(p.requires_grad for p in enc.values())
    assert not model.get_submodule(model.encoder_modules[0]).training
    assert freeze.apply(1)
    assert not freeze.apply(2)
    assert not enc[first].requires_grad and all(p.requires_grad for n, p in enc.items() if n != first)


def test_every_registered_model_names_an_encoder():
    from grainseg.models.registry import create_model, list_models, tiny_config

    checked = 0
    for name in list_models():
        try:
            with torch.device("meta"):
                model = create_model(name, **tiny_config(name))
        except Exception:  # constructors that need real tensors or optional downloads
            continue
        enc = model.encoder_parameters()
        assert 0 < len(enc) < len(dict(model.named_parameters())), name
        checked += 1
    assert checked >= 8


def test_holdout_is_seeded_by_image_and_never_empty():
    names = [f"img{i}.png" for i in range(10)]
    tr, va = holdout_split(names, 0.2, 0)
    assert len(va) == 2 and len(tr) == 8 and not set(tr) & set(va) and sorted(tr + va) == sorted(names)
    assert holdout_split(names, 0.2, 0) == (tr, va)
    assert len({tuple(holdout_split(names, 0.2, s)[1]) for s in range(6)}) > 1
    assert holdout_split(names[:2], 0.01, 0)[1] and holdout_split(names[:2], 0.99, 0)[0]
    with pytest.warns(UserWarning, match="only one image"):
        assert holdout_split(names[:1], 0.2, 0) == (names[:1], names[:1])
    with pytest.raises(ValueError, match="val_fraction"):
        holdout_split(names, 1.0, 0)


def test_val_fraction_holds_images_out(tmp_path):
    data = write_tiny_folders(tmp_path / "d", n=5)
    out = tmp_path / "run"
    train(train_config(data, out, split=None, val_fraction=0.4), model=tiny_model())
    m = json.loads((out / "metrics.json").read_text())
    assert m["train_images"] == 3 and m["val_images"] == 2
    assert len(m["split_used"]["val_names"]) == 2 and not m["split_used"]["val_is_train"]
    assert "held out" in (out / "best" / "README.md").read_text()
    with pytest.raises(ValueError, match="--val-fraction"):
        train(train_config(data, tmp_path / "x", split="paper", val_fraction=0.2), model=tiny_model())
    with pytest.raises(ValueError, match="val_fraction"):
        train(train_config(data, tmp_path / "x", split=None, val_fraction=1.5), model=tiny_model())


def test_split_auto_uses_splits_json_or_holds_out(tiny_data, tmp_path):
    out = tmp_path / "a"
    train(train_config(tiny_data, out, split="auto", val_fraction=0.2), model=tiny_model())
    m = json.loads((out / "metrics.json").read_text())
    assert m["split_used"]["split"] == "paper" and m["val_images"] == 2
    data = write_tiny_folders(tmp_path / "d", n=4)
    train(train_config(data, tmp_path / "b", split="auto", val_fraction=0.25), model=tiny_model())
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert m["split_used"]["split"] is None and m["val_images"] == 1 and m["train_images"] == 3
    with pytest.raises(FileNotFoundError, match="splits file"):
        train(train_config(data, tmp_path / "c", split="auto", splits_file=str(tmp_path / "none.json")),
              model=tiny_model())
    with pytest.raises(IsADirectoryError, match="splits file .* is a folder; expected a splits.json file"):
        train(train_config(data, tmp_path / "c", split="auto", splits_file=str(data)), model=tiny_model())


def test_one_image_trains_with_the_documented_fallback(tmp_path):
    data = write_tiny_folders(tmp_path / "d", n=1)
    with pytest.warns(UserWarning, match="only one image"):
        train(train_config(data, tmp_path / "run", split=None, val_fraction=0.2), model=tiny_model())
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["train_images"] == 1 and m["val_images"] == 1 and m["split_used"]["val_is_train"]


def _invert_masks(data):
    for f in (data / "masks").iterdir():
        Image.fromarray(255 - np.asarray(Image.open(f))).save(f)


def test_masks_that_are_mostly_boundary_warn_about_polarity(tmp_path):
    data = write_tiny_folders(tmp_path / "d", n=3)
    _invert_masks(data)  # white boundaries now, read as grain by the default polarity
    with pytest.warns(UserWarning, match="looks inverted.*--polarity"):
        train(train_config(data, tmp_path / "a", split=None, val_fraction=0.34), model=tiny_model())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the right polarity: no warning at all
        train(train_config(data, tmp_path / "b", split=None, val_fraction=0.34, polarity="boundary"),
              model=tiny_model())


def test_crop_larger_than_the_network_input_is_refused_up_front(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="larger than the network input"):
        train(train_config(tiny_data, tmp_path / "o", crop_size=[64, 64]), model=tiny_model())


def test_validation_reports_the_all_grain_baseline(tiny_data, tmp_path):
    from grainseg.data.datasets import SegmentationDataset

    train(train_config(tiny_data, tmp_path / "run"), model=tiny_model())
    (ep,) = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"]
    val = SegmentationDataset(tiny_data, "paper", "val", preprocessing={"input_size": [32, 32]})
    expected = []
    for i in range(len(val)):
        f = float(val[i]["mask"].mean())
        expected.append(2 * f / (1 + f))
    assert ep["val_dice_all_grain"] == pytest.approx(sum(expected) / len(expected), rel=1e-6)


def test_a_model_instance_and_init_together_are_refused(tiny_data, tmp_path, init_dir):
    with pytest.raises(ValueError, match="not both"):
        train(train_config(tiny_data, tmp_path / "o", init=str(init_dir)), model=tiny_model())


def test_ddp_with_init_and_a_frozen_encoder(tiny_data, tmp_path, init_dir):
    out = tmp_path / "ddp"
    metrics = torchrun_train(out, ["--init", str(init_dir), "--data", str(tiny_data), "--split", "paper",
                                   "--epochs", "2", "--freeze-encoder-epochs", "1", "--batch-size", "1",
                                   "--lr", "1e-3"], timeout=240)["metrics"]
    assert metrics["world_size"] == 2 and len(metrics["epochs"]) == 2
    start, tuned = load_file(str(init_dir / "model.safetensors")), load_file(str(out / "best" / "model.safetensors"))
    enc = grainseg.from_pretrained(init_dir).encoder_parameters()
    encoder_moved = any(not torch.equal(start[k], tuned[k]) for k in enc)
    assert encoder_moved == (metrics["best_epoch"] == 2)  # frozen in epoch 1, trained in epoch 2


@pytest.mark.parametrize("select_on", ["val_boundary_f1", "val_dice"])
def test_select_on_picks_the_epoch_with_the_highest_score(tiny_data, tmp_path, select_on):
    out = tmp_path / "run"
    train(train_config(tiny_data, out, epochs=4, patience=0, lr=3e-3, select_on=select_on), model=tiny_model())
    m = json.loads((out / "metrics.json").read_text())
    scores = [e[select_on] for e in m["epochs"]]
    assert all(0.0 <= e["val_boundary_f1"] <= 1.0 for e in m["epochs"])
    assert m["best_epoch"] == 1 + scores.index(max(scores))  # the first of the highest
    card = (out / "best" / "README.md").read_text()
    assert f"| selected_on | {select_on} |" in card
    with pytest.raises(ValueError, match="select_on"):
        train(train_config(tiny_data, tmp_path / "x", select_on="val_iou"), model=tiny_model())
    with pytest.raises(ValueError, match="select_on"):
        train(train_config(tiny_data, out, epochs=5, patience=0, lr=3e-3, resume=True), model=tiny_model())
