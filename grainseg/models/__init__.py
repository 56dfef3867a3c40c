"""grainseg models: the shared base class, the registry and one module per architecture.

Every module in this package registers its classes with :mod:`grainseg.models.registry` on import;
``list_models()`` imports them all.
"""
from .base import SegmentationModel, StateDictMismatchError
from .registry import create_model, list_models, model_info, register_model, register_preset

__all__ = [
    "SegmentationModel",
    "StateDictMismatchError",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
    "register_preset",
]
