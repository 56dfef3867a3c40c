"""The models on the CUDA scan kernels: the authors' fixtures reproduced on a GPU, and VM-UNet-ASPP
training (loss falls over a few steps).  Needs a GPU; see tests/models and tests/layers for the CPU runs."""
from __future__ import annotations

import json

import pytest
import torch

import grainseg.ops as ops

pytestmark = pytest.mark.gpu
DEV = "cuda"


@pytest.fixture(scope="module", autouse=True)
def cuda_kernels():
    assert ops.extension_has_cuda(), "grainseg._C has no CUDA kernels: rebuild with a CUDA torch and nvcc"


def test_ss2d_fixture_on_gpu(reference_fixtures):
    from safetensors.torch import load_file

    from grainseg.layers import SS2D

    folder = reference_fixtures / "ss2d"
    cfg = json.loads((folder / "config.json").read_text())
    m = SS2D(cfg["d_model"], d_state=cfg["d_state"], d_conv=cfg["d_conv"], expand=cfg["expand"]).eval()
    m.load_state_dict(load_file(str(folder / "module.safetensors")), strict=True)
    m = m.to(DEV)
    io = load_file(str(folder / "io.safetensors"), device=DEV)
    x = io["input"].clone().requires_grad_(True)
    y = m(x)
    assert (y - io["output"]).abs().max() <= 1e-4
    (y * io["cotangent"]).sum().backward()
    assert (x.grad - io["grad_input"]).abs().max() <= 1e-4


def _tiny_vmunet_aspp(reference_fixtures):
    from safetensors.torch import load_file

    from grainseg import VMUNetASPP

    folder = reference_fixtures / "vmunet_aspp_tiny"
    cfg = json.loads((folder / "config.json").read_text())
    model = VMUNetASPP(
        in_chans=cfg["in_chans"], num_classes=cfg["num_classes"], dims=cfg["dims"], depths=cfg["depths"],
        depths_decoder=cfg["depths_decoder"], d_state=cfg["d_state"], d_conv=cfg["d_conv"],
        expand=cfg["expand"], aspp_rates=cfg["aspp_rates"],
    )
    model.load_reference_state_dict(load_file(str(folder / "model.safetensors")))
    return model, load_file(str(folder / "io.safetensors"), device=DEV)


def test_vmunet_aspp_fixture_on_gpu(reference_fixtures):
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    model, io = _tiny_vmunet_aspp(reference_fixtures)
    model = model.to(DEV).eval()
    x = io["input"].clone().requires_grad_(True)
    logits = model(x)
    assert (logits - io["output_logits"]).abs().max() <= 1e-4
    (logits * io["cotangent"]).sum().backward()
    assert (x.grad - io["grad_input"]).abs().max() <= 1e-4


def test_vmunet_aspp_trains_on_gpu(reference_fixtures):
    """Ten Adam steps on a fixed batch with an easy target: the loss must fall clearly."""
    torch.manual_seed(0)
    model, _ = _tiny_vmunet_aspp(reference_fixtures)
    model = model.to(DEV).train()
    x = torch.randn(4, 3, 64, 64, device=DEV)
    target = torch.zeros(4, 1, 64, 64, device=DEV)
    target[..., :32] = 1.0  # left half foreground
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), target)
        loss.backward()
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0], losses
