"""Hub I/O offline: local directories, a hand-built Hugging Face cache, bundled weights, errors, no pickle."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import grainseg
from grainseg import VMUNet, VMUNetASPP, from_pretrained
from grainseg.hub import PretrainedNotFoundError
from grainseg.models.base import StateDictMismatchError

TINY = dict(dims=8, depths=[1, 1, 1, 1], depths_decoder=[1, 1, 1, 1], d_state=4)
REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = VMUNetASPP(**TINY, aspp_rates=[1, 2], drop_path_rate=0.05).eval()
    folder = tmp_path / "saved"
    model.save_pretrained(folder, metrics={"dice": 0.9195, "iou": 0.85}, dataset="ExONE 316L (paper split)")
    return model, folder


def _same_outputs(a, b):
    x = torch.rand(1, 3, 30, 26)
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_save_pretrained_writes_config_weights_and_card(saved):
    model, folder = saved
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architecture"] == "VMUNetASPP" and cfg["aspp_rates"] == [1, 2] and cfg["dims"] == 8
    card = (folder / "README.md").read_text()
    assert "library_name: grainseg" in card and "pipeline_tag: image-segmentation" in card
    assert "| dice | 0.9195 |" in card and "ExONE 316L (paper split)" in card
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save_pretrained(folder)
    model.save_pretrained(folder, overwrite=True, metrics={"dice": 0.5})
    assert "| dice | 0.5000 |" in (folder / "README.md").read_text()


def test_local_directory_roundtrip_and_class_selection(saved):
    model, folder = saved
    for loaded in (from_pretrained(folder), VMUNetASPP.from_pretrained(str(folder))):
        assert type(loaded) is VMUNetASPP and _same_outputs(model, loaded)
    with pytest.raises(ValueError, match="holds a VMUNetASPP"):
        VMUNet.from_pretrained(folder)


def test_config_roundtrip_keeps_every_init_argument(tmp_path):
    args = dict(in_chans=1, num_classes=2, dims=[12, 24, 48, 96], depths=[1, 2, 1, 1], depths_decoder=[1, 1, 2, 1],
                d_state=3, d_conv=5, expand=1.5, drop_path_rate=0.1, aspp_rates=[2, 4],
                preprocessing={"normalize": "minmax", "input_size": [128, 160], "train_image_size": [400, 400]})
    model = VMUNetASPP(**args)
    assert model.config == args  # every argument, nothing else
    model.save_pretrained(tmp_path / "m")
    loaded = from_pretrained(tmp_path / "m")
    assert loaded.config == args and loaded.preprocessing == args["preprocessing"]


def test_model_kwargs_override_config(saved):
    _, folder = saved
    loaded = from_pretrained(folder, drop_path_rate=0.0)
    assert loaded.config["drop_path_rate"] == 0.0


def test_strict_loading_lists_missing_and_unexpected_keys(saved):
    from safetensors.torch import load_file, save_file

    _, folder = saved
    sd = load_file(str(folder / "model.safetensors"))
    sd.pop("final_conv.weight")
    sd["extra.weight"] = torch.zeros(2)
    save_file(sd, str(folder / "model.safetensors"))
    with pytest.raises(StateDictMismatchError) as err:
        from_pretrained(folder)
    assert "missing keys (1)" in str(err.value) and "final_conv.weight" in str(err.value)
    assert "unexpected keys (1)" in str(err.value) and "extra.weight" in str(err.value)
    sd["final_conv.weight"] = torch.zeros(1, 2, 1, 1)
    save_file(sd, str(folder / "model.safetensors"))
    loaded = from_pretrained(folder, strict=False)
    assert torch.equal(loaded.final_conv.weight, torch.zeros(1, 2, 1, 1))


def test_pickle_is_never_loaded(tmp_path, saved, monkeypatch):
    model, folder = saved
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(folder / "config.json", pickled / "config.json")
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load must not be called by from_pretrained")

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(PretrainedNotFoundError, match="does not load pickle"):
        from_pretrained(pickled)
    from_pretrained(folder)  # the safetensors path never touches torch.load


def _fake_hub_cache(cache, repo_id, files_from, revision=REV, ref="main"):
    """The huggingface_hub cache layout: models--org--name/{refs/<ref>, snapshots/<rev>/<files>}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / revision
    snap.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(files_from / name, snap / name)
    (repo / "refs").mkdir()
    (repo / "refs" / ref).write_text(revision)
    return snap


def test_repo_id_from_prepopulated_cache_offline(saved, tmp_path, monkeypatch):
    model, folder = saved
    cache = tmp_path / "hf-cache"
    _fake_hub_cache(cache, "someone/tiny-vmunet-aspp", folder)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    loaded = grainseg.from_pretrained("someone/tiny-vmunet-aspp")
    assert type(loaded) is VMUNetASPP and _same_outputs(model, loaded)
    by_rev = VMUNetASPP.from_pretrained("someone/tiny-vmunet-aspp", revision=REV, cache_dir=cache)
    assert _same_outputs(model, by_rev)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    local_only = from_pretrained("someone/tiny-vmunet-aspp", local_files_only=True, cache_dir=str(cache))
    assert _same_outputs(model, local_only)


