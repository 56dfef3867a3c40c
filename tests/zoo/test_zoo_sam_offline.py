"""A saved SAM folder loads without the network: its file restores every weight, so no base weights are fetched."""
from __future__ import annotations

import json
import warnings

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from transformers import SamModel  # noqa: E402

import grainseg  # noqa: E402
from grainseg.models.sam import DEFAULT_SAM_WEIGHTS, SAM, TINY_SAM_CONFIG  # noqa: E402


@pytest.fixture()
def hub_calls(monkeypatch):
    """Records every attempt to get SAM base weights (each fails, as offline)."""
    calls = []

    def offline(repo_id, local_files_only=False, **kwargs):
        calls.append((repo_id, local_files_only))
        raise OSError("offline")

    monkeypatch.setattr(SamModel, "from_pretrained", offline)
    return calls


@pytest.fixture()
def saved_sam(tmp_path):
    torch.manual_seed(0)
    model = SAM(sam_config=TINY_SAM_CONFIG, base_weights=None).eval()
    model.save_pretrained(tmp_path / "sam")
    cfg = json.loads((tmp_path / "sam" / "config.json").read_text())
    cfg["base_weights"] = DEFAULT_SAM_WEIGHTS  # as a model trained from the Hub weights records it
    (tmp_path / "sam" / "config.json").write_text(json.dumps(cfg))
    return model, tmp_path / "sam"


@pytest.mark.parametrize("local_files_only", [True, False])
def test_saved_sam_loads_without_fetching_base_weights(saved_sam, hub_calls, local_files_only):
    model, folder = saved_sam
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "keeps its random initialisation" warning
        loaded = grainseg.from_pretrained(folder, local_files_only=local_files_only)
    assert hub_calls == []
    assert loaded.config["base_weights"] == DEFAULT_SAM_WEIGHTS  # the provenance stays recorded
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_incomplete_saved_sam_fetches_base_weights_from_the_cache_only_when_offline(saved_sam, hub_calls):
    from safetensors.torch import load_file, save_file

    _, folder = saved_sam
    sd = load_file(str(folder / "model.safetensors"))
    sd.pop(next(k for k in sd if "vision_encoder" in k))
    save_file(sd, str(folder / "model.safetensors"))
    with pytest.warns(UserWarning, match="could not load SAM base weights"):
        grainseg.from_pretrained(folder, local_files_only=True, strict=False)
    assert hub_calls == [(DEFAULT_SAM_WEIGHTS, True)]  # the cache, never the Hub
