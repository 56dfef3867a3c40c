"""Run as the program, user errors are one ``error:`` line and exit 2 (train and evaluate as predict)."""
from __future__ import annotations

import json
import sys
import warnings

import pytest

from tests.helpers.tinydata import TINY_SIZE, write_tiny_exone

from grainseg.cli import main

KW = json.dumps({"base_channels": 4, "preprocessing": {"input_size": [TINY_SIZE, TINY_SIZE]}})


def _one_error_line(capsys, prog):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    return lines[0]


def test_train_usage_errors_are_one_line_exit_2(tmp_path, capsys, monkeypatch):
    data = write_tiny_exone(tmp_path / "exone")
    base = ["train", "--model", "unet", "--model-kwargs", KW, "--data", str(data), "--no-progress"]
    assert main(base + ["--batch-size", "0", "--out", str(tmp_path / "o")], catch_errors=True) == 2
    assert "batch_size" in _one_error_line(capsys, "grainseg train")
    assert main(["train", "--model", "nope", "--data", str(data), "--out", str(tmp_path / "o2")], catch_errors=True) == 2
    assert "unknown model 'nope'" in _one_error_line(capsys, "grainseg train")
    assert main(base + ["--device", "foo", "--out", str(tmp_path / "o3")], catch_errors=True) == 2
    assert "device must be auto, cpu, cuda or cuda:N" in _one_error_line(capsys, "grainseg train")
    monkeypatch.setattr(sys, "argv", ["grainseg", *base, "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o4")])
    assert main() == 2  # the console script calls main() without argv
    assert "does not exist" in _one_error_line(capsys, "grainseg train")
    with pytest.raises(ValueError):  # from Python with argv, the exception still propagates
        main(base + ["--batch-size", "0", "--out", str(tmp_path / "o")])


def test_evaluate_usage_errors_are_one_line_exit_2(tmp_path, capsys):
    data = write_tiny_exone(tmp_path / "exone")
    args = ["evaluate", "--model", str(tmp_path / "no_model"), "--data", str(data), "--json", str(tmp_path / "e.json")]
    assert main(args, catch_errors=True) == 2
    assert "no_model" in _one_error_line(capsys, "grainseg evaluate")


def test_warnings_print_as_one_line(capsys, monkeypatch):
    import grainseg.cli.models as models_cli

    def warn(args):
        warnings.warn("something odd", UserWarning)
        return 0

    monkeypatch.setattr(models_cli, "run", warn)
    monkeypatch.setattr(sys, "argv", ["grainseg", "models"])
    assert main() == 0
    assert capsys.readouterr().err.strip() == "grainseg models: warning: something odd"


def test_keyboard_interrupt_is_one_line_exit_130(tmp_path, capsys, monkeypatch):
    import grainseg.train.trainer as trainer

    def interrupted(cfg, model=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted)
    data = write_tiny_exone(tmp_path / "exone")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "o")], catch_errors=True) == 130
    assert capsys.readouterr().err.strip() == "grainseg train: interrupted"




def test_evaluate_checks_the_json_path_before_evaluating(tmp_path, capsys, monkeypatch):
    import grainseg.train.evaluation as evaluation

    data = write_tiny_exone(tmp_path / "exone")
    monkeypatch.setattr(evaluation, "evaluate_model", lambda *a, **k: pytest.fail("evaluated first"))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    args = ["evaluate", "--data", str(data), "--json", str(blocker / "sub" / "e.json")]
    assert main(args, catch_errors=True) == 2
    assert "--json" in _one_error_line(capsys, "grainseg evaluate")
    assert main(["evaluate", "--data", str(data), "--json", str(tmp_path)], catch_errors=True) == 2
    assert "is a folder" in _one_error_line(capsys, "grainseg evaluate")
    assert main(["evaluate", "--data", str(data), "--json", str(tmp_path / "e.json"), "--device", "foo"],
                catch_errors=True) == 2
    assert "--device must be" in _one_error_line(capsys, "grainseg evaluate")


