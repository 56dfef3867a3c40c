"""Building blocks: SS2D, VSS blocks and stages, patch embed / merge / expand, EnhancedASPP, and the
zoo's shared layers (ResNet encoders, attention gates, Edge-Aware Attention, deep supervision)."""
from .aspp import EnhancedASPP
from .attention import AttentionGate, ChannelAttention, SpatialAttention
from .deep_supervision import deep_supervision_loss
from .edge_attention import EdgeAwareAttention
from .patch import PatchEmbed, PatchExpand, PatchMerging
from .resnet import ResNetEncoder
from .ss2d import SS2D
from .vss_block import DropPath, VSSBlock, VSSLayer, VSSLayerUp

__all__ = [
    "SS2D", "VSSBlock", "VSSLayer", "VSSLayerUp", "DropPath", "PatchEmbed", "PatchMerging", "PatchExpand",
    "EnhancedASPP", "EdgeAwareAttention", "ResNetEncoder", "AttentionGate", "ChannelAttention",
    "SpatialAttention", "deep_supervision_loss",
]
