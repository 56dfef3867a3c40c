"""``grainseg predict`` end to end with a tiny saved model: outputs, no-overwrite, bad inputs, batch goes on."""
import json

import numpy as np
import pytest
from PIL import Image

import grainseg
from grainseg.cli import main
from grainseg.cli.predict import EXAMPLE_IMAGE
from grainseg.data.synthetic import make_micrograph
from grainseg.models.registry import tiny_config

SUFFIXES = ["_prob.png", "_mask.png", "_overlay.png", "_labels.tif", "_grains.csv", "_summary.json"]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A random-weight tiny VM-UNet-ASPP saved with save_pretrained (network input 64 for 256 px training images)."""
    d = tmp_path_factory.mktemp("model") / "tiny"
    prep = {"normalize": "minmax", "input_size": [64, 64], "train_image_size": [256, 256]}
    grainseg.create_model("vmunet_aspp_small", **tiny_config("vmunet_aspp_small"), preprocessing=prep).save_pretrained(d)
    return d


@pytest.fixture()
def small_image(tmp_path):
    path = tmp_path / "in" / "good.png"
    path.parent.mkdir()
    Image.fromarray(make_micrograph((96, 128), n_grains=8, seed=2).image).save(path)
    return path


def error_lines(err):
    return [line for line in err.splitlines() if "error:" in line]


def test_example_end_to_end(tiny_model_dir, tmp_path, capsys):
    assert EXAMPLE_IMAGE.is_file() and EXAMPLE_IMAGE.stat().st_size < 300_000
    out = tmp_path / "out"
    rc = main(["predict", "--example", "--model", str(tiny_model_dir), "--scale", "0.8", "--out", str(out), "--quiet"])
    assert rc == 0
    for suffix in SUFFIXES:
        assert (out / f"sample_micrograph{suffix}").is_file(), suffix
    summary = json.loads((out / "sample_micrograph_summary.json").read_text())
    assert summary["model"]["id"] == str(tiny_model_dir) and len(summary["model"]["sha256"]) == 64
    assert "revision" in summary["model"] and summary["scale_um_per_px"] == 0.8 and summary["unit"] == "um"
    assert set(summary["astm_e112"]) >= {"G_planimetric", "G_planimetric_ci95", "G_intercept", "G_intercept_ci95"}
    header = (out / "sample_micrograph_grains.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["label", "area_um2", "interior_area_um2", "equivalent_diameter_um"]
    assert "touches_border" in header and "aspect_ratio" in header and "orientation_deg" in header
    prob = np.array(Image.open(out / "sample_micrograph_prob.png"))
    assert prob.shape == np.array(Image.open(EXAMPLE_IMAGE)).shape[:2]
    assert "sample_micrograph.png" in capsys.readouterr().out


def test_no_overwrite_then_overwrite(tiny_model_dir, small_image, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["predict", str(small_image), "--model", str(tiny_model_dir), "--out", str(out), "--quiet"]
    assert main(args) == 0
    csv_file = out / "good_grains.csv"
    csv_file.write_text("user data\n")
    capsys.readouterr()
    assert main(args) == 1
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "--overwrite" in err[0] and "good.png" in err[0]
    assert csv_file.read_text() == "user data\n"  # untouched
    assert main(args + ["--overwrite"]) == 0
    assert csv_file.read_text().startswith("label,area_px2")  # no scale: pixel units


def test_bad_files_fail_alone_and_the_batch_finishes(tiny_model_dir, small_image, tmp_path, capsys):
    folder = small_image.parent
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    import tifffile

    tifffile.imwrite(folder / "gray16.tif", make_micrograph((80, 90), n_grains=6, seed=4).image.astype(np.uint16) * 257)
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    out = tmp_path / "out"
    rc = main(["predict", str(folder), str(notes), str(tmp_path / "missing.tif"), "--model", str(tiny_model_dir),
               "--out", str(out), "--quiet"])
    assert rc == 1
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 3, err
    assert any("broken.png" in e and "cannot read image" in e for e in err)
    assert any("notes.txt" in e and "unsupported file extension" in e for e in err)
    assert any("missing.tif" in e and "no such file" in e for e in err)
    for suffix in SUFFIXES:  # the good images of the same batch still finished (a 16-bit TIFF too)
        assert (out / f"good{suffix}").is_file() and (out / f"gray16{suffix}").is_file()


def test_unwritable_out(tiny_model_dir, small_image, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    rc = main(["predict", str(small_image), "--model", str(tiny_model_dir), "--out", str(blocker / "sub"), "--quiet"])
    assert rc == 1
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "cannot write to output folder" in err[0]


def test_physical_units_need_a_scale(small_image, tmp_path, capsys):
    rc = main(["predict", str(small_image), "--units", "um", "--out", str(tmp_path / "o")])
    assert rc == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "--scale" in err[0]
    assert not (tmp_path / "o").exists()


def test_default_model_absent_is_one_clear_line(small_image, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("grainseg.models.loading.bundled_dir", lambda name: None)
    rc = main(["predict", str(small_image), "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 1
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "embedded default model" in err[0] and "--model DIR" in err[0]


def test_usage_errors(capsys, tmp_path):
    assert main(["predict", "--out", str(tmp_path / "o")]) == 2
    assert "--example" in capsys.readouterr().err
    assert main(["predict", "--example", "--scale", "-1", "--out", str(tmp_path / "o")]) == 2
    assert "--scale" in capsys.readouterr().err


def test_model_error_from_the_card_reaches_the_summary(tiny_model_dir, small_image, tmp_path):
    import shutil

    card = tmp_path / "card"
    shutil.copytree(tiny_model_dir, card)
    cfg = json.loads((card / "config.json").read_text())
    cfg["grain_size_validation"] = {"data": "a held-out set", "material": "an alloy",
                                    "rms_dG": {"planimetric": 0.3, "intercept": 0.2}}
    (card / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    assert main(["predict", str(small_image), "--model", str(card), "--scale", "0.5", "--out", str(out), "--quiet"]) == 0
    e = json.loads((out / "good_summary.json").read_text())["astm_e112"]
    assert e["model_error"]["rms_dG"] == {"planimetric": 0.3, "intercept": 0.2} and "an alloy" in e["model_error_note"]
    # the same weights without the card's record: the summary says the intervals hold sampling only
    out2 = tmp_path / "out2"
    assert main(["predict", str(small_image), "--model", str(tiny_model_dir), "--scale", "0.5", "--out", str(out2),
                 "--quiet"]) == 0
    e2 = json.loads((out2 / "good_summary.json").read_text())["astm_e112"]
    assert e2["model_error"] is None and "sampling spread only" in e2["model_error_note"]


def test_the_embedded_default_prints_g_with_its_validated_error(tmp_path, capsys):
    from grainseg.inference.predict import load_model

    model, info = load_model(None)
    val = info["grain_size_validation"]
    assert set(val["rms_dG"]) == {"planimetric", "intercept", "intercept_direct_e112"}
    assert all(0 < v < 1 for v in val["rms_dG"].values())
    assert "grain_size_validation" not in model.config  # metadata of the weights, not a build argument
    assert model.grain_size_validation == val  # the loaded model carries it, for the Python API too
    from grainseg.inference import analyze

    api = analyze(EXAMPLE_IMAGE, model, scale=0.5).summary["astm_e112"]
    assert api["model_error"] == val and api["G_planimetric_ci95_with_model_error"][0] is not None
    model.save_pretrained(tmp_path / "copy")  # a copy (say, to fine-tune) does not inherit the measured error
    assert "grain_size_validation" not in json.loads((tmp_path / "copy" / "config.json").read_text())
    assert grainseg.from_pretrained(tmp_path / "copy").grain_size_validation is None
    out = tmp_path / "out"
    assert main(["predict", "--example", "--scale", "0.5", "--out", str(out), "--quiet"]) == 0
    e = json.loads((out / "sample_micrograph_summary.json").read_text())["astm_e112"]
    printed = capsys.readouterr().out
    for k in ("planimetric", "intercept"):
        lo, hi = e[f"G_{k}_ci95_with_model_error"]
        slo, shi = e[f"G_{k}_ci95"]
        assert lo < slo <= e[f"G_{k}"] <= shi < hi
        assert f"G {k} {e[f'G_{k}']:.2f} (95 %: {lo:.2f}-{hi:.2f})" in printed


def test_a_malformed_card_record_fails_at_load_naming_the_file(tiny_model_dir, small_image, tmp_path, capsys):
    import shutil

    card = tmp_path / "card"
    shutil.copytree(tiny_model_dir, card)
    cfg = json.loads((card / "config.json").read_text())
    cfg["grain_size_validation"] = {"rms_dG": {"planimetric": -1}}
    (card / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    rc = main(["predict", str(small_image), "--model", str(card), "--scale", "0.5", "--out", str(out), "--quiet"])
    err = error_lines(capsys.readouterr().err)
    assert rc != 0 and len(err) == 1
    assert "config.json" in err[0] and "grain_size_validation" in err[0] and "'planimetric': -1" in err[0]
    assert not (out / "good_summary.json").exists()
    with pytest.raises(ValueError, match="config.json: 'grain_size_validation' must be"):
        grainseg.from_pretrained(card)
