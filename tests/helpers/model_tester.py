"""The shared model tester: the same checks on every registered model, built from its ``tiny`` config.

Used by tests/models/test_all_models.py (parametrised over ``list_models()``); other test folders can
reuse it::

    from tests.helpers.model_tester import ModelTester

    def test_my_model(tmp_path):
        ModelTester("unet").run_all(tmp_path)          # or call the check_* methods one by one

Checks: forward shape and finiteness (train and eval), backward gives a finite gradient to every
trainable parameter (fnmatch patterns in ``allow_no_grad`` and the model's ``no_grad_params`` are
exempt), odd input sizes, 1-channel input, predict (probabilities, training mode restored), save_pretrained / from_pretrained round
trip (equal outputs, both through the class and through ``grainseg.from_pretrained``), config round
trip (every __init__ argument survives, preprocessing included), strict loading errors, and
``torch.compile(fullgraph=True)`` on one forward.
"""
from __future__ import annotations

import fnmatch
import inspect
import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import torch

import grainseg
from grainseg.models.base import StateDictMismatchError
from grainseg.models.registry import create_model, tiny_config


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


class ModelTester:
    """Builds ``name`` with its tiny config (plus ``overrides``) and runs the shared checks on it."""

    def __init__(
        self,
        name: str,
        input_size: Tuple[int, int] = (32, 48),
        odd_size: Tuple[int, int] = (37, 53),
        batch: int = 2,
        allow_no_grad: Sequence[str] = (),
        seed: int = 0,
        **overrides: Any,
    ) -> None:
        self.name = name
        self.kwargs: Dict[str, Any] = {**tiny_config(name), **overrides}
        self.input_size, self.odd_size, self.batch = input_size, odd_size, batch
        torch.manual_seed(seed)
        self.model = create_model(name, **self.kwargs)
        self.allow_no_grad = tuple(allow_no_grad) + tuple(getattr(self.model, "no_grad_params", ()))

    # ------------------------------------------------------------------ helpers
    def input(self, size: Optional[Tuple[int, int]] = None, batch: Optional[int] = None, chans: Optional[int] = None):
        h, w = size or self.input_size
        return torch.rand(batch or self.batch, chans or self.model.in_chans, h, w)

    def _expect_logits(self, out: torch.Tensor, x: torch.Tensor) -> None:
        want = (x.shape[0], self.model.num_classes, x.shape[2], x.shape[3])
        assert tuple(out.shape) == want, f"{self.name}: output shape {tuple(out.shape)}, expected {want}"
        assert out.is_floating_point() and torch.isfinite(out).all(), f"{self.name}: non-finite logits"

    # ------------------------------------------------------------------ checks
    def check_forward(self) -> None:
        x = self.input()
        for train in (True, False):
            self.model.train(train)
            with torch.no_grad():
                self._expect_logits(self.model(x), x)

    def check_backward(self) -> None:
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        x = self.input().requires_grad_(True)
        out = self.model(x)
        self._expect_logits(out, x)
        (out * torch.randn_like(out)).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, f"{self.name}: no input grad"
        missing, bad = [], []
        for n, p in self.model.named_parameters():
            if not p.requires_grad or any(fnmatch.fnmatch(n, pat) for pat in self.allow_no_grad):
                continue
            if p.grad is None:
                missing.append(n)
            elif not torch.isfinite(p.grad).all():
                bad.append(n)
        assert not missing, f"{self.name}: parameters without a gradient: {missing}"
        assert not bad, f"{self.name}: parameters with non-finite gradients: {bad}"
        self.model.zero_grad(set_to_none=True)

    def check_odd_sizes(self) -> None:
        self.model.eval()
        for size in (self.odd_size, (self.odd_size[1], self.odd_size[0] + 2)):
            x = self.input(size, batch=1)
            with torch.no_grad():
                self._expect_logits(self.model(x), x)

    def check_one_channel(self) -> None:
        self.model.eval()
        x = self.input(batch=1, chans=1)
        with torch.no_grad():
            out = self.model(x)
            self._expect_logits(out, x)
            if self.model.in_chans > 1:  # a 1-channel image means the same grey value in every channel
                same = self.model(x.expand(-1, self.model.in_chans, -1, -1).contiguous())
                torch.testing.assert_close(out, same)

    def check_predict(self) -> None:
        self.model.train()
        x = self.input(batch=1)
        p = self.model.predict(x)
        assert self.model.training, f"{self.name}: predict did not restore training mode"
        assert ((p >= 0) & (p <= 1)).all(), f"{self.name}: predict gives values outside [0, 1]"
        if self.model.num_classes > 1:
            torch.testing.assert_close(p.sum(1), torch.ones_like(p[:, 0]))
        self.model.eval()
        with torch.no_grad():
            torch.testing.assert_close(p, self.model.probabilities(self.model(x)))

    def check_save_load(self, tmp_path: Path) -> None:
        self.model.eval()
        self.model.preprocessing["train_image_size"] = [400, 400]
        folder = Path(tmp_path) / f"{self.name}-saved"
        self.model.save_pretrained(folder, metrics={"dice": 0.5}, dataset="unit-test")
        assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in folder.iterdir()}
        x = self.input(batch=1)
        with torch.no_grad():
            ref = self.model(x)
        for loaded in (type(self.model).from_pretrained(folder), grainseg.from_pretrained(folder)):
            assert type(loaded) is type(self.model), f"{self.name}: loaded a {type(loaded).__name__}"
            assert not loaded.training, f"{self.name}: from_pretrained must return an eval-mode model"
            with torch.no_grad():
                assert torch.equal(loaded(x), ref), f"{self.name}: outputs differ after save/load"
            assert loaded.preprocessing == self.model.preprocessing

    def check_config_roundtrip(self, tmp_path: Path) -> None:
        params = [p for p in inspect.signature(type(self.model).__init__).parameters if p != "self"]
        config = self.model.config
        assert sorted(config) == sorted(params), f"{self.name}: config keys {sorted(config)} != init args {sorted(params)}"
        for key, value in self.kwargs.items():
            assert config[key] == _jsonable(value), f"{self.name}: config[{key!r}] = {config[key]!r}, built with {value!r}"
        folder = Path(tmp_path) / f"{self.name}-config"
        self.model.save_pretrained(folder)
        saved = json.loads((folder / "config.json").read_text())
        assert saved["architecture"] == type(self.model).__name__
        loaded = grainseg.from_pretrained(folder)
        assert loaded.config == _jsonable(config), f"{self.name}: config changed through save/load"
        rebuilt = type(self.model)(**loaded.config)
        assert rebuilt.config == loaded.config

    def check_strict_loading(self) -> None:
        sd = dict(self.model.state_dict())
        dropped = next(iter(sd))
        sd.pop(dropped)
        sd["not_a_parameter.weight"] = torch.zeros(1)
        try:
            self.model.load_weights(sd)
        except StateDictMismatchError as err:
            assert dropped in str(err) and "not_a_parameter.weight" in str(err), str(err)
        else:
            raise AssertionError(f"{self.name}: strict loading accepted a wrong state dict")

    def check_compile(self, backend: str = "aot_eager", size: Tuple[int, int] = (32, 32)) -> None:
        import torch._dynamo

        torch._dynamo.reset()
        self.model.eval()
        x = self.input(size, batch=1)
        compiled = torch.compile(self.model, fullgraph=True, backend=backend)
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), self.model(x), rtol=1e-4, atol=1e-4)
        torch._dynamo.reset()

    def run_all(self, tmp_path: Path, compile: bool = True) -> None:
        """Every check, in order (compile last: it is the slowest)."""
        self.check_forward()
        self.check_backward()
        self.check_odd_sizes()
        self.check_one_channel()
        self.check_predict()
        self.check_save_load(tmp_path)
        self.check_config_roundtrip(tmp_path)
        self.check_strict_loading()
        if compile:
            self.check_compile()
