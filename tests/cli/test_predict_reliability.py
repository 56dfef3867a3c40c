"""``grainseg predict`` against a new user's mistakes: name clashes, repeated inputs, bad --out / --scale / --device."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers.standin_model import StandInNet

from grainseg.cli import main
from grainseg.cli.predict import _stems, collect_inputs
from grainseg.data.synthetic import make_micrograph
from grainseg.grains.report import OUTPUT_SUFFIXES


@pytest.fixture()
def standin(monkeypatch):
    """predict loads a fixed stand-in net (bright interiors -> grains) instead of a saved model."""
    calls = []

    def load(spec=None, device=None, revision=None):
        calls.append(spec)
        return StandInNet(), {"id": "standin", "revision": None, "sha256": "0" * 64, "architecture": "StandInNet"}

    monkeypatch.setattr("grainseg.inference.predict.load_model", load)
    return calls


def _image(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_micrograph((64, 64), n_grains=6, boundary_width=3.0, seed=seed).image).save(path)
    return path


def test_same_file_name_in_three_folders_gives_three_sets_of_outputs(tmp_path, standin, capsys):
    inputs = [_image(tmp_path / d / "s" / "x.png", seed) for seed, d in enumerate("abc")]
    out = tmp_path / "out"
    assert main(["predict", *map(str, inputs), "--out", str(out), "--overwrite", "--quiet"]) == 0
    summaries = sorted(out.glob("*_summary.json"))
    assert len(summaries) == 3
    sources = {json.loads(p.read_text())["source"] for p in summaries}
    assert sources == {str(p) for p in inputs}  # none overwrote another


def test_stems_are_unique_by_construction():
    files = [Path("a/s/x.png"), Path("b/s/x.png"), Path("c/s/x.png"), Path("a/s/x.tif"), Path("a/s/X.png"),
             Path("s_x.png"), Path("y.png")]
    stems = _stems(files)
    assert len({s.lower() for s in stems.values()}) == len(files)
    assert stems[Path("y.png")] == "y" and stems[Path("a/s/x.tif")] == "x_tif"
    assert _stems([Path("d/x.png"), Path("d/x.tif")]) == {Path("d/x.png"): "x_png", Path("d/x.tif"): "x_tif"}


def test_a_path_given_twice_is_processed_once(tmp_path, standin, capsys):
    img = _image(tmp_path / "in" / "g.png", 1)
    files, errors, notes = collect_inputs([str(img), str(img.parent), str(tmp_path / "in" / "." / "g.png")])
    assert files == [img] and errors == [] and notes == []
    assert main(["predict", str(img), str(img), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert capsys.readouterr().out.count("grains") == 1


def test_out_naming_an_existing_file_is_refused_before_loading(tmp_path, standin, capsys):
    img = _image(tmp_path / "g.png", 1)
    blocker = tmp_path / "results.txt"
    blocker.write_text("keep me")
    assert main(["predict", str(img), "--out", str(blocker), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "existing file" in err and str(blocker) in err
    assert standin == [] and blocker.read_text() == "keep me"


@pytest.mark.parametrize("scale", ["inf", "nan", "0", "-2"])
def test_scale_must_be_finite_and_positive(tmp_path, standin, capsys, scale):
    img = _image(tmp_path / "g.png", 1)
    assert main(["predict", str(img), "--scale", scale, "--out", str(tmp_path / "o")]) == 2
    assert "--scale" in capsys.readouterr().err and standin == []


def test_bad_device_is_a_usage_error_not_a_model_error(tmp_path, standin, capsys):
    img = _image(tmp_path / "g.png", 1)
    assert main(["predict", str(img), "--device", "foo", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--device must be auto, cpu, cuda or cuda:N" in err and "cannot load model" not in err
    assert standin == []


def test_absurd_grain_size_number_warns(tmp_path, standin, capsys):
    img = _image(tmp_path / "g.png", 1)
    assert main(["predict", str(img), "--scale", "1e-5", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"warning: .*g\.png: .*outside the plausible range -3(\.0)?\.\.20(\.0)?", err) and "--scale" in err


def test_progress_lines_without_a_terminal(tmp_path, standin, capsys):
    imgs = [_image(tmp_path / f"g{i}.png", i) for i in range(2)]
    assert main(["predict", *map(str, imgs), "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err  # captured: not a TTY
    assert "image 1/2" in err and "image 2/2" in err


def test_tile_progress_lines_without_a_terminal(capsys):
    from grainseg.cli.predict import _tile_progress

    assert _tile_progress(True) is False
    report = _tile_progress(False, every=4)  # stderr is captured: not a TTY
    for done in (2, 4, 6, 8, 9):
        report(done)
    assert capsys.readouterr().err.splitlines() == ["grainseg predict: 4 tiles done", "grainseg predict: 8 tiles done"]


def _md5s(folder: Path) -> dict:
    import hashlib

    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_second_run_on_a_folder_skips_the_first_runs_outputs(tmp_path, standin, capsys):
    d = tmp_path / "d"
    _image(d / "x.png", 1)
    assert main(["predict", str(d), "--out", str(d), "--quiet"]) == 0
    first = _md5s(d)
    assert "x_prob.png" in first and "x_mask.png" in first
    capsys.readouterr()
    # run again, with --overwrite: only x.png is a micrograph; its outputs are replaced, nothing new appears
    assert main(["predict", str(d), "--out", str(d), "--overwrite", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("grains") == 1 and "look like grainseg outputs" in captured.err
    assert set(_md5s(d)) == set(first)
    # the default --out inside a folder searched recursively: its files are left out as well
    e = tmp_path / "e"
    _image(e / "sub" / "y.png", 2)
    for _ in range(2):
        assert main(["predict", str(e), "--recursive", "--out", str(e / "preds"), "--overwrite", "--quiet"]) == 0
    assert sorted(p.name for p in (e / "preds").iterdir()) == sorted(f"y{s}" for s in OUTPUT_SUFFIXES.values())
    # a file named explicitly is predicted even when it looks like an output
    files, errors, notes = collect_inputs([str(d / "x_prob.png")])
    assert files == [d / "x_prob.png"] and not errors and not notes


def test_an_input_image_is_never_replaced_not_even_with_overwrite(tmp_path, standin, capsys):
    c = tmp_path / "c"
    a, a_prob = _image(c / "a.png", 1), _image(c / "a_prob.png", 2)  # a user's image that is named like an output
    before = _md5s(c)
    assert main(["predict", str(a), str(a_prob), "--out", str(c), "--overwrite", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "an input image of this run" in err and str(a_prob) in err
    assert {k: v for k, v in _md5s(c).items() if k in before} == before


def test_nothing_readable_leaves_no_empty_out_folder(tmp_path, standin, capsys):
    bad = tmp_path / "text.png"
    bad.write_text("not an image")
    out = tmp_path / "never"
    assert main(["predict", str(bad), "--out", str(out), "--quiet"]) == 1
    assert not out.exists() and "text.png" in capsys.readouterr().err
    kept = tmp_path / "kept"  # a folder the user made stays, even when empty
    kept.mkdir()
    assert main(["predict", str(bad), "--out", str(kept), "--quiet"]) == 1
    assert kept.is_dir()


def test_units_px_with_a_scale_says_why_there_is_no_g(tmp_path, standin, capsys):
    img = _image(tmp_path / "g.png", 1)
    assert main(["predict", str(img), "--units", "px", "--scale", "0.5", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert "G not computed with --units px" in capsys.readouterr().out
