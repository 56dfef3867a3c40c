"""VM-UNet and VM-UNet-ASPP (the paper's grain-segmentation model), exact to the authors' code.

VM-UNet: 4x4 patch embed + LN; four encoder stages of VSS blocks with patch merging between them;
four decoder stages (patch expanding, then VSS blocks) with additive skips; a final 4x patch expand
to dims[0] / 4 channels and a 1x1 conv to the classes.  VM-UNet-ASPP puts :class:`EnhancedASPP`
(dims[0] / 4 -> dims[0] / 4 channels) between the final expand and the 1x1 conv.

Module names are the reference names (``patch_embed``, ``layers``, ``layers_up``, ``final_up``,
``aspp``, ``final_conv``), so the authors' and VM-UNet's checkpoints load with
``load_reference_state_dict``, and VMamba encoder checkpoints with ``load_vmamba_encoder``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from torch import Tensor, nn

from grainseg.layers import EnhancedASPP, PatchEmbed, PatchExpand, PatchMerging, VSSLayer, VSSLayerUp

from .base import SegmentationModel
from .loading import read_state_dict, unwrap_checkpoint
from .registry import register_model, register_pretrained

__all__ = ["VMUNet", "VMUNetASPP", "expand_dims"]

NUM_STAGES = 4
PATCH_SIZE = 4
#: Prefixes that training wrappers add in front of the network's names (DataParallel, VM-UNet's wrapper).
_WRAPPER_PREFIXES = ("module.", "vmunet.", "model.", "net.")


def expand_dims(dims: Union[int, Sequence[int]]) -> List[int]:
    """``dims`` as four stage widths: an int C means [C, 2C, 4C, 8C]."""
    if isinstance(dims, int) and not isinstance(dims, bool):
        if dims < 4 or dims % 4:
            raise ValueError(f"dims must be a multiple of 4 (the final expand makes dims/4 channels), got {dims}")
        return [dims * 2**i for i in range(NUM_STAGES)]
    dims = list(dims) if isinstance(dims, (list, tuple)) else dims
    if not isinstance(dims, list) or len(dims) != NUM_STAGES or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims
    ):
        raise ValueError(f"dims must be an int or a list of {NUM_STAGES} positive ints, got {dims!r}")
    if any(dims[i + 1] != 2 * dims[i] for i in range(NUM_STAGES - 1)) or dims[0] % 4:
        raise ValueError(f"dims must double at every stage from a multiple of 4 (patch merging), got {dims}")
    return dims


def _depths(value: Sequence[int], name: str, allow_zero: bool = False) -> List[int]:
    if not isinstance(value, (list, tuple)) or len(value) != NUM_STAGES or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= (0 if allow_zero else 1) for d in value
    ):
        raise ValueError(f"{name} must be a list of {NUM_STAGES} positive ints, got {value!r}")
    return list(value)


def _linspace(end: float, n: int) -> List[float]:
    """torch.linspace(0, end, n) as Python floats (no tensor, so it also works on the meta device)."""
    return [end * i / (n - 1) for i in range(n)] if n > 1 else [0.0] * n


def _strip_wrappers(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    out = {}
    for k, v in state_dict.items():
        changed = True
        while changed:
            changed = False
            for p in _WRAPPER_PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        out[k] = v
    return out


def _as_state_dict(source: Union[Mapping[str, Tensor], str, Path]) -> Dict[str, Tensor]:
    if isinstance(source, (str, Path)):
        return read_state_dict(source)
    if isinstance(source, Mapping):
        return unwrap_checkpoint(dict(source))
    raise ValueError(f"expected a state dict or a checkpoint path, got {type(source).__name__}")


@register_model(
    "vmunet",
    paper_name="VM-UNet",
    paper_dice=91.90,
    tiny=dict(dims=8, depths=[1, 1, 1, 1], depths_decoder=[1, 1, 1, 1], d_state=4),
)
class VMUNet(SegmentationModel):
    """VM-UNet (Ruan & Xiang 2024) with the paper's grain configuration as defaults."""

    size_divisor = PATCH_SIZE * 2 ** (NUM_STAGES - 1)
    #: the encoder (``--freeze-encoder-epochs``): patch embedding and the four VSS stages (with patch merging)
    encoder_modules = ('patch_embed', 'layers')

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1,
        dims: Union[int, Sequence[int]] = 96,
        depths: Sequence[int] = (2, 2, 9, 2),
        depths_decoder: Sequence[int] = (2, 2, 2, 1),
        d_state: int = 16,
        d_conv: int = 3,
        expand: Union[int, float] = 2,
        drop_path_rate: float = 0.2,
        preprocessing: Optional[dict] = None,
    ) -> None:
        super().__init__(in_chans=in_chans, num_classes=num_classes, preprocessing=preprocessing)
        self.dims = expand_dims(dims)
        self.depths = _depths(depths, "depths")
        self.depths_decoder = _depths(depths_decoder, "depths_decoder")
        if not isinstance(drop_path_rate, (int, float)) or not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        ssm = dict(d_state=d_state, d_conv=d_conv, expand=expand)
        dims_dec = self.dims[::-1]

        self.patch_embed = PatchEmbed(in_chans, self.dims[0], PATCH_SIZE)
        dpr = _linspace(drop_path_rate, sum(self.depths))
        dpr_dec = _linspace(drop_path_rate, sum(self.depths_decoder))[::-1]
        self.layers = nn.ModuleList()
        for i in range(NUM_STAGES):
            start = sum(self.depths[:i])
            down = PatchMerging(self.dims[i]) if i < NUM_STAGES - 1 else None
            self.layers.append(VSSLayer(self.dims[i], self.depths[i], dpr[start:start + self.depths[i]], down, **ssm))
        self.layers_up = nn.ModuleList()
        for i in range(NUM_STAGES):
            start = sum(self.depths_decoder[:i])
            up = PatchExpand(2 * dims_dec[i], dims_dec[i], 2) if i > 0 else None
            rates = dpr_dec[start:start + self.depths_decoder[i]]
            self.layers_up.append(VSSLayerUp(dims_dec[i], self.depths_decoder[i], rates, up, **ssm))
        self.head_channels = self.dims[0] // 4
        self.final_up = PatchExpand(self.dims[0], self.head_channels, PATCH_SIZE)
        self.final_conv = nn.Conv2d(self.head_channels, num_classes, 1)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        """VM-UNet's init: truncated-normal (std 0.02) linear weights, zero biases, unit LayerNorms."""
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ forward
    def encode(self, x: Tensor) -> Tuple[Tensor, List[Tensor]]:
        """(b, c, H, W) -> deepest (b, H/32, W/32, 8C) map and the skips (input of every stage)."""
        x = self.patch_embed(x)
        skips = []
        for layer in self.layers:
            skips.append(x)
            x = layer(x)
        return x, skips

    def decode(self, x: Tensor, skips: List[Tensor]) -> Tensor:
        """Decoder with additive skips: (b, H/32, W/32, 8C) -> (b, H/4, W/4, C)."""
        for i, layer in enumerate(self.layers_up):
            x = layer(x if i == 0 else x + skips[-i])
        return x

    def head(self, x: Tensor) -> Tensor:
        """Final 4x expand, then the 1x1 conv to the classes: (b, H/4, W/4, C) -> (b, classes, H, W)."""
        return self.final_conv(self.final_up(x).permute(0, 3, 1, 2))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.head(self.decode(*self.encode(x)))

    # ------------------------------------------------------------------ reference weights
    def reference_to_native(self, state_dict: Union[Mapping[str, Tensor], str, Path]) -> Dict[str, Tensor]:
        """Reference names are ours; only unwrap ``{"model": ...}`` and strip ``module.``/``vmunet.`` prefixes."""
        return _strip_wrappers(_as_state_dict(state_dict))

    def load_reference_state_dict(
        self, state_dict: Union[Mapping[str, Tensor], str, Path], strict: bool = True
    ) -> Tuple[list, list]:
        """Load a state dict (or checkpoint file) saved by the authors' / VM-UNet's code, strictly by default."""
        return self.load_weights(self.reference_to_native(state_dict), strict=strict)

    def load_vmamba_encoder(self, source: Union[Mapping[str, Tensor], str, Path]) -> Dict[str, List[str]]:
        """Initialise from a VMamba classification checkpoint the way VM-UNet's ``load_from`` does.

        Encoder names (``patch_embed.*``, ``layers.*``) load as they are; encoder stage i is also
        copied into decoder stage 3 - i (``layers.i.*`` -> ``layers_up.{3-i}.*``), block by block as
        far as the decoder's depth goes.  Keys absent here (the classifier, deeper blocks) or with a
        different shape are skipped.  Returns {"loaded": [...], "skipped": [...]} (our key names).
        """
        sd = _strip_wrappers(_as_state_dict(source))
        own = self.state_dict()
        candidates: Dict[str, Tensor] = {}
        for k, v in sd.items():
            candidates.setdefault(k, v)
            if k.startswith("layers."):
                stage, rest = k[len("layers."):].split(".", 1)
                if stage.isdigit() and int(stage) < NUM_STAGES:
                    candidates.setdefault(f"layers_up.{NUM_STAGES - 1 - int(stage)}.{rest}", v)
        loaded = {k: v for k, v in candidates.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
        if not loaded:
            raise ValueError("no tensor of the checkpoint matches this model (is it a VMamba / VM-UNet checkpoint?)")
        self.load_state_dict(loaded, strict=False)
        return {"loaded": sorted(loaded), "skipped": sorted(set(candidates) - set(loaded))}


@register_model(
    "vmunet_aspp",
    paper_name="VM-UNet-ASPP",
    paper_dice=91.95,
    tiny=dict(dims=8, depths=[1, 1, 1, 1], depths_decoder=[1, 1, 1, 1], d_state=4),
    presets={
        "vmunet_aspp_small": dict(
            dims=32,
            depths=[2, 2, 4, 2],
            depths_decoder=[2, 2, 2, 1],
            drop_path_rate=0.1,
            description="compact VM-UNet-ASPP for CPU use; the embedded default model",
            tiny=dict(dims=8, depths=[1, 1, 1, 1], depths_decoder=[1, 1, 1, 1], d_state=4),
        )
    },
)
class VMUNetASPP(VMUNet):
    """VM-UNet-ASPP: VM-UNet with :class:`EnhancedASPP` on the final expanded map (the paper's model)."""

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1,
        dims: Union[int, Sequence[int]] = 96,
        depths: Sequence[int] = (2, 2, 9, 2),
        depths_decoder: Sequence[int] = (2, 2, 2, 1),
        d_state: int = 16,
        d_conv: int = 3,
        expand: Union[int, float] = 2,
        drop_path_rate: float = 0.2,
        aspp_rates: Sequence[int] = (3, 6, 9, 12, 15),
        preprocessing: Optional[dict] = None,
    ) -> None:
        super().__init__(
            in_chans=in_chans,
            num_classes=num_classes,
            dims=dims,
            depths=depths,
            depths_decoder=depths_decoder,
            d_state=d_state,
            d_conv=d_conv,
            expand=expand,
            drop_path_rate=drop_path_rate,
            preprocessing=preprocessing,
        )
        self.aspp = EnhancedASPP(self.head_channels, self.head_channels, aspp_rates)

    def head(self, x: Tensor) -> Tensor:
        """Final 4x expand, EnhancedASPP, then the 1x1 conv to the classes."""
        return self.final_conv(self.aspp(self.final_up(x).permute(0, 3, 1, 2)))


register_pretrained(
    "grainseg/vmunet-aspp-small-exone316l",
    model="vmunet_aspp_small",
    bundled="vmunet-aspp-small-exone316l",
    description="vmunet_aspp_small (3.9 M) trained on the ExONE 316L `grouped` split; clean `grouped` test Dice "
                "0.909; G off by 0.19 / 0.13 rms (planimetric / intercept) on 8 held-out micrographs; bundled in "
                "the package, the default of predict",
)

register_pretrained(
    "grainseg/vmunet-aspp-exone316l",
    model="vmunet_aspp",
    bundled="vmunet-aspp-exone316l",
    description="vmunet_aspp (paper configuration, 35.8 M) trained by the paper's protocol on the ExONE 316L "
                "`paper` split; `paper` test Dice 0.911 (the paper: 0.9195); no held-out micrograph for its G "
                "error; 72 MB fp16, kept in the repository's weights/ (not in the wheel) and on the Hub",
)
