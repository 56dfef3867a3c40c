"""sliding_window: one-tile identity with a direct call, blending weights, coverage of odd sizes, errors."""
import pytest
import torch
import torch.nn.functional as F

from grainseg.inference import gaussian_weights, sliding_window, tile_starts


def conv_fn(t):
    w = torch.arange(1.0, 19.0).reshape(2, 1, 3, 3) / 50
    return F.conv2d(t, w, padding=1)


@pytest.mark.parametrize("shape", [(1, 64, 64), (1, 40, 57), (1, 1, 1)])
def test_one_tile_equals_direct_call(shape):
    torch.manual_seed(0)
    x = torch.rand(shape)
    out = sliding_window(x, conv_fn, 64)
    torch.testing.assert_close(out, conv_fn(x[None])[0], rtol=0, atol=1e-6)


def test_gaussian_weights():
    w = gaussian_weights((33, 20), sigma_scale=0.125)
    assert w.shape == (33, 20) and w.dtype == torch.float32
    assert w.max() == pytest.approx(1.0) and w[16].argmax() in (9, 10)
    torch.testing.assert_close(w, w.flip(0))
    torch.testing.assert_close(w, w.flip(1))
    assert w.min() >= 1e-6 - 1e-12 and w[0, 0] < w[16, 10] / 100
    assert w[0, 10] > 100 * w[0, 0]  # separable: along an edge the centre still dominates
    ramp = gaussian_weights(64)[32, 32:]
    assert torch.all(ramp[1:] <= ramp[:-1])  # decays from the centre
    with pytest.raises(ValueError, match="sigma_scale"):
        gaussian_weights(8, sigma_scale=0)


@pytest.mark.parametrize("length,tile,overlap", [(100, 32, 0.25), (97, 32, 0.5), (33, 32, 0.0), (32, 32, 0.5), (5, 32, 0.25)])
def test_tile_starts_cover_with_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + min(tile, length) == length
    for a, b in zip(starts, starts[1:]):
        assert b > a and (a + tile) - b >= overlap * tile - 1  # overlap at least as asked (rounding)


@pytest.mark.parametrize("hw,tile,batch", [((97, 131), 32, 3), ((65, 33), (16, 24), 1), ((31, 200), 64, 8)])
def test_blend_reconstructs_identity_and_pointwise_ops_at_odd_sizes(hw, tile, batch):
    torch.manual_seed(1)
    x = torch.rand(2, 3, *hw)
    torch.testing.assert_close(sliding_window(x, lambda t: t, tile, batch_size=batch), x, rtol=0, atol=1e-5)
    out = sliding_window(x, lambda t: torch.sigmoid(t.sum(1, keepdim=True)), tile, overlap=0.5, batch_size=batch)
    torch.testing.assert_close(out, torch.sigmoid(x.sum(1, keepdim=True)), rtol=0, atol=1e-5)


def test_local_op_differs_only_near_tile_edges():
    torch.manual_seed(2)
    x = torch.rand(1, 1, 150, 170)
    out = sliding_window(x, conv_fn, 48, overlap=0.5)
    ref = conv_fn(x)
    assert out.shape == ref.shape
    # the conv's zero padding changes a 1-px rim of each tile; with 50 % overlap another tile covers that
    # rim near its centre, whose Gaussian weight dominates, so the seams stay invisible
    err = (out - ref).abs()
    assert err[..., 1:-1, 1:-1].max() < 5e-3
    assert err.max() < 0.05  # the image's own rim: the image edge is a tile edge for every tile there


def test_batches_and_progress_callback():
    x = torch.rand(1, 80, 80)
    seen = []
    a = sliding_window(x, lambda t: t * 2, 32, batch_size=1, progress=seen.append)
    b = sliding_window(x, lambda t: t * 2, 32, batch_size=16)
    torch.testing.assert_close(a, b)
    assert seen == list(range(1, len(seen) + 1)) and len(seen) == len(tile_starts(80, 32, 0.25)) ** 2


def test_bad_arguments():
    x = torch.rand(1, 8, 8)
    with pytest.raises(ValueError, match="overlap"):
        sliding_window(x, lambda t: t, 4, overlap=1.0)
    with pytest.raises(ValueError, match="tile_size"):
        sliding_window(x, lambda t: t, 0)
    with pytest.raises(ValueError, match="batch_size"):
        sliding_window(x, lambda t: t, 4, batch_size=0)
    with pytest.raises(ValueError, match="image"):
        sliding_window(x.numpy(), lambda t: t, 4)
    with pytest.raises(ValueError, match="fn must return"):
        sliding_window(torch.rand(1, 20, 20), lambda t: t[..., :2, :2], 8)
