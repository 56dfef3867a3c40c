"""grainseg: grain segmentation of metal micrographs (VM-UNet-ASPP and the paper's model zoo).

Top-level API: the ops live in :mod:`grainseg.ops`; models, data, training and inference in their
sub-packages, whose public names are gathered here.
"""
from ._version import __version__  # noqa: F401

from . import ops  # noqa: E402

# models
from .layers import SS2D, EnhancedASPP, VSSBlock  # noqa: E402
from .models import create_model, from_pretrained, list_models, list_pretrained, model_info  # noqa: E402
from .models.vmunet import VMUNet, VMUNetASPP  # noqa: E402

# the model zoo
from .layers.edge_attention import EdgeAwareAttention  # noqa: E402
from .layers.resnet import ResNetEncoder  # noqa: E402
from .models.deeplabv3plus import DeepLabV3Plus  # noqa: E402
from .models.r2attunet import R2AttUNet  # noqa: E402
from .models.sa2net import SA2Net  # noqa: E402
from .models.sam import SAM, SAMLoRA  # noqa: E402
from .models.segnet import SegNet  # noqa: E402
from .models.uctransnet import UCTransNet  # noqa: E402
from .models.unet import UNet  # noqa: E402
from .models.unetplusplus import UNetPlusPlus  # noqa: E402
from .models.vmunet_v2 import VMUNetV2, VMUNetV2Edge  # noqa: E402

# inference and grain analysis
from .grains.report import GrainReport  # noqa: E402
from .inference.predict import analyze, predict_proba  # noqa: E402

# data, training and evaluation
from .data import SegmentationDataset, preprocess_image, read_image, read_mask  # noqa: E402
from .train.trainer import TrainConfig  # noqa: E402  (grainseg.train stays the sub-package: grainseg.train.train())
