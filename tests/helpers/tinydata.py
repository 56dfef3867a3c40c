"""Tiny on-disk data sets for the data / train / CLI tests (synthetic Voronoi micrographs)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import numpy as np
from PIL import Image

TINY_SIZE = 32


def _micrograph(i: int, size: int):
    from grainseg.data.synthetic import make_micrograph

    m = make_micrograph((size, size), n_grains=5, boundary_width=3.0, seed=1000 + i)
    img = m.image if m.image.ndim == 3 else np.repeat(m.image[..., None], 3, axis=-1)
    return img.astype(np.uint8), (m.mask * 255).astype(np.uint8)


def write_tiny_exone(root: Path, n_train: int = 4, n_val: int = 2, n_test: int = 2, size: int = TINY_SIZE) -> Path:
    """root/RG/RG{i}_1_1.jpg + root/RGMask/RGMask{i}_1_1.jpg (white = grain) and a splits.json "paper"."""
    root = Path(root)
    (root / "RG").mkdir(parents=True)
    (root / "RGMask").mkdir()
    names: List[str] = []
    for i in range(1, n_train + n_val + n_test + 1):
        img, mask = _micrograph(i, size)
        name = f"RG{i}_1_1.jpg"
        Image.fromarray(img).save(root / "RG" / name, quality=95)
        Image.fromarray(mask).save(root / "RGMask" / f"RGMask{i}_1_1.jpg", quality=95)
        names.append(name)
    splits: Dict[str, Dict[str, List[str]]] = {"paper": {
        "train": names[:n_train], "val": names[n_train:n_train + n_val], "test": names[n_train + n_val:]}}
    (root / "splits.json").write_text(json.dumps(splits))
    return root


def write_tiny_folders(root: Path, n: int = 4, size: int = TINY_SIZE, mask_ext: str = ".png") -> Path:
    """root/images/img{i}.png + root/masks/img{i}<mask_ext> (paired by stem), no splits.json."""
    root = Path(root)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        img, mask = _micrograph(i, size)
        Image.fromarray(img).save(root / "images" / f"img{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"img{i}{mask_ext}")
    return root


def tiny_model(**kw):
    """A registered model small enough for 32x32 CPU tests (a 4-channel U-Net), fed 32x32 inputs."""
    import grainseg
    from grainseg.models.registry import tiny_config

    return grainseg.create_model("unet", **{**tiny_config("unet"), "preprocessing": {"input_size": [TINY_SIZE, TINY_SIZE]}, **kw})


def train_config(data, out, **kw):
    """A TrainConfig for the tiny U-Net on the tiny "paper" split: one epoch, batch 2, lr 1e-3, no progress bar."""
    from grainseg.train.trainer import TrainConfig

    base = dict(data=str(data), out=str(out), model="unet", split="paper", epochs=1, batch_size=2, lr=1e-3,
                progress=False, seed=0)
    return TrainConfig(**{**base, **kw})


def torchrun_train(out, train_args: List[str], timeout: float) -> Dict:
    """Run ``grainseg train`` under torchrun with two gloo processes on the CPU; return its metrics.json.

    ``train_args``: the train options other than ``--device``, ``--no-progress`` and ``--out``.
    Fails the test (with the tail of both streams) on a non-zero exit; ``result`` holds the process.
    """
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "grainseg", "train", *train_args, "--device", "cpu", "--no-progress", "--out", str(out)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return {"metrics": json.loads((Path(out) / "metrics.json").read_text()), "result": res}
