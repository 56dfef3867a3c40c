"""Building blocks: SS2D, VSS blocks and stages, patch embed / merge / expand, EnhancedASPP."""
from .aspp import EnhancedASPP
from .patch import PatchEmbed, PatchExpand, PatchMerging
from .ss2d import SS2D
from .vss_block import DropPath, VSSBlock, VSSLayer, VSSLayerUp

__all__ = ["SS2D", "VSSBlock", "VSSLayer", "VSSLayerUp", "DropPath", "PatchEmbed", "PatchMerging", "PatchExpand", "EnhancedASPP"]
