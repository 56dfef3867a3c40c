"""``grainseg hub push DIR REPO_ID``: upload a saved model folder to the Hugging Face Hub.

The folder is checked before anything is sent: it must be what ``save_pretrained`` writes (config.json,
model.safetensors, README.md model card) and must load strictly with ``grainseg.from_pretrained``, so
that what lands on the Hub is a model others can load.  The upload is huggingface_hub's
``HfApi.upload_folder`` (one commit with just those files); the repository is created first unless
``--no-create``.  The token comes from ``--token``, ``HF_TOKEN`` or ``huggingface-cli login``.  The
commit id printed at the end is the revision to pin in a registry entry.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

from grainseg.models.loading import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, read_config

__all__ = ["add_parser", "run", "check_repo_id", "check_folder", "push_folder"]

#: The files a Hub-ready grainseg folder holds (as ``save_pretrained`` writes them).
HUB_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register ``grainseg hub`` (sub-command ``push``) on the dispatcher's sub-parsers."""
    p = subparsers.add_parser("hub", help="Hugging Face Hub: push a saved model folder",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="hub_command", metavar="HUB_COMMAND", required=True)
    push = sub.add_parser("push", help="upload DIR (config.json, model.safetensors, README.md) to REPO_ID",
                          description=__doc__)
    push.add_argument("folder", metavar="DIR", help="a folder written by save_pretrained (e.g. a run's best/)")
    push.add_argument("repo_id", metavar="REPO_ID", help="the Hub model repository, owner/name")
    push.add_argument("--revision", default=None, help="branch to commit to (default: main)")
    push.add_argument("--message", default=None, help="commit message (default: 'grainseg: upload <model>')")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.add_argument("--no-create", action="store_true", help="do not create the repository (it must exist)")
    push.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    push.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    push.add_argument("--dry-run", action="store_true", help="check the folder and print the plan; upload nothing")
    p.set_defaults(func=run)
    return p


def check_repo_id(repo_id: str) -> None:
    """ValueError unless ``repo_id`` is a Hub model repository name, owner/name."""
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id):
        raise ValueError(f"REPO_ID must be 'owner/name' (letters, digits, '.', '_', '-'), got {repo_id!r}")


def check_folder(folder: Path) -> Dict[str, Any]:
    """Check that ``folder`` is Hub-ready; returns {files, architecture, params, bytes}, ValueError otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"DIR {folder} is not a directory (expected a folder written by save_pretrained)")
    missing = [n for n in HUB_FILES if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"DIR {folder} lacks {', '.join(missing)}; a Hub-ready folder holds "
                                f"{', '.join(HUB_FILES)} (model.save_pretrained(DIR) writes all three)")
    try:
        read_config(folder / CONFIG_NAME)  # a JSON object, or a ValueError naming the file
    except (OSError, ValueError) as exc:
        raise ValueError(f"DIR {folder}: {exc}") from None
    from grainseg import from_pretrained

    try:
        model = from_pretrained(str(folder))
    except Exception as exc:  # what fails here would fail for every user of the pushed repository
        raise ValueError(f"DIR {folder} does not load with grainseg.from_pretrained: {exc}") from None
    files = list(HUB_FILES)
    return {"files": files, "architecture": type(model).__name__,
            "params": sum(p.numel() for p in model.parameters()),
            "bytes": sum((folder / n).stat().st_size for n in files)}


def push_folder(folder: Path, repo_id: str, *, revision: Optional[str] = None, message: Optional[str] = None,
                private: bool = False, create: bool = True, create_pr: bool = False,
                token: Optional[str] = None) -> Dict[str, Any]:
    """Check ``folder`` and upload its Hub files to ``repo_id`` in one commit; returns {commit, url, ...}."""
    check_repo_id(repo_id)
    info = check_folder(Path(folder))
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ImportError("grainseg hub push needs huggingface_hub: pip install huggingface-hub") from None
    api = HfApi(token=token)
    try:
        if create:
            api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        result = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
                                   allow_patterns=list(info["files"]), create_pr=create_pr,
                                   commit_message=message or f"grainseg: upload {info['architecture']}")
    except Exception as exc:  # no network, offline mode, no token, no rights, Hub errors: one line, nothing changed
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConnectionError(f"could not upload {folder} to the Hub repository {repo_id}: {first} "
                              f"({type(exc).__name__}; check the network, HF_HUB_OFFLINE and --token)") from None
    commit = getattr(result, "oid", None)
    url = getattr(result, "commit_url", None) or str(result)
    return {**info, "repo_id": repo_id, "commit": commit, "url": url}


def _human(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MiB" if n >= 2 ** 20 else f"{n / 1024:.1f} KiB"


def run(args: argparse.Namespace) -> int:
    """Check, then upload (or print the plan with --dry-run)."""
    folder = Path(args.folder)
    if args.dry_run:
        check_repo_id(args.repo_id)
        info = check_folder(folder)
        files: List[str] = info["files"]
        print(f"would upload {', '.join(files)} ({_human(info['bytes'])}, {info['architecture']}, "
              f"{info['params']:,} parameters) from {folder} to {args.repo_id}"
              + (f" (branch {args.revision})" if args.revision else ""))
        return 0
    res = push_folder(folder, args.repo_id, revision=args.revision, message=args.message, private=args.private,
                      create=not args.no_create, create_pr=args.create_pr, token=args.token)
    print(f"uploaded {', '.join(res['files'])} ({_human(res['bytes'])}) to {res['repo_id']}: {res['url']}")
    if res["commit"]:
        print(f"pin this revision in a registry entry: {res['commit']}")
    return 0
