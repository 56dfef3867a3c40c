"""grainseg models: the shared base class, the registry, weight loading and one module per architecture.

This file imports every architecture module (the one list of them), so their decorators have filled the
registry once ``grainseg.models`` is imported.  Inside the package the imports point one way:
``registry`` <- ``loading`` <- ``base`` <- ``deep_supervision`` <- the architectures.
"""
from .loading import PretrainedNotFoundError
from .base import SegmentationModel, StateDictMismatchError
from .deep_supervision import DeepSupervisionMixin
from .registry import create_model, list_models, list_pretrained, model_info, register_model, register_preset

# the architectures (each registers its presets on import)
from . import deeplabv3plus, r2attunet, sa2net, sam, segnet, uctransnet, unet, unetplusplus, vmunet, vmunet_v2  # noqa: F401

#: ``grainseg.from_pretrained``: any saved grainseg model, its class taken from config.json.
from_pretrained = SegmentationModel.from_pretrained

__all__ = [
    "SegmentationModel",
    "StateDictMismatchError",
    "DeepSupervisionMixin",
    "PretrainedNotFoundError",
    "create_model",
    "from_pretrained",
    "list_models",
    "list_pretrained",
    "model_info",
    "register_model",
    "register_preset",
]
