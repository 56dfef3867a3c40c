"""Training and evaluation: losses, metrics, the trainer and data-parallel helpers."""
from .losses import BCELoss, DiceCELoss, DiceLoss, build_loss  # noqa: F401
from .metrics import image_metrics, summarize  # noqa: F401
from .trainer import TrainConfig, train  # noqa: F401

__all__ = ["BCELoss", "DiceLoss", "DiceCELoss", "build_loss", "image_metrics", "summarize", "TrainConfig", "train"]
