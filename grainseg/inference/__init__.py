"""Inference: sliding-window tiling, probability maps at the image's resolution, the grain analysis."""
from .ensemble import Ensemble  # noqa: F401
from .predict import DEFAULT_MODEL, analyze, load_model, predict_proba  # noqa: F401
from .tiling import gaussian_weights, sliding_window, tile_starts  # noqa: F401
from .tta import TTA  # noqa: F401

__all__ = ["Ensemble", "TTA", "sliding_window", "gaussian_weights", "tile_starts", "predict_proba", "analyze", "load_model", "DEFAULT_MODEL"]
