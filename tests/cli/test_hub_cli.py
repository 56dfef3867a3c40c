"""``grainseg hub push``: the folder check, and the upload through a mock of huggingface_hub.HfApi."""
from __future__ import annotations

import json

import pytest

import grainseg
from grainseg.cli import main
from grainseg.models.registry import tiny_config


class FakeCommit:
    oid = "0123456789abcdef0123456789abcdef01234567"
    commit_url = "https://huggingface.co/lab/grains/commit/0123456"


class FakeApi:
    """Records what the command asks of the Hub; the real HfApi is never reached (no network here)."""
    calls: list = []

    def __init__(self, token=None):
        FakeApi.calls.append(("init", {"token": token}))

    def create_repo(self, repo_id, **kw):
        FakeApi.calls.append(("create_repo", {"repo_id": repo_id, **kw}))

    def upload_folder(self, **kw):
        FakeApi.calls.append(("upload_folder", kw))
        return FakeCommit()


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub

    FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    return FakeApi


@pytest.fixture
def saved(tmp_path):
    model = grainseg.create_model("unet", **tiny_config("unet"))
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_push_uploads_the_three_files_in_one_commit(saved, fake_hub, capsys):
    assert main(["hub", "push", str(saved), "lab/grains", "--revision", "v1", "--private", "--token", "t0k"]) == 0
    names = [c[0] for c in fake_hub.calls]
    assert names == ["init", "create_repo", "upload_folder"]
    assert fake_hub.calls[0][1]["token"] == "t0k"
    assert fake_hub.calls[1][1] == {"repo_id": "lab/grains", "repo_type": "model", "private": True, "exist_ok": True}
    up = fake_hub.calls[2][1]
    assert up["repo_id"] == "lab/grains" and up["folder_path"] == str(saved) and up["revision"] == "v1"
    assert sorted(up["allow_patterns"]) == ["README.md", "config.json", "model.safetensors"]
    assert up["commit_message"] == "grainseg: upload UNet" and up["create_pr"] is False
    out = capsys.readouterr().out
    assert FakeCommit.oid in out and "lab/grains" in out


def test_push_no_create_and_dry_run(saved, fake_hub, capsys):
    assert main(["hub", "push", str(saved), "lab/grains", "--no-create", "--message", "m"]) == 0
    assert [c[0] for c in fake_hub.calls] == ["init", "upload_folder"]
    assert fake_hub.calls[1][1]["commit_message"] == "m"
    assert "pin this revision" in capsys.readouterr().out


def test_dry_run_prints_the_plan(saved, fake_hub, capsys):
    assert main(["hub", "push", str(saved), "lab/grains", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would upload config.json, model.safetensors, README.md") and "UNet" in out
    assert fake_hub.calls == []


@pytest.mark.parametrize("repo_id", ["grains", "lab/", "/grains", "lab/gr ains", "a/b/c"])
def test_bad_repo_id_is_refused_before_any_call(saved, fake_hub, repo_id):
    with pytest.raises(ValueError, match="REPO_ID must be 'owner/name'"):
        main(["hub", "push", str(saved), repo_id])
    assert fake_hub.calls == []


def test_folder_checks_name_what_is_wrong(tmp_path, saved, fake_hub):
    with pytest.raises(NotADirectoryError, match="DIR .* is not a directory"):
        main(["hub", "push", str(tmp_path / "nope"), "lab/grains"])
    (saved / "README.md").unlink()
    with pytest.raises(FileNotFoundError, match="lacks README.md"):
        main(["hub", "push", str(saved), "lab/grains"])
    (saved / "README.md").write_text("card\n")
    (saved / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        main(["hub", "push", str(saved), "lab/grains"])
    assert fake_hub.calls == []


def test_folder_that_does_not_load_is_refused(saved, fake_hub):
    config = json.loads((saved / "config.json").read_text())
    (saved / "model.safetensors").write_bytes(b"\x00" * 16)  # truncated weights
    with pytest.raises(ValueError, match="does not load with grainseg.from_pretrained"):
        main(["hub", "push", str(saved), "lab/grains"])
    assert config and fake_hub.calls == []


def test_program_exit_code_for_a_user_error(tmp_path, fake_hub, capsys):
    assert main(["hub", "push", str(tmp_path), "lab/grains"], catch_errors=True) == 2
    assert "lacks config.json" in capsys.readouterr().err


def test_a_hub_failure_is_one_line_and_exit_1(saved, monkeypatch, capsys):
    """No network, offline mode or a refused token: the Hub library raises; the command says so in one line."""
    import huggingface_hub

    class Offline(FakeApi):
        def create_repo(self, repo_id, **kw):
            raise OSError("Name or service not known\nsecond line of a long message")

    monkeypatch.setattr(huggingface_hub, "HfApi", Offline)
    assert main(["hub", "push", str(saved), "lab/grains"], catch_errors=True) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "could not upload" in err and "lab/grains" in err and "Name or service not known (OSError" in err
