"""Builds the CUDA scan kernels for the host emulation in tests/gpu/emu (CPU tensors, no GPU needed)."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CSRC = REPO / "csrc"
EMU = Path(__file__).resolve().parent / "emu"


def _cuda_include() -> Path:
    for root in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root and (Path(root) / "include" / "cuda_fp16.h").is_file():
            return Path(root) / "include"
    raise FileNotFoundError("CUDA headers (cuda_fp16.h) not found: set CUDA_HOME")


def _sources_hash() -> str:
    files = sorted(CSRC.rglob("*.cu")) + sorted(CSRC.rglob("*.cuh")) + sorted(CSRC.rglob("*_cuda.cpp"))
    files += [CSRC / "scan_params.h", CSRC / "scan_params_torch.h", CSRC / "scan_cuda_api.h", CSRC / "scan_ops.h"]
    files += sorted(EMU.iterdir())
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(REPO)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def load_emulated_kernels():
    """Compile (or reuse, keyed by a hash of every CUDA source) and import the emulated module."""
    from torch.utils import cpp_extension

    build = Path(tempfile.gettempdir()) / f"grainseg_cuda_emulation_{_sources_hash()}"
    build.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        name="grainseg_cuda_emulation",
        sources=[str(EMU / "emulated_module.cpp")],
        extra_cflags=[
            "-O1",
            "-std=c++17",
            "-w",
            "-include",
            str(EMU / "cuda_emulation.h"),
            "-DGRAINSEG_CUDA_EMULATION",
            "-DGRAINSEG_WITH_CUDA",
            f"-I{CSRC}",
            f"-I{_cuda_include()}",
        ],
        build_directory=str(build),
        verbose=False,
    )
