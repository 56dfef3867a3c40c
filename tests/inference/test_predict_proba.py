"""predict_proba / analyze / load_model: preprocessing path, scaling, stitched micrograph vs its tiles."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import grainseg
from grainseg.data.synthetic import make_micrograph
from grainseg.data.transforms import preprocess_image
from grainseg.inference import predict as predict_mod
from grainseg.inference import predict_proba
from grainseg.inference.predict import scaled_size
from tests.helpers.standin_model import StandInNet

PREP_400 = {"normalize": "minmax", "input_size": [256, 256], "train_image_size": [400, 400]}


def test_training_size_image_takes_the_evaluation_path():
    """A 400x400 tile of a [400 -> 256] model: one 256 tile through preprocess_image, resized back."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    model = StandInNet(PREP_400)
    prob = predict_proba(model, img)
    x = preprocess_image(img, PREP_400, 3)
    assert x.shape[-2:] == (256, 256)
    direct = torch.sigmoid(model(x))
    direct = torch.nn.functional.interpolate(direct, size=(400, 400), mode="bilinear", align_corners=False)
    assert prob.shape == (400, 400) and prob.dtype == np.float32
    np.testing.assert_allclose(prob, direct[0, 0].numpy(), atol=1e-5)
    assert model.calls == 2  # one tile, one batch (the second call is the direct one above)


@pytest.mark.parametrize("kind", ["gray8", "rgb8", "gray16", "float", "path"])
def test_input_kinds(kind, tmp_path):
    s = make_micrograph((90, 70), n_grains=8, seed=1, speckle=0, twins=0)
    img = s.image
    if kind == "rgb8":
        img = np.repeat(img[..., None], 3, -1)
    elif kind == "gray16":
        img = img.astype(np.uint16) * 257
    elif kind == "float":
        img = img.astype(np.float32) / 7.0
    elif kind == "path":
        Image.fromarray(img).save(tmp_path / "m.png")
        img = str(tmp_path / "m.png")
    prob = predict_proba(StandInNet(), img)
    ref = predict_proba(StandInNet(), s.image)
    assert prob.shape == (90, 70) and 0 <= prob.min() and prob.max() <= 1
    np.testing.assert_allclose(prob, ref, atol=1e-4)  # min-max normalisation makes them all the same
    assert ((prob > 0.5) == (s.mask > 0)).mean() > 0.85  # the stand-in really sees the grains


def test_scaled_size():
    assert scaled_size((1200, 1600), PREP_400) == (768, 1024)
    assert scaled_size((300, 500), {"input_size": [256, 256], "train_image_size": None}) == (300, 500)


def test_bad_inputs():
    with pytest.raises(ValueError, match="model"):
        predict_proba("not a model", np.zeros((8, 8)))
    with pytest.raises(ValueError, match="image"):
        predict_proba(StandInNet(), np.zeros((8, 8, 5)))
    with pytest.raises(FileNotFoundError):
        predict_proba(StandInNet(), "/nonexistent/image.png")


def test_stitched_source_micrograph_matches_its_tiles(exone_data):
    """Source micrograph 1 (1200x1600) stitched from its 12 tiles: same mask as the tiles off the seams."""
    from grainseg.data.io import read_image

    tiles = [[read_image(exone_data / "RG" / f"RG1_{r}_{c}.jpg") for c in range(1, 5)] for r in range(1, 4)]
    big = np.concatenate([np.concatenate(row, 1) for row in tiles], 0)
    assert big.shape[:2] == (1200, 1600)
    model = StandInNet(PREP_400)
    whole = predict_proba(model, big)
    assert model.calls > 1  # 768x1024 at the network scale: several 256 tiles
    parts = np.concatenate([np.concatenate([predict_proba(model, t) for t in row], 1) for row in tiles], 0)
    seams = np.zeros(big.shape[:2], bool)
    for y in (400, 800):
        seams[y - 8:y + 8] = True
    for x in (400, 800, 1200):
        seams[:, x - 8:x + 8] = True
    same = (whole > 0.5) == (parts > 0.5)
    assert same[~seams].mean() > 0.9999
    assert np.abs(whole - parts)[~seams].max() < 0.02
    assert same.mean() > 0.995  # the seam bands themselves differ only a little
    assert 0.3 < (whole > 0.5).mean() < 0.9  # a real grain / boundary split, not a constant map


def test_analyze_finds_the_synthetic_grains():
    s = make_micrograph((240, 300), n_grains=25, boundary_width=7, seed=5, speckle=0, twins=0)
    report = grainseg.analyze(s.image, StandInNet(), scale=2.0)
    assert isinstance(report, grainseg.GrainReport)
    assert abs(report.grain_count - s.n_grains) <= 2
    summary = json.loads(json.dumps(report.summary))
    assert summary["unit"] == "um" and summary["grain_count"] == report.grain_count
    assert summary["astm_e112"]["G_planimetric"] is not None
    assert summary["model"]["id"] == "StandInNet"
    assert report.overlay().shape == (240, 300, 3)
    assert report.to_csv().splitlines()[0].startswith("label,area_um2,")


def test_default_model_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("grainseg.models.loading.bundled_dir", lambda name: None)
    with pytest.raises(FileNotFoundError, match="embedded default model .* not installed.*--model DIR"):
        predict_mod.load_model(None)


def test_load_model_records_id_and_weights_hash(tmp_path):
    from grainseg.models.registry import tiny_config

    model = grainseg.create_model("unet", **tiny_config("unet"))
    model.save_pretrained(tmp_path / "m")
    loaded, info = predict_mod.load_model(str(tmp_path / "m"))
    assert info["id"] == str(tmp_path / "m") and info["revision"] is None and len(info["sha256"]) == 64
    assert info["architecture"] == type(model).__name__ and not loaded.training


@pytest.mark.gpu
def test_cuda_amp_matches_cpu():
    """On CUDA with float16 autocast the probabilities match the CPU float32 ones to AMP precision."""
    s = make_micrograph((300, 420), n_grains=20, seed=9)
    cpu = predict_proba(StandInNet(PREP_400), s.image)
    gpu = predict_proba(StandInNet(PREP_400), s.image, device="cuda", amp=True)
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    np.testing.assert_allclose(gpu, cpu, atol=2e-2)
    assert ((gpu > 0.5) == (cpu > 0.5)).mean() > 0.999