def test_uncached_repo_offline_says_how_to_get_the_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(PretrainedNotFoundError, match="offline.*huggingface-cli download nobody/absent") as err:
        from_pretrained("nobody/absent")
    assert "save_pretrained" in str(err.value)
    with pytest.raises(PretrainedNotFoundError, match="not a directory"):
        from_pretrained(str(tmp_path / "no" / "such" / "dir"))


def test_bundled_weights_resolve_before_the_hub(saved, tmp_path, monkeypatch):
    import grainseg.models.loading as weights

    model, folder = saved
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path / "bundled")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(PretrainedNotFoundError, match="offline"):
        from_pretrained("grainseg/vmunet-aspp-small-exone316l")  # nothing bundled, not cached
    shutil.copytree(folder, tmp_path / "bundled" / "vmunet-aspp-small-exone316l")
    loaded = from_pretrained("grainseg/vmunet-aspp-small-exone316l")
    assert _same_outputs(model, loaded)


def test_paper_size_weights_come_from_the_checkout_first_and_the_hub_second(saved, tmp_path, monkeypatch):
    # grainseg/vmunet-aspp-exone316l is too large for the wheel: a source checkout holds it in weights/,
    # an installed package finds it in the Hugging Face cache (or downloads it)
    import grainseg.models.loading as weights

    model, folder = saved
    torch.manual_seed(1)
    hub_model = VMUNetASPP(**TINY, aspp_rates=[1, 2]).eval()
    hub_model.save_pretrained(tmp_path / "hub-copy")
    cache = tmp_path / "hf-cache"
    _fake_hub_cache(cache, "grainseg/vmunet-aspp-exone316l", tmp_path / "hub-copy")
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path / "package")
    monkeypatch.setattr(weights, "REPO_WEIGHTS_DIR", tmp_path / "checkout")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert "grainseg/vmunet-aspp-exone316l" in grainseg.list_pretrained()
    assert _same_outputs(hub_model, from_pretrained("grainseg/vmunet-aspp-exone316l"))  # no checkout copy
    shutil.copytree(folder, tmp_path / "checkout" / "vmunet-aspp-exone316l")
    assert _same_outputs(model, from_pretrained("grainseg/vmunet-aspp-exone316l"))  # the checkout's copy
    assert _same_outputs(hub_model, from_pretrained("grainseg/vmunet-aspp-exone316l", revision=REV))
    (tmp_path / "checkout" / "vmunet-aspp-exone316l" / "model.safetensors").unlink()  # incomplete: skipped
    assert _same_outputs(hub_model, from_pretrained("grainseg/vmunet-aspp-exone316l"))


def test_fp16_weights_load_into_float32_model(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    model, folder = saved
    half = tmp_path / "half"
    shutil.copytree(folder, half)
    sd = load_file(str(half / "model.safetensors"))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, str(half / "model.safetensors"))
    loaded = from_pretrained(half)
    assert loaded.final_conv.weight.dtype == torch.float32
    torch.testing.assert_close(loaded.final_conv.weight, model.final_conv.weight, rtol=1e-3, atol=1e-3)


def test_config_with_unknown_keys_is_rejected(saved):
    _, folder = saved
    cfg = json.loads((folder / "config.json").read_text())
    cfg["bogus"] = 1
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="bogus"):
        from_pretrained(folder)


def test_no_network_uses_the_cache_at_once_and_fails_fast_without_it(saved, tmp_path, monkeypatch):
    """Without HF_HUB_OFFLINE: when the Hub's host does not resolve, the cache answers at once (no 20 s of
    retries), and a repo not in it is a clear 'no network' error; behind a proxy the lookup is not trusted."""
    import socket
    import time

    import huggingface_hub

    import grainseg.models.loading as loading

    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    for var in loading._PROXY_VARS + ("HF_HUB_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    assert loading.hub_unresolvable() == "huggingface.co"
    model, folder = saved
    cache = tmp_path / "hf-cache"
    _fake_hub_cache(cache, "someone/tiny-vmunet-aspp", folder)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    real = huggingface_hub.hf_hub_download

    def only_local(*args, **kwargs):
        assert kwargs.get("local_files_only") is True  # never a network attempt once the name did not resolve
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", only_local)
    t = time.perf_counter()
    assert _same_outputs(model, from_pretrained("someone/tiny-vmunet-aspp"))
    with pytest.raises(PretrainedNotFoundError, match=r"no network \(huggingface.co does not resolve\)"):
        from_pretrained("nobody/absent")
    assert time.perf_counter() - t < 10
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert loading.hub_unresolvable() is None
