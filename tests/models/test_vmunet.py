"""VM-UNet / VM-UNet-ASPP: the authors' fixture, parameter counts, reference names, VMamba weights."""
from __future__ import annotations

import json

import pytest
import torch

from grainseg import VMUNet, VMUNetASPP, create_model, model_info
from grainseg.models.base import StateDictMismatchError
from grainseg.models.vmunet import expand_dims

TINY = dict(dims=8, depths=[1, 1, 1, 1], depths_decoder=[1, 1, 1, 1], d_state=4)


def _paper_shapes(reference_fixtures):
    data = json.loads((reference_fixtures / "vmunet_aspp_paper_keys.json").read_text())
    return data["params"], data["state_dict_shapes"]


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_tiny_vmunet_aspp_reproduces_authors_outputs_and_grads(reference_fixtures, backend):
    from safetensors.torch import load_file

    from grainseg.ops import use_backend

    folder = reference_fixtures / "vmunet_aspp_tiny"
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["dims_decoder"] == cfg["dims"][::-1]
    model = VMUNetASPP(
        in_chans=cfg["in_chans"], num_classes=cfg["num_classes"], dims=cfg["dims"], depths=cfg["depths"],
        depths_decoder=cfg["depths_decoder"], d_state=cfg["d_state"], d_conv=cfg["d_conv"], expand=cfg["expand"],
        aspp_rates=cfg["aspp_rates"],
    )
    model.load_reference_state_dict(load_file(str(folder / "model.safetensors")))
    model.eval()
    io = load_file(str(folder / "io.safetensors"))
    x = io["input"].clone().requires_grad_(True)
    with use_backend(backend):
        logits = model(x)
        assert (logits - io["output_logits"]).abs().max() <= 1e-4
        (logits * io["cotangent"]).sum().backward()
        assert (x.grad - io["grad_input"]).abs().max() <= 1e-4
        torch.testing.assert_close(model.predict(io["input"]), torch.sigmoid(logits.detach()))


def test_paper_parameter_counts(reference_fixtures):
    params, _ = _paper_shapes(reference_fixtures)
    assert model_info("vmunet_aspp")["num_params"] == params == 35_829_433
    assert model_info("vmunet")["num_params"] == 35_797_993
    assert model_info("vmunet_aspp")["paper_dice"] == 91.95 and model_info("vmunet")["paper_dice"] == 91.90


def test_paper_state_dict_names_and_shapes_load(reference_fixtures):
    _, shapes = _paper_shapes(reference_fixtures)
    with torch.device("meta"):
        model = create_model("vmunet_aspp")
        sd = {k: torch.empty(s) for k, s in shapes.items()}
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == shapes
    model.load_reference_state_dict(sd)  # strict
    with torch.device("meta"):
        plain = create_model("vmunet")
    with pytest.raises(StateDictMismatchError, match=r"(?s)unexpected keys.*aspp\.conv1\.weight"):
        plain.load_reference_state_dict(sd)
    plain.load_reference_state_dict({k: v for k, v in sd.items() if not k.startswith("aspp.")})


