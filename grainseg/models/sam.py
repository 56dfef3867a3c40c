"""Segment Anything (Kirillov et al., 2023) as a grain segmenter: ``sam`` and ``sam_lora``.

Built on the transformers implementation of SAM (``SamModel``) and peft's LoRA; install them with
``pip install grainseg[sam]``.  Without them these two models are not registered (``list_models()`` leaves
them out and ``create_model("sam")`` says which packages are missing).

How an image is segmented
    The (b, 3, h, w) input (min-max normalised to [0, 1]) is resized to SAM's square input size (1024 for
    ViT-B), normalised with ImageNet mean / std, and prompted with **one box covering the whole image**
    ([0, 0, S, S] in SAM's input frame): grain segmentation wants every boundary in the micrograph, not one
    object, so the box only tells the mask decoder "the whole field".  The decoder's single low-resolution
    mask (S/4 x S/4 logits, ``multimask_output=False``) is resized bilinearly back to (h, w), so any input
    size works.

``sam`` (Table I: 88.4)
    Image encoder and prompt encoder frozen, mask decoder trained (the usual SAM fine-tuning recipe).
``sam_lora`` (Table I: 90.9)
    Every SAM weight frozen; LoRA adapters (rank ``lora_rank``, paper: 512) on the image encoder's query and
    value projections only.  transformers fuses q, k, v into one ``qkv`` linear layer, so each is first split
    into three linear layers ``qkv.q``, ``qkv.k``, ``qkv.v`` holding the same weights (same output), and
    peft's LoRA targets ``qkv.q`` and ``qkv.v``.

Base weights
    ``base_weights`` (default ``facebook/sam-vit-base``) is loaded from the local Hugging Face cache, or
    downloaded when the cache lacks it; if neither works a warning is issued and SAM keeps its random
    initialisation (a saved grainseg checkpoint then still restores every weight).  A saved model folder
    (``from_pretrained``) holds every weight, so loading it never fetches base weights: no network, no
    warning.  ``base_weights=None`` never touches the Hub (the tests use a tiny random ``sam_config``).  Building the model on the meta device
    (parameter counting) never loads weights.
"""
from __future__ import annotations

import copy
import importlib.util
import warnings
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers._args import check_positive_int, check_probability
from .base import SegmentationModel, saved_weights_policy
from .loading import WEIGHTS_NAME
from .registry import register_model, register_unavailable

__all__ = ["SAM", "SAMLoRA", "SplitQKV", "sam_available", "DEFAULT_SAM_WEIGHTS", "TINY_SAM_CONFIG"]

#: Hub id of SAM ViT-B in the transformers format.
DEFAULT_SAM_WEIGHTS = "facebook/sam-vit-base"
#: ImageNet statistics SAM was trained with (on [0, 1] pixel values).
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)
#: A tiny random SAM (64 x 64 input, 2 ViT layers of width 32) for tests; no download.
TINY_SAM_CONFIG: Dict[str, Any] = {
    "vision_config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 64,
                      "patch_size": 16, "output_channels": 16, "window_size": 2, "global_attn_indexes": [1],
                      "num_pos_feats": 8, "mlp_dim": 64},
    "prompt_encoder_config": {"hidden_size": 16, "image_size": 64, "patch_size": 16, "mask_input_channels": 4},
    "mask_decoder_config": {"hidden_size": 16, "mlp_dim": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                            "iou_head_hidden_dim": 16},
}


def sam_available() -> bool:
    """True when the optional ``grainseg[sam]`` dependencies (transformers, peft) are importable."""
    return all(importlib.util.find_spec(m) is not None for m in ("transformers", "peft"))


def _require_sam_extra() -> None:
    missing = [m for m in ("transformers", "peft") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"the SAM models need {', '.join(missing)}: pip install 'grainseg[sam]'")


def _on_meta_device() -> bool:
    get_default = getattr(torch, "get_default_device", None)
    return get_default is not None and torch.device(get_default()).type == "meta"


