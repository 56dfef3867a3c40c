"""SAM / SAM-LoRA on a tiny random SamConfig: never downloads; LoRA on q / v only, base frozen."""
from __future__ import annotations

import inspect
import warnings

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from transformers import SamModel  # noqa: E402

from grainseg.models.registry import create_model, model_info, tiny_config  # noqa: E402
from grainseg.models.sam import DEFAULT_SAM_WEIGHTS, SAM, TINY_SAM_CONFIG, SAMLoRA, SplitQKV  # noqa: E402

HIDDEN = TINY_SAM_CONFIG["vision_config"]["hidden_size"]
LAYERS = TINY_SAM_CONFIG["vision_config"]["num_hidden_layers"]


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    """Any attempt to fetch SAM weights fails the test (unless a test replaces this)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"SamModel.from_pretrained called: {args} {kwargs}")
    monkeypatch.setattr(SamModel, "from_pretrained", refuse)


def test_lora_only_on_query_and_value_and_base_frozen():
    torch.manual_seed(0)
    m = create_model("sam_lora", **{**tiny_config("sam_lora"), "lora_rank": 3})
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable == set(m.lora_parameters())
    assert all(".attn.qkv.q." in n or ".attn.qkv.v." in n for n in trainable)
    assert all("vision_encoder" in n for n in trainable)
    assert {n.split(".attn.qkv.")[1].split(".")[0] for n in trainable} == {"q", "v"}
    # rank r on q and v of every layer: A is (r, hidden), B is (hidden, r)
    assert m.num_parameters(trainable_only=True) == LAYERS * 2 * (3 * HIDDEN + HIDDEN * 3)
    assert not any("lora" in n for n, _ in m.named_modules() if ".qkv.k" in n)


def test_split_qkv_matches_the_fused_projection():
    torch.manual_seed(0)
    fused = torch.nn.Linear(8, 24)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(SplitQKV(fused)(x), fused(x))


def test_lora_starts_as_the_base_model_and_then_changes_it():
    torch.manual_seed(0)
    base = SAM(sam_config=TINY_SAM_CONFIG, base_weights=None).eval()
    torch.manual_seed(0)  # same seed: the same random SAM inside, then split q/k/v and LoRA on top
    lora = SAMLoRA(sam_config=TINY_SAM_CONFIG, base_weights=None, lora_rank=2, lora_alpha=2).eval()
    x = torch.rand(1, 3, 40, 30)
    with torch.no_grad():
        torch.testing.assert_close(lora(x), base(x))  # LoRA B starts at zero: the base function
        for n, p in lora.lora_parameters().items():
            if "lora_B" in n:
                p.normal_()
        # now q and v of the image encoder change, k does not
        t = torch.randn(1, 4, 4, HIDDEN)
        fused = base.sam.vision_encoder.layers[0].attn.qkv(t).split(HIDDEN, dim=-1)
        split = lora.sam.vision_encoder.layers[0].attn.qkv(t).split(HIDDEN, dim=-1)
        assert not torch.allclose(split[0], fused[0])
        torch.testing.assert_close(split[1], fused[1])
        assert not torch.allclose(split[2], fused[2])


def test_sam_trains_only_the_mask_decoder_and_accepts_any_size():
    m = create_model("sam", **tiny_config("sam"))
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("sam.mask_decoder.") for n in trainable)
    for size in ((17, 90), (64, 64), (130, 31)):
        out = m(torch.rand(2, 1, *size))
        assert out.shape == (2, 1, *size) and torch.isfinite(out).all()


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="num_classes"):
        SAM(num_classes=2, sam_config=TINY_SAM_CONFIG, base_weights=None)
    with pytest.raises(ValueError, match="in_chans"):
        SAM(in_chans=4, sam_config=TINY_SAM_CONFIG, base_weights=None)
    with pytest.raises(ValueError, match="lora_rank"):
        SAMLoRA(sam_config=TINY_SAM_CONFIG, base_weights=None, lora_rank=0)


def test_default_parameter_count_needs_no_download():
    # the autouse fixture makes any from_pretrained call fail: counting builds ViT-B on the meta device
    info = model_info("sam")
    assert inspect.signature(SAM).parameters["base_weights"].default == DEFAULT_SAM_WEIGHTS
    assert "base_weights" not in info["defaults"]  # the default preset asks for the Hub weights
    assert 90e6 < info["num_params"] < 95e6  # SAM ViT-B: 93.7 M


def test_base_weights_are_copied_when_available(monkeypatch):
    torch.manual_seed(1)
    source = create_model("sam", **tiny_config("sam")).sam
    calls = []

    def fake_from_pretrained(repo_id, local_files_only=False, **kwargs):
        calls.append((repo_id, local_files_only))
        return source

    monkeypatch.setattr(SamModel, "from_pretrained", fake_from_pretrained)
    m = SAM(sam_config=TINY_SAM_CONFIG, base_weights="some/sam")
    assert m.base_weights_loaded and calls == [("some/sam", True)]  # the cache is tried first
    for k, v in source.state_dict().items():
        assert torch.equal(m.sam.state_dict()[k], v), k


def test_missing_base_weights_warn_and_keep_random_init(monkeypatch):
    def offline(repo_id, local_files_only=False, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(SamModel, "from_pretrained", offline)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = SAM(sam_config=TINY_SAM_CONFIG, base_weights="some/sam")
    assert not m.base_weights_loaded
    assert any("could not load SAM base weights 'some/sam'" in str(w.message) for w in caught)
