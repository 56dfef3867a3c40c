"""grainseg: grain segmentation of metal micrographs (VM-UNet-ASPP and the paper's model zoo).

Top-level API: the ops live in :mod:`grainseg.ops`; models, data, training and inference in their
sub-packages.  Each sub-package adds its public names below.
"""
__version__ = "0.1.0"

from . import ops  # noqa: E402

# models (models helper)
from .hub import from_pretrained  # noqa: E402
from .layers import SS2D, EnhancedASPP, VSSBlock  # noqa: E402
from .models import create_model, list_models, model_info  # noqa: E402
from .models.vmunet import VMUNet, VMUNetASPP  # noqa: E402
