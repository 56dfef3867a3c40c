"""Every model of the paper's Table I is registered; default parameter counts; the ResNet encoders match
the standard architectures' sizes."""
from __future__ import annotations

import pytest
import torch

from grainseg.layers.resnet import ResNetEncoder
from grainseg.models.registry import create_model, list_models, model_info, tiny_config
from grainseg.models.sam import sam_available

#: Table I of the paper: registry name -> paper Dice (the SAM pair needs the grainseg[sam] extra).
TABLE_I = {
    "unet": 90.9, "unetplusplus": 90.0, "segnet": 83.9, "r2attunet": 90.2, "uctransnet": 91.05,
    "sa2net": 90.9, "deeplabv3plus": 89.65, "vmunet": 91.90, "vmunet_aspp": 91.95, "vmunet_v2": 90.5,
    "vmunet_v2_edge": 91.73, "sam": 88.4, "sam_lora": 90.9,
}
SAM_NAMES = {"sam", "sam_lora"}


def test_every_table_one_model_is_registered():
    registered = set(list_models())
    expected = set(TABLE_I) if sam_available() else set(TABLE_I) - SAM_NAMES
    assert expected <= registered, f"not registered: {sorted(expected - registered)}"
    for name in expected:
        assert model_info(name)["paper_dice"] == pytest.approx(TABLE_I[name]), name


def test_sam_names_registered_when_extra_installed():
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    assert SAM_NAMES <= set(list_models())


@pytest.mark.parametrize("name,params", [
    ("unet", 31_037_633),      # the classic 64-1024 U-Net with transposed-conv upsampling
    ("segnet", 29_472_641),    # VGG-16-BN encoder + mirrored decoder
    ("r2attunet", 39_436_077),  # R2AttU-Net with t=2
])
def test_default_parameter_counts_match_the_standard_networks(name, params):
    assert model_info(name)["num_params"] == params


# ImageNet ResNets without their fc layer (torchvision totals minus the 1000-class classifier).
@pytest.mark.parametrize("depth,params", [(18, 11_176_512), (34, 21_284_672), (50, 23_508_032), (152, 58_143_808)])
def test_resnet_encoder_matches_standard_resnet_sizes(depth, params):
    with torch.device("meta"):
        enc = ResNetEncoder(depth)
    assert sum(p.numel() for p in enc.parameters()) == params


def test_resnet_encoder_feature_shapes():
    enc = ResNetEncoder(50, in_chans=1, base_width=4).eval()
    with torch.no_grad():
        feats = enc(torch.rand(1, 1, 32, 64))
    assert enc.out_channels == [4, 16, 32, 64, 128]
    assert [tuple(f.shape) for f in feats] == [
        (1, c, 32 // s, 64 // s) for c, s in zip(enc.out_channels, (2, 4, 8, 16, 32))]
    dil = ResNetEncoder(18, base_width=4, output_stride=8).eval()
    with torch.no_grad():
        assert [f.shape[-1] for f in dil(torch.rand(1, 3, 64, 64))] == [32, 16, 8, 8, 8]


@pytest.mark.parametrize("kwargs", [dict(depth=20), dict(base_width=0), dict(output_stride=4), dict(in_chans=True)])
def test_resnet_encoder_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ResNetEncoder(**kwargs)


@pytest.mark.parametrize("name,kwargs,match", [
    ("unet", dict(base_channels=0), "base_channels"),
    ("unetplusplus", dict(decoder_channels=[8, 8]), "decoder_channels"),
    ("unetplusplus", dict(encoder_depth=20), "depth"),
    ("deeplabv3plus", dict(output_stride=32), "output_stride"),
    ("deeplabv3plus", dict(aspp_rates=[]), "aspp_rates"),
    ("deeplabv3plus", dict(aspp_rates=[6, 0]), "aspp_rates"),
    ("uctransnet", dict(img_size=100), "img_size"),
    ("uctransnet", dict(dropout=1.5), "dropout"),
    ("r2attunet", dict(t=0), "t must"),
    ("vmunet_v2", dict(mid_channels=0), "mid_channels"),
    ("vmunet_v2", dict(drop_path_rate=1.0), "drop_path_rate"),
])
def test_bad_arguments_raise_value_errors_naming_them(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model(name, **{**tiny_config(name), **kwargs})


def test_preset_of_names_the_preset_a_saved_config_came_from():
    from grainseg.models.registry import preset_of

    for name in ("vmunet_aspp", "vmunet_aspp_small", "unet"):
        model = create_model(name, in_chans=1)  # the input channels are not part of the preset's identity
        assert preset_of(type(model), model.config) == name
    tiny = create_model("vmunet_aspp", **tiny_config("vmunet_aspp"))
    assert preset_of(type(tiny), tiny.config) is None  # no preset has these arguments
