"""Test-time augmentation: a model wrapper that averages the probabilities over flips and rotations.

Grain boundaries have no preferred direction, so a segmentation model should answer the same for a
flipped or rotated micrograph; averaging the answers of the dihedral group D4 (the 8 flips and 90-degree
rotations of a square) removes the direction-dependent part of its error.  ``TTA(model)`` is itself a
model: it returns logits (the log-odds of the mean probability), so ``predict_proba``, the evaluation and
the grain measurement use it unchanged.  It costs one forward pass per transform.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

Transform = Tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]


def _rot(k: int, flip: bool) -> Transform:
    def fwd(x: Tensor) -> Tensor:
        x = torch.flip(x, (-1,)) if flip else x
        return torch.rot90(x, k, (-2, -1)) if k else x

    def inv(x: Tensor) -> Tensor:
        x = torch.rot90(x, -k, (-2, -1)) if k else x
        return torch.flip(x, (-1,)) if flip else x

    return fwd, inv


#: named sets of (forward, inverse) transforms on (N, C, H, W) tensors.  On a non-square input (a tile
#: clipped to a small image) the 90-degree rotations are skipped and the flips of the set remain.
TRANSFORMS: Dict[str, List[Transform]] = {
    "none": [_rot(0, False)],
    "hflip": [_rot(0, False), _rot(0, True)],
    "flips": [_rot(0, False), _rot(0, True), _rot(2, False), _rot(2, True)],  # id, h, v (= rot180 + h), hv
    "d4": [_rot(k, f) for f in (False, True) for k in range(4)],
}


def resolve_tta(tta: Union[bool, str, None]) -> str:
    """Normalise a ``tta`` argument: False / None / "none" -> "none", True -> "d4", else a name of TRANSFORMS."""
    if tta is None or tta is False:
        return "none"
    if tta is True:
        return "d4"
    if isinstance(tta, str) and tta in TRANSFORMS:
        return tta
    raise ValueError(f"tta must be True, False or one of {sorted(TRANSFORMS)}, got {tta!r}")


def record_tta(info: Dict[str, Any], tta: Union[bool, str, None]) -> Dict[str, Any]:
    """A model's info record with the test-time augmentation named (unchanged for none)."""
    name = resolve_tta(tta)
    return info if name == "none" else {**info, "tta": name}


class TTA(nn.Module):
    """Wrap ``model`` (logits (N, K, H, W)) to average its probabilities over a set of transforms.

    K == 1: sigmoid probabilities are averaged and returned as log-odds; K >= 2: softmax probabilities,
    returned as their log.  ``preprocessing``, ``in_chans`` and ``num_classes`` of the wrapped model are
    passed through so that the inference code treats the wrapper as the model.
    """

    def __init__(self, model: nn.Module, transforms: Union[str, Sequence[Transform]] = "d4", eps: float = 1e-6):
        super().__init__()
        self.model = model
        self.name = resolve_tta(transforms) if isinstance(transforms, (str, bool)) else "custom"
        self.transforms = list(TRANSFORMS[self.name] if isinstance(transforms, (str, bool)) else transforms)
        if not self.transforms:
            raise ValueError("transforms must hold at least one (forward, inverse) pair")
        probe = torch.zeros(1, 1, 1, 2)  # the transforms without a 90-degree rotation keep its shape
        self.flips = [t for t in self.transforms if t[0](probe).shape == probe.shape]
        self.eps = eps
        for attr in ("preprocessing", "in_chans", "num_classes"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"TTA input must be (N, C, H, W), got shape {tuple(x.shape)}")
        # a 90-degree rotation would change a non-square input's shape: keep the flips only
        transforms = self.transforms if x.shape[-1] == x.shape[-2] else self.flips
        return mean_probability_logits((inv(self.model(fwd(x))) for fwd, inv in transforms), self.eps)


def mean_probability_logits(logits: Iterable[Tensor], eps: float = 1e-6) -> Tensor:
    """Average the probabilities of several logits maps (N, K, H, W) and return them as logits again.

    K == 1: sigmoid probabilities, returned as log-odds; K >= 2: softmax probabilities, returned as their
    log.  Averaging probabilities, not logits, keeps one confident member from outvoting the others.
    """
    acc, n = None, 0
    for z in logits:
        z = z.float()
        p = torch.sigmoid(z) if z.shape[1] == 1 else torch.softmax(z, dim=1)
        acc, n = (p if acc is None else acc + p), n + 1
    if acc is None:
        raise ValueError("mean_probability_logits needs at least one logits map")
    p = (acc / n).clamp(eps, 1 - eps)
    return torch.logit(p) if p.shape[1] == 1 else torch.log(p)
