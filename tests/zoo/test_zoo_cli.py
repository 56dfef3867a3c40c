"""``grainseg models``: every model with its default parameter count and the paper's Dice."""
from __future__ import annotations

import json

from grainseg.cli import main
from grainseg.models.registry import list_models, model_info


def test_models_command_lists_every_model(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in list_models():
        info = model_info(name)
        line = next(l for l in out.splitlines() if l.split() and l.split()[0] == name)
        assert f"{info['num_params']:,}" in line
        if info["paper_dice"] is not None:
            assert f"{info['paper_dice']:.2f}" in line
    unet_line = next(l for l in out.splitlines() if l.startswith("unet "))
    assert "31,037,633" in unet_line and "90.90" in unet_line
    from grainseg.models.registry import list_pretrained

    for repo_id in list_pretrained():  # each with its architecture and its source (local copy or Hub)
        line = next(l for l in out.splitlines() if l.strip().startswith(repo_id + " "))
        assert "(vmunet_aspp" in line and ("local copy" in line or "from the Hub" in line)


def test_models_command_pattern_and_json(capsys):
    assert main(["models", "vmunet_v2*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["vmunet_v2", "vmunet_v2_edge"]
    assert rows[1]["paper_dice"] == 91.73 and rows[1]["params"] > rows[0]["params"]


def test_models_command_unknown_pattern(capsys):
    assert main(["models", "no_such_model*"]) == 1
    assert "no registered model matches" in capsys.readouterr().err
