"""Model-specific behaviour the shared tester does not see: deep supervision, the edge variant, UNet++
nesting, UCTransNet at sizes other than its img_size, DeepLab output strides."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from grainseg import EdgeAwareAttention
from grainseg.layers.deep_supervision import deep_supervision_loss
from grainseg.models.registry import create_model, tiny_config


def _tiny(name: str, **overrides):
    torch.manual_seed(0)
    return create_model(name, **{**tiny_config(name), **overrides})


@pytest.mark.parametrize("name", ["vmunet_v2", "vmunet_v2_edge", "sa2net"])
def test_deep_supervision_outputs(name):
    m = _tiny(name).eval()
    x = torch.rand(2, 3, 37, 45)
    with torch.no_grad():
        outs = m.forward_aux(x)
        main = m(x)
    assert len(outs) == 4 and all(o.shape == (2, 1, 37, 45) for o in outs)
    torch.testing.assert_close(outs[0], main)  # forward returns the first (main) head
    assert not torch.allclose(outs[1], outs[0])


def test_deep_supervision_loss_trains_every_head():
    m = _tiny("vmunet_v2").train()
    x, y = torch.rand(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float()
    loss = deep_supervision_loss(m.forward_aux(x), y, F.binary_cross_entropy_with_logits)
    loss.backward()
    assert all(m.heads[i].weight.grad is not None for i in range(4))
    outs = [torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)]
    target = torch.zeros(1, 1, 4, 4)
    mse = torch.nn.functional.mse_loss
    assert deep_supervision_loss(outs, target, mse).item() == pytest.approx(0.5)  # 1 * 0 + 0.5 * 1
    assert deep_supervision_loss(outs, target, mse, weights=[1, 2]).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="weights"):
        deep_supervision_loss(outs, target, mse, weights=[1])
    with pytest.raises(ValueError, match="target size"):
        deep_supervision_loss(outs, torch.zeros(1, 1, 5, 5), mse)


def test_edge_variant_gates_every_encoder_feature():
    plain, edge = _tiny("vmunet_v2"), _tiny("vmunet_v2_edge")
    gates = [mod for mod in edge.modules() if isinstance(mod, EdgeAwareAttention)]
    assert [g.channels for g in gates] == plain.dims and not any(
        isinstance(mod, EdgeAwareAttention) for mod in plain.modules())
    # the edge model is the plain one plus the gates: same weights elsewhere, different output
    missing, unexpected = edge.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("edge.") for k in missing)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(plain.eval()(x), edge.eval()(x))
        for g in gates:  # a gate stuck at 1 turns the edge model back into the plain one
            g.proj.weight.zero_()
            g.proj.bias.fill_(100.0)
        torch.testing.assert_close(edge(x), plain(x))


def test_unetplusplus_has_the_ten_nested_nodes():
    m = _tiny("unetplusplus")
    assert sorted(m.nodes) == sorted(f"x{i}_{j}" for j in range(1, 5) for i in range(5 - j))


def test_uctransnet_runs_at_sizes_other_than_img_size():
    m = _tiny("uctransnet").eval()  # img_size 64
    for size in ((32, 96), (80, 48)):
        with torch.no_grad():
            assert m(torch.rand(1, 3, *size)).shape == (1, 1, *size)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_deeplab_output_strides(output_stride):
    m = _tiny("deeplabv3plus", output_stride=output_stride).eval()
    assert m.aspp.branches[1][0].dilation == ((6, 6) if output_stride == 16 else (12, 12))
    with torch.no_grad():
        assert m(torch.rand(1, 3, 40, 24)).shape == (1, 1, 40, 24)


def test_segnet_unpools_at_the_max_positions():
    m = _tiny("segnet").eval()
    seen = []
    m.dec[0].register_forward_pre_hook(lambda mod, inp: seen.append(inp[0]))
    with torch.no_grad():
        out = m(torch.rand(1, 3, 64, 64))
    # the first decoder stage sees the unpooled bottleneck: one non-zero value per 2x2 window at most
    windows = (seen[0] != 0).float().unfold(2, 2, 2).unfold(3, 2, 2).sum(dim=(-1, -2))
    assert windows.max() <= 1 and (seen[0] != 0).any()
    assert out.std() > 1e-3  # He init keeps an untrained SegNet's output from collapsing to a constant


@pytest.mark.parametrize("name", ["unet", "segnet", "r2attunet", "uctransnet", "sa2net", "unetplusplus"])
def test_multiclass_and_grey_models(name):
    m = _tiny(name, in_chans=1, num_classes=3).eval()
    with torch.no_grad():
        out = m(torch.rand(2, 1, 33, 35))
    assert out.shape == (2, 3, 33, 35)

