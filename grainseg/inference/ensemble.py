"""Model ensembles: several trained models as one, averaging their probabilities.

Models trained with different seeds or architectures make partly independent errors on grain
boundaries; the mean of their probabilities is a smoother, usually better calibrated map.  ``Ensemble``
is itself a model (it returns logits of the mean probability), so ``predict_proba``, ``TTA``, the
evaluation and the grain measurement use it unchanged.  It costs one forward pass per member.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from grainseg.data.preprocessing import normalize_preprocessing

from .tta import mean_probability_logits

#: the preprocessing keys that decide the network's input; an ensemble's members must agree on them.
INPUT_KEYS = ("normalize", "input_size", "train_image_size")


class Ensemble(nn.Module):
    """Average the probabilities of ``models`` (each logits (N, K, H, W) for the same input).

    The members must agree on how the input is prepared (``preprocessing``'s ``normalize``,
    ``input_size`` and ``train_image_size``), on ``in_chans`` and on ``num_classes``, since the inference
    code prepares one input for all; a mismatch is a ValueError that names the member and the field.
    The ensemble's ``preprocessing`` is the first member's, with the first recorded
    ``grain_intercept_px`` (for ``rescale="auto"``).
    """

    def __init__(self, models: Sequence[nn.Module], eps: float = 1e-6):
        super().__init__()
        models = list(models)
        if not models:
            raise ValueError("models must hold at least one model")
        for i, m in enumerate(models):
            if not isinstance(m, nn.Module):
                raise TypeError(f"models[{i}] must be a torch.nn.Module, got {type(m).__name__}")
        preps = [normalize_preprocessing(getattr(m, "preprocessing", None)) for m in models]
        fields = [(f"preprocessing[{k!r}]", [p[k] for p in preps]) for k in INPUT_KEYS]
        fields += [(a, [getattr(m, a, None) for m in models]) for a in ("in_chans", "num_classes")]
        for name, values in fields:
            for i, got in enumerate(values[1:], 1):
                if got != values[0]:
                    raise ValueError(f"models[{i}].{name} is {got!r} but models[0].{name} is {values[0]!r}: "
                                     "the members of an Ensemble must take the same input")
        self.preprocessing = dict(preps[0])
        g = next((p["grain_intercept_px"] for p in preps if p.get("grain_intercept_px")), None)
        if g is not None:
            self.preprocessing["grain_intercept_px"] = g
        for a in ("in_chans", "num_classes"):
            if getattr(models[0], a, None) is not None:
                setattr(self, a, getattr(models[0], a))
        self.members = nn.ModuleList(models)
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return mean_probability_logits((m(x) for m in self.members), self.eps)
