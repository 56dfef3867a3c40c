"""EdgeAwareAttention: fixed Sobel x / y on a known edge image, gate in (0, 1), gating of the features."""
from __future__ import annotations

import math

import pytest
import torch

from grainseg import EdgeAwareAttention


def _step_image(h: int = 8, w: int = 10, col: int = 5) -> torch.Tensor:
    """One channel, 0 left of ``col``, 1 from ``col`` on: a vertical edge."""
    x = torch.zeros(1, 1, h, w)
    x[..., col:] = 1.0
    return x


def test_sobel_magnitude_on_a_vertical_edge():
    att = EdgeAwareAttention(1)
    mag = att.edge_magnitude(_step_image())
    # Sobel-x across a 0 -> 1 step: (1 + 2 + 1) = 4 on the two columns beside the step, 0 elsewhere;
    # Sobel-y is 0 everywhere (rows are identical; replicate padding keeps the borders flat).
    floor = math.sqrt(1e-6)
    torch.testing.assert_close(mag[..., 4:6], torch.full_like(mag[..., 4:6], math.sqrt(16 + 1e-6)))
    torch.testing.assert_close(mag[..., :4], torch.full_like(mag[..., :4], floor))
    torch.testing.assert_close(mag[..., 6:], torch.full_like(mag[..., 6:], floor))


def test_sobel_y_sees_horizontal_edges_and_filters_are_fixed():
    att = EdgeAwareAttention(2)
    x = _step_image().transpose(-1, -2).repeat(1, 2, 1, 1)  # horizontal edge, two channels
    mag = att.edge_magnitude(x)
    assert torch.allclose(mag[..., 4:6, :], torch.tensor(4.0), atol=1e-4)
    assert not any("sobel" in n for n, _ in att.named_parameters())  # fixed: a buffer, not learned
    assert "sobel" not in att.state_dict()  # and not saved (it is rebuilt from constants)


def test_gate_is_in_open_unit_interval_and_multiplies_the_input():
    torch.manual_seed(0)
    att = EdgeAwareAttention(3)
    x = torch.randn(2, 3, 9, 7)
    gate = att.gate(x)
    assert gate.shape == x.shape and (gate > 0).all() and (gate < 1).all()
    torch.testing.assert_close(att(x), x * gate)


def test_gate_responds_to_edges():
    att = EdgeAwareAttention(1)
    with torch.no_grad():
        att.proj.weight.fill_(1.0)
        att.proj.bias.fill_(-2.0)
    gate = att.gate(_step_image())
    assert gate[..., 5].min() > 0.85 and gate[..., 0].max() < 0.15  # open on the edge, shut on flat areas


def test_gradient_is_finite_on_flat_input():
    att = EdgeAwareAttention(2)
    x = torch.ones(1, 2, 6, 6, requires_grad=True)  # zero gradient image: sqrt needs the eps
    att(x).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(att.proj.weight.grad).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="channels"):
        EdgeAwareAttention(0)
    with pytest.raises(ValueError, match="eps"):
        EdgeAwareAttention(2, eps=0.0)
    with pytest.raises(ValueError, match=r"\(batch, 2, height, width\)"):
        EdgeAwareAttention(2)(torch.rand(1, 3, 4, 4))
