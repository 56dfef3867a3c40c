"""VSS block, patch embed / merge / expand and EnhancedASPP: structure, exact reorderings, checks."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from grainseg.layers import EnhancedASPP, PatchEmbed, PatchExpand, PatchMerging, VSSBlock
from grainseg.layers.vss_block import DropPath


def test_vss_block_is_residual_over_ss2d():
    torch.manual_seed(0)
    blk = VSSBlock(8, drop_path=0.0, d_state=4).eval()
    x = torch.randn(1, 4, 4, 8)
    torch.testing.assert_close(blk(x), x + blk.self_attention(blk.ln_1(x)))
    assert set(dict(blk.named_children())) == {"ln_1", "self_attention", "drop_path"}


def test_drop_path_drops_whole_samples_in_training_only():
    torch.manual_seed(0)
    dp = DropPath(0.5)
    x = torch.ones(64, 3, 2, 2)
    y = dp(x)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert ((per_sample == 0).all(1) | (per_sample == 2).all(1)).all()
    assert torch.equal(dp.eval()(x), x)
    with pytest.raises(ValueError, match="drop_prob"):
        DropPath(1.0)


def test_patch_embed():
    pe = PatchEmbed(3, 8, 4)
    assert pe(torch.randn(2, 3, 16, 12)).shape == (2, 4, 3, 8)
    with pytest.raises(ValueError, match="divisible by 4"):
        pe(torch.randn(1, 3, 10, 12))


def test_patch_merging_concatenation_order():
    pm = PatchMerging(2)
    x = torch.randn(1, 4, 6, 2)
    x0, x1, x2, x3 = x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]
    want = pm.reduction(pm.norm(torch.cat([x0, x1, x2, x3], -1)))
    torch.testing.assert_close(pm(x), want)
    with pytest.raises(ValueError, match="even"):
        pm(torch.randn(1, 3, 4, 2))


@pytest.mark.parametrize("scale", [2, 4])
def test_patch_expand_pixel_order(scale):
    pe = PatchExpand(6, 3, scale)
    x = torch.randn(1, 2, 3, 6)
    y = pe.expand(x)  # (1, 2, 3, s*s*3) in order (dy, dx, c)
    want = torch.empty(1, 2 * scale, 3 * scale, 3)
    for i in range(2):
        for j in range(3):
            want[0, i * scale:(i + 1) * scale, j * scale:(j + 1) * scale] = y[0, i, j].reshape(scale, scale, 3)
    torch.testing.assert_close(pe(x), pe.norm(want))


def test_enhanced_aspp_structure_and_forward():
    aspp = EnhancedASPP(6, 4, rates=(1, 2, 3))
    names = {n: tuple(p.shape) for n, p in aspp.state_dict().items()}
    assert names["conv1.weight"] == (4, 6, 1, 1) and names["conv_pool.weight"] == (4, 6, 1, 1)
    assert [names[f"convs.{i}.weight"] for i in range(3)] == [(4, 6, 3, 3)] * 3
    assert names["conv_out.weight"] == (4, 4 * 5, 1, 1)
    assert not any(n.endswith("bias") and n.startswith(("conv", "convs")) for n in names)
    assert [c.dilation for c in aspp.convs] == [(1, 1), (2, 2), (3, 3)]
    y = aspp.eval()(torch.randn(2, 6, 9, 7))
    assert y.shape == (2, 4, 9, 7) and torch.isfinite(y).all()


def _aspp_concat_reference(aspp: EnhancedASPP, x: torch.Tensor) -> torch.Tensor:
    """The paper's form: five branches concatenated, then the 1x1 conv_out (pooled branch upsampled)."""
    branches = [F.silu(aspp.bn1(aspp.conv1(x)))]
    branches += [F.silu(bn(conv(x))) for conv, bn in zip(aspp.convs, aspp.bns)]
    pooled = aspp.conv_pool(F.adaptive_avg_pool2d(x, 1))
    branches.append(F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False))
    return F.silu(aspp.bn_out(aspp.conv_out(torch.cat(branches, dim=1))))


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_enhanced_aspp_matches_the_concatenate_and_convolve_form(train, channels_last):
    # forward() sums per-branch blocks of conv_out instead of concatenating; values and gradients (input
    # and every parameter) must be those of the paper's concatenation, in eval and in train (batch-stat BN)
    torch.manual_seed(0)
    aspp = EnhancedASPP(6, 4, rates=(1, 2, 3))
    for bn in [aspp.bn1, *aspp.bns, aspp.bn_out]:
        bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5), bn.bias.data.uniform_(-0.5, 0.5)
    ref = copy.deepcopy(aspp)
    aspp.train(train), ref.train(train)
    x = torch.randn(2, 6, 9, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    xa, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yr = aspp(xa), _aspp_concat_reference(ref, xr)
    torch.testing.assert_close(ya, yr, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ya)
    ya.backward(g), yr.backward(g)
    torch.testing.assert_close(xa.grad, xr.grad, rtol=1e-5, atol=1e-5)
    for (name, pa), pr in zip(aspp.named_parameters(), ref.parameters()):
        torch.testing.assert_close(pa.grad, pr.grad, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")
    if train:  # running statistics move the same way
        torch.testing.assert_close(aspp.bn_out.running_mean, ref.bn_out.running_mean)


@pytest.mark.parametrize("kwargs", [dict(in_channels=0, out_channels=2), dict(in_channels=2, out_channels=2, rates=[]),
                                    dict(in_channels=2, out_channels=2, rates=[0])])
def test_enhanced_aspp_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        EnhancedASPP(**kwargs)


def test_aspp_bfloat16_backward_on_a_channels_last_input_does_not_crash():
    # torch 2.13's oneDNN segfaults in the bf16 weight gradient of a dilated conv on a channels-last CPU
    # input (the permuted map VM-UNet hands the head); EnhancedASPP makes such input contiguous.  Run in a
    # child process: without the guard the crash would take the test session with it.
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from grainseg.layers import EnhancedASPP\n"
        "torch.manual_seed(0)\n"
        "m = EnhancedASPP(24, 24, rates=(3,))\n"
        "x = torch.randn(1, 64, 64, 24).permute(0, 3, 1, 2).requires_grad_()\n"
        "with torch.autocast('cpu', dtype=torch.bfloat16):\n"
        "    y = m(x)\n"
        "y.float().sum().backward()\n"
        "assert torch.isfinite(m.convs[0].weight.grad).all() and x.grad.shape == x.shape\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "ok" in run.stdout, (run.returncode, run.stderr[-2000:])


def test_aspp_bfloat16_inference_on_a_channels_last_input_matches_the_guarded_path():
    # Without gradients the crash cannot happen, so inference keeps the channels-last input (no copies);
    # it must give what the guarded (contiguous) path gives.
    torch.manual_seed(0)
    m = EnhancedASPP(24, 24, rates=(3, 6)).eval()
    x = torch.randn(2, 32, 32, 24).permute(0, 3, 1, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            y_fast = m(x)
        y_guarded = m(x)  # grad enabled, weights require grad: the contiguous path
    assert y_guarded.requires_grad and not y_fast.requires_grad
    torch.testing.assert_close(y_fast.float(), y_guarded.detach().float(), rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(y_fast.float(), m(x).detach(), rtol=5e-2, atol=5e-2)  # against fp32