def test_conflicting_or_ignored_options_are_refused(tmp_path, capsys):
    """--subset without --split, --watershed with the watershed method and a bare unknown model name are
    one-line errors, not options dropped without a word (the model name without a slow Hub lookup)."""
    from grainseg.cli.predict import EXAMPLE_IMAGE

    data = write_tiny_exone(tmp_path / "exone")
    assert main(["evaluate", "--data", str(data), "--split", "none", "--subset", "val",
                 "--json", str(tmp_path / "e.json")], catch_errors=True) == 2
    assert "--subset val needs --split" in _one_error_line(capsys, "grainseg evaluate")
    assert main(["validate", "--data", str(data), "--subset", "val", "--out", str(tmp_path / "v")],
                catch_errors=True) == 2
    assert "--subset val needs --split" in _one_error_line(capsys, "grainseg validate")
    assert not (tmp_path / "e.json").exists() and not (tmp_path / "v").exists()
    out = tmp_path / "p"
    assert main(["predict", str(EXAMPLE_IMAGE), "--watershed", "--out", str(out), "--quiet"]) == 2
    assert "--watershed applies to --method 'threshold' only" in _one_error_line(capsys, "grainseg predict")
    assert main(["predict", str(EXAMPLE_IMAGE), "--model", "no_such_model", "--out", str(out), "--quiet"]) == 1
    line = _one_error_line(capsys, "grainseg predict")
    assert "'no_such_model' is not a folder, a pretrained id" in line and "grainseg/vmunet-aspp" in line
    assert not out.exists()


def test_python_api_names_bad_devices_folders_and_instance_parameters(tmp_path):
    import numpy as np
    import torch

    from grainseg.data.io import read_image
    from grainseg.grains import GrainReport
    from grainseg.inference.predict import load_model, predict_proba

    net = torch.nn.Conv2d(3, 1, 1)
    image = np.zeros((16, 16), np.uint8)
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N, got 'tpu'"):
        predict_proba(net, image, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device cuda: CUDA is not available"):
            predict_proba(net, image, device="cuda")
    with pytest.raises(ValueError, match="device must be"):
        load_model(None, device="tpu")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder, not an image file"):
        read_image(tmp_path / "dir.png")
    prob = np.full((16, 16), 0.9, np.float32)
    with pytest.raises(ValueError, match="min_grain_area must be a non-negative int"):
        GrainReport.from_probability(image, prob, min_grain_area=2.5)
    with pytest.raises(ValueError, match="watershed applies to method 'threshold' only"):
        GrainReport.from_probability(image, prob, watershed=True)
    small = GrainReport.from_probability(image, prob, method="threshold", min_grain_area=10 ** 6)
    assert any("smaller than min_grain_area" in w for w in small.warnings)
    import grainseg

    for kw in ({"device": "foo"}, {"map_location": "foo"}):
        with pytest.raises(ValueError, match="map_location must be auto, cpu, cuda or cuda:N, got 'foo'"):
            grainseg.from_pretrained("grainseg/vmunet-aspp-small-exone316l", **kw)
    assert next(grainseg.from_pretrained("grainseg/vmunet-aspp-small-exone316l", device="cpu").parameters()).is_cpu
    net2 = grainseg.create_model("unet", base_channels=4)
    with pytest.raises(ValueError, match="save_directory must be a folder path, got None"):
        net2.save_pretrained(None)
    from grainseg.data.datasets import detect_layout, load_splits

    with pytest.raises(IsADirectoryError, match="is a folder; expected a splits.json file"):
        load_splits(tmp_path)
    (tmp_path / "f.json").write_text("{}")
    with pytest.raises(NotADirectoryError, match="is a file; expected a folder"):
        detect_layout(tmp_path / "f.json")


def test_direct_link_is_checked_against_the_threshold(tmp_path, capsys):
    from grainseg.cli.predict import EXAMPLE_IMAGE

    for bad in ("0.3", "1", "nan"):
        assert main(["predict", str(EXAMPLE_IMAGE), "--direct-link", bad, "--out", str(tmp_path / "p"), "--quiet"]) == 2
        assert "--direct-link must be a probability in [--threshold (0.5), 1)" in _one_error_line(capsys, "grainseg predict")
