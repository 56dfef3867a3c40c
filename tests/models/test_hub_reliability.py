"""Loading saved models against bad files: wrong-size configs, NaN weights, bad JSON, names without weights."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import grainseg
from grainseg import VMUNetASPP, from_pretrained
from grainseg.hub import PretrainedNotFoundError
from grainseg.inference.predict import load_model, predict_proba
from grainseg.models.base import StateDictMismatchError

TINY = dict(dims=8, depths=[1, 1, 1, 1], depths_decoder=[1, 1, 1, 1], d_state=4)


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = VMUNetASPP(**TINY, aspp_rates=[1, 2]).eval()
    model.save_pretrained(tmp_path / "saved")
    return model, tmp_path / "saved"


def _edit_config(folder, **changes):
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


def test_config_too_big_for_the_weights_is_refused_before_allocating(saved, monkeypatch):
    _, folder = saved
    _edit_config(folder, dims=64)  # the report had 1024: 9 GB allocated before the shape check
    real_init = VMUNetASPP.__init__
    devices = []

    def spy(self, *args, **kwargs):
        devices.append(torch.empty(0).device.type)  # the default device the model is built on
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(VMUNetASPP, "__init__", spy)
    with pytest.raises(StateDictMismatchError, match=r"model.safetensors does not match VMUNetASPP built from .*config.json") as err:
        from_pretrained(folder)
    assert "shape mismatches" in str(err.value)
    assert devices == ["meta"]  # built on the meta device only


def test_nan_weight_is_refused_at_load_naming_file_and_tensor(saved):
    _, folder = saved
    sd = load_file(str(folder / "model.safetensors"))
    sd["final_conv.weight"][0, 0, 0, 0] = float("nan")
    save_file(sd, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model.safetensors: tensor 'final_conv.weight' holds 1 NaN"):
        from_pretrained(folder)


def test_nan_probability_map_is_an_error_not_zero_grains(saved):
    model, _ = saved
    with torch.no_grad():
        model.final_conv.weight.fill_(float("nan"))
    image = np.random.default_rng(0).integers(0, 255, (40, 48), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"probability map .* holds 1920 NaN .*VMUNetASPP"):
        predict_proba(model, image)
    with pytest.raises(ValueError, match="NaN / infinite pixel"):
        predict_proba(model, np.full((8, 8), np.nan, np.float32))


def test_invalid_json_in_config_names_the_file(saved):
    _, folder = saved
    (folder / "config.json").write_text('{"dims": 8,')
    with pytest.raises(ValueError, match=r"config.json is not valid JSON"):
        from_pretrained(folder)


def test_registered_name_without_weights_says_so_at_once(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("asked the Hub"))
    for name in ("unet", "vmunet_aspp"):
        with pytest.raises(PretrainedNotFoundError, match=rf"'{name}' is a model architecture without pretrained "
                                                          r"weights\. Models with weights: .*grainseg/vmunet-aspp-small"):
            load_model(name)


def test_create_model_sam_without_the_extra_names_the_extra():
    code = ("import sys; sys.modules['peft'] = None\n"
            "import grainseg\n"
            "try:\n    grainseg.create_model('sam')\n"
            "except ImportError as err:\n    print('ERR', err)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert "ERR model 'sam' needs optional dependencies" in res.stdout, res.stdout + res.stderr
    assert "pip install 'grainseg[sam]' (it needs peft)" in res.stdout


def test_bad_config_values_fail_at_construction():
    with pytest.raises(ValueError, match=r"preprocessing\['normalize'\] must be one of 'minmax', 'none', got 'zscore'"):
        grainseg.create_model("unet", base_channels=4, preprocessing={"normalize": "zscore"})
    with pytest.raises(ValueError, match="d_state must be at most 256"):
        grainseg.create_model("vmunet_aspp", **{**TINY, "d_state": 300})


def test_model_call_says_what_input_it_expects(saved):
    model, _ = saved
    with pytest.raises(TypeError, match=r"float32 torch.Tensor .* got numpy.ndarray .*torch.from_numpy"):
        model(np.zeros((1, 3, 16, 16), np.float32))
    for dtype in (torch.float64, torch.float16):
        with pytest.raises(ValueError, match=rf"input has dtype {dtype} but the model's weights are torch.float32"):
            model(torch.zeros(1, 3, 16, 16, dtype=dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast mixes dtypes on purpose
        model(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="floating-point"):
        model(torch.zeros(1, 3, 16, 16, dtype=torch.int64))
