"""The models on the CUDA scan kernels: the authors' fixtures reproduced on a GPU, and VM-UNet-ASPP
training (loss falls over a few steps).  Needs a GPU; see tests/models and tests/layers for the CPU runs."""
from __future__ import annotations

import pytest
import torch

import grainseg.ops as ops
from tests.gpu.cuda_cases import assert_reproduces_fixture, ss2d_fixture, tiny_vmunet_aspp_fixture

pytestmark = pytest.mark.gpu
DEV = "cuda"


@pytest.fixture(scope="module", autouse=True)
def cuda_kernels():
    assert ops.extension_has_cuda(), "grainseg._C has no CUDA kernels: rebuild with a CUDA torch and nvcc"


def test_ss2d_fixture_on_gpu(reference_fixtures):
    model, io = ss2d_fixture(reference_fixtures, DEV)
    assert_reproduces_fixture(model, io)


def test_vmunet_aspp_fixture_on_gpu(reference_fixtures):
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # fp32 convs / matmuls
    try:
        model, io = tiny_vmunet_aspp_fixture(reference_fixtures, DEV)
        assert_reproduces_fixture(model.eval(), io)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_vmunet_aspp_trains_on_gpu(reference_fixtures):
    """Ten Adam steps on a fixed batch with an easy target: the loss must fall clearly."""
    torch.manual_seed(0)
    model, _ = tiny_vmunet_aspp_fixture(reference_fixtures, DEV)
    model.train()
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