def test_reference_loading_strips_training_wrappers():
    torch.manual_seed(0)
    src = VMUNetASPP(**TINY)
    dst = VMUNetASPP(**TINY)
    wrapped = {"model": {f"module.vmunet.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}
    dst.load_reference_state_dict(wrapped)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_reference_loading_from_checkpoint_file(tmp_path):
    src = VMUNetASPP(**TINY)
    torch.save({"model": src.state_dict()}, tmp_path / "ckpt.pth")
    dst = VMUNetASPP(**TINY)
    dst.load_reference_state_dict(tmp_path / "ckpt.pth")
    assert torch.equal(dst.final_conv.weight, src.final_conv.weight)


def test_vmamba_encoder_weights_map_to_the_decoder_like_vmunet(tmp_path):
    torch.manual_seed(0)
    # A VMamba-style classification checkpoint: a deeper encoder than ours plus a classifier head.
    donor = VMUNet(dims=8, depths=[1, 1, 3, 1], depths_decoder=[1, 1, 1, 1], d_state=4)
    ckpt = {k: v for k, v in donor.state_dict().items() if k.startswith(("patch_embed.", "layers."))}
    ckpt.update({"norm.weight": torch.ones(64), "head.weight": torch.zeros(10, 64), "head.bias": torch.zeros(10)})
    torch.save({"model": ckpt}, tmp_path / "vmamba.pth")
    model = VMUNetASPP(dims=8, depths=[1, 1, 2, 1], depths_decoder=[1, 2, 1, 1], d_state=4)
    report = model.load_vmamba_encoder(tmp_path / "vmamba.pth")
    sd = model.state_dict()
    name = "blocks.0.self_attention.x_proj_weight"
    assert torch.equal(sd[f"layers.0.{name}"], ckpt[f"layers.0.{name}"])
    assert torch.equal(sd[f"layers.2.blocks.1.ln_1.weight"], ckpt["layers.2.blocks.1.ln_1.weight"])
    for i in range(4):  # encoder stage i -> decoder stage 3 - i
        assert torch.equal(sd[f"layers_up.{3 - i}.{name}"], ckpt[f"layers.{i}.{name}"])
    second = "blocks.1.self_attention.x_proj_weight"  # decoder stage 1 has two blocks: both copied
    assert torch.equal(sd[f"layers_up.1.{second}"], ckpt[f"layers.2.{second}"])
    assert "head.weight" in report["skipped"] and "layers.2.blocks.2.ln_1.weight" in report["skipped"]
    assert "layers_up.3.downsample.reduction.weight" in report["skipped"]  # the decoder has no merging
    assert "layers_up.0.blocks.0.ln_1.weight" in report["loaded"]
    with pytest.raises(ValueError, match="no tensor"):
        model.load_vmamba_encoder({"head.weight": torch.zeros(2, 2)})


def test_dims_int_or_list_and_decoder_structure():
    a, b = VMUNet(dims=8, depths=[1, 1, 1, 1]), VMUNet(dims=[8, 16, 32, 64], depths=[1, 1, 1, 1])
    assert [tuple(p.shape) for p in a.parameters()] == [tuple(p.shape) for p in b.parameters()]
    assert a.layers_up[0].upsample is None and a.layers[3].downsample is None
    assert a.final_up.expand.weight.shape == (8 * 4 // 4 * 4, 8) and a.final_conv.in_channels == 2
    assert expand_dims(12) == [12, 24, 48, 96]


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(dims=6), "multiple of 4"), (dict(dims=[8, 16, 24, 64]), "double"), (dict(depths=[1, 1, 1]), "depths"),
     (dict(depths_decoder=[1, 0, 1, 1]), "depths_decoder"), (dict(drop_path_rate=1.5), "drop_path_rate"),
     (dict(in_chans=0), "in_chans"), (dict(num_classes=0), "num_classes"), (dict(aspp_rates=[]), "rates"),
     (dict(preprocessing={"input_size": [256]}), "input_size")],
)
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VMUNetASPP(**{**TINY, **kwargs})


def test_small_preset_fits_the_embedded_budget():
    info = model_info("vmunet_aspp_small")
    assert info["cls"] is VMUNetASPP
    assert info["num_params"] * 2 < 15e6  # fp16 bytes


def test_multiclass_predict_is_softmax_and_input_checks():
    model = VMUNetASPP(**TINY, num_classes=3, in_chans=1)
    x = torch.rand(1, 1, 20, 28)
    p = model.predict(x)
    assert p.shape == (1, 3, 20, 28)
    torch.testing.assert_close(p.sum(1), torch.ones(1, 20, 28))
    torch.testing.assert_close(model.predict(x.expand(-1, 3, -1, -1)), p)  # RGB of a grey image -> mean
    with pytest.raises(ValueError, match="channels"):
        model(torch.rand(1, 2, 32, 32))
    with pytest.raises(ValueError, match="batch, channels, height, width"):
        model(torch.rand(32, 32))