class SplitQKV(nn.Module):
    """A fused ``qkv`` linear layer split into ``q``, ``k`` and ``v`` linear layers (same output), so LoRA
    can adapt the query and value projections alone."""

    def __init__(self, qkv: nn.Linear) -> None:
        super().__init__()
        if qkv.out_features % 3:
            raise ValueError(f"qkv must have 3 x dim outputs, got {qkv.out_features}")
        dim = qkv.out_features // 3
        bias = qkv.bias is not None
        self.q, self.k, self.v = (nn.Linear(qkv.in_features, dim, bias=bias, device=qkv.weight.device,
                                            dtype=qkv.weight.dtype) for _ in range(3))
        with torch.no_grad():
            for i, lin in enumerate((self.q, self.k, self.v)):
                lin.weight.copy_(qkv.weight[i * dim:(i + 1) * dim])
                if bias:
                    lin.bias.copy_(qkv.bias[i * dim:(i + 1) * dim])

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.q(x), self.k(x), self.v(x)], dim=-1)


class _SAMBase(SegmentationModel):
    """Shared SAM wrapper: builds ``SamModel`` from ``sam_config``, loads ``base_weights``, box-prompts."""

    size_divisor = 1
    #: the encoder (``--freeze-encoder-epochs``): SAM's ViT image encoder
    encoder_modules = ('sam.vision_encoder',)
    #: the IoU head scores masks; the logits do not depend on it
    no_grad_params = ("sam.mask_decoder.iou_prediction_head.*",)

    def _build(self, in_chans: int, num_classes: int, sam_config: Optional[dict], base_weights: Optional[str]) -> None:
        _require_sam_extra()
        from transformers import SamConfig, SamModel

        if in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 or 3 for SAM (grey images are repeated to RGB), got {in_chans}")
        if num_classes != 1:
            raise ValueError(f"num_classes must be 1 for SAM (one box prompt gives one binary mask), got {num_classes}")
        if sam_config is not None and not isinstance(sam_config, dict):
            raise ValueError(f"sam_config must be a dict of SamConfig arguments or None, got {type(sam_config).__name__}")
        if base_weights is not None and (not isinstance(base_weights, str) or not base_weights):
            raise ValueError(f"base_weights must be a Hub id / local folder string or None, got {base_weights!r}")
        config = SamConfig(**copy.deepcopy(sam_config or {}))
        self.sam = SamModel(config)
        self.image_size = int(config.vision_config.image_size)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)
        self.base_weights_loaded = False
        policy = saved_weights_policy()  # set by from_pretrained, which restores every weight afterwards
        if base_weights is not None and not _on_meta_device() and not (policy and policy["complete"]):
            self.base_weights_loaded = self._load_base_weights(
                base_weights, local_files_only=bool(policy and policy["local_files_only"]))

    def _load_base_weights(self, repo_id: str, local_files_only: bool = False) -> bool:
        """Copy pretrained SAM weights (cache first, then the Hub unless ``local_files_only``) into ``self.sam``;
        warn and go on without."""
        from transformers import SamModel

        last_error: Optional[Exception] = None
        for local_only in ((True,) if local_files_only else (True, False)):
            try:
                pretrained = SamModel.from_pretrained(repo_id, local_files_only=local_only)
            except Exception as err:  # not cached / offline / no such repo: try the next way
                last_error = err
                continue
            missing, unexpected = self.sam.load_state_dict(pretrained.state_dict(), strict=False)
            if missing or unexpected:
                raise ValueError(f"base_weights {repo_id!r} do not fit sam_config: missing {missing[:5]}, "
                                 f"unexpected {unexpected[:5]}")
            return True
        warnings.warn(f"could not load SAM base weights {repo_id!r} ({last_error}); SAM keeps its random "
                      "initialisation. Pass base_weights=None to silence this.", UserWarning, stacklevel=3)
        return False

    def _freeze(self, trainable: List[str]) -> None:
        """requires_grad only for SAM parameters whose name contains one of ``trainable``."""
        for name, p in self.sam.named_parameters():
            p.requires_grad_(any(t in name for t in trainable))

    def forward_features(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        s = self.image_size
        pixels = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        pixels = (pixels - self.pixel_mean.to(pixels.dtype)) / self.pixel_std.to(pixels.dtype)
        boxes = pixels.new_tensor([0.0, 0.0, float(s), float(s)]).expand(x.shape[0], 1, 4)
        out = self.sam(pixel_values=pixels, input_boxes=boxes, multimask_output=False)
        logits = out.pred_masks[:, 0]  # (b, 1, s/4, s/4): one mask for the one box
        return F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)

    def _save_pretrained(self, save_directory) -> None:
        """As the base, but transformers ties two SAM tensors (the prompt encoder's and the image-wide
        positional embedding: one tensor under two names), which safetensors refuses to write; each name
        gets its own copy (equal values; loading writes both back into the tied tensor)."""
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}
        save_file(state, str(save_directory / WEIGHTS_NAME), metadata={"format": "pt"})


