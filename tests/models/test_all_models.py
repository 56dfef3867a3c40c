"""The shared tester on every registered model (tiny configs): forward, backward, sizes, Hub round trip."""
from __future__ import annotations

import pytest

from grainseg.models.registry import list_models
from tests.helpers.model_tester import ModelTester

MODELS = list_models()
#: Cheap to compile (the scan is one custom op, or a short loop on tiny maps): compiled in the fast suite.
FAST_COMPILE = {"vmunet", "vmunet_aspp", "vmunet_aspp_small"}


@pytest.fixture(scope="module", params=MODELS)
def tester(request) -> ModelTester:
    return ModelTester(request.param)


def test_forward(tester):
    tester.check_forward()


def test_backward(tester):
    tester.check_backward()


def test_odd_sizes(tester):
    tester.check_odd_sizes()


def test_one_channel_input(tester):
    tester.check_one_channel()


def test_predict(tester):
    tester.check_predict()


def test_save_load_roundtrip(tester, tmp_path):
    tester.check_save_load(tmp_path)


def test_config_roundtrip(tester, tmp_path):
    tester.check_config_roundtrip(tmp_path)


def test_strict_loading(tester):
    tester.check_strict_loading()


@pytest.mark.parametrize("name", [m for m in MODELS if m in FAST_COMPILE])
def test_compile_fullgraph(name):
    ModelTester(name).check_compile()


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_compile_fullgraph_inductor(name):
    ModelTester(name).check_compile(backend="inductor")