def _register_if_available(*args: Any, **kwargs: Any):
    """register_model when transformers and peft are installed; otherwise leave the class unregistered."""
    if sam_available():
        return register_model(*args, **kwargs)
    missing = [m for m in ("transformers", "peft") if importlib.util.find_spec(m) is None]
    register_unavailable(args[0], f"pip install 'grainseg[sam]' (it needs {', '.join(missing)})")
    return lambda cls: cls


@_register_if_available("sam", paper_name="SAM (ViT-B, box prompt)", paper_dice=88.4,
                        tiny=dict(sam_config=TINY_SAM_CONFIG, base_weights=None))
class SAM(_SAMBase):
    """SAM ViT-B prompted with the whole-image box; image and prompt encoders frozen, mask decoder trained."""

    def __init__(self, in_chans: int = 3, num_classes: int = 1, sam_config: Optional[dict] = None,
                 base_weights: Optional[str] = DEFAULT_SAM_WEIGHTS, train_image_encoder: bool = False,
                 preprocessing: Optional[dict] = None) -> None:
        super().__init__(in_chans=in_chans, num_classes=num_classes, preprocessing=preprocessing)
        self._build(in_chans, num_classes, sam_config, base_weights)
        self._freeze(["mask_decoder."] + (["vision_encoder."] if train_image_encoder else []))


@_register_if_available("sam_lora", paper_name="SAM + LoRA (rank 512)", paper_dice=90.9,
                        tiny=dict(sam_config=TINY_SAM_CONFIG, base_weights=None, lora_rank=4, lora_alpha=4))
class SAMLoRA(_SAMBase):
    """SAM ViT-B with every weight frozen and peft LoRA (rank ``lora_rank``) on the image encoder's query and
    value projections; only the LoRA matrices train."""

    no_grad_params = ()  # the IoU head is frozen here, so nothing trainable is unused

    def __init__(self, in_chans: int = 3, num_classes: int = 1, sam_config: Optional[dict] = None,
                 base_weights: Optional[str] = DEFAULT_SAM_WEIGHTS, lora_rank: int = 512, lora_alpha: int = 512,
                 lora_dropout: float = 0.0, preprocessing: Optional[dict] = None) -> None:
        super().__init__(in_chans=in_chans, num_classes=num_classes, preprocessing=preprocessing)
        check_positive_int(lora_rank, "lora_rank")
        check_positive_int(lora_alpha, "lora_alpha")
        check_probability(lora_dropout, "lora_dropout")
        self._build(in_chans, num_classes, sam_config, base_weights)
        from peft import LoraConfig, inject_adapter_in_model

        for layer in self.sam.vision_encoder.layers:
            layer.attn.qkv = SplitQKV(layer.attn.qkv)
        lora = LoraConfig(r=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout, bias="none",
                          target_modules=r"vision_encoder\.layers\.\d+\.attn\.qkv\.(q|v)")
        inject_adapter_in_model(lora, self.sam)
        self._freeze(["lora_"])

    def lora_parameters(self) -> Dict[str, nn.Parameter]:
        """The LoRA matrices by name (the only trainable parameters)."""
        return {n: p for n, p in self.named_parameters() if "lora_" in n}
