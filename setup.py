"""Build script: the package plus the optional compiled extension ``grainseg._C``.

The extension holds the SS2D / selective-scan kernels: C++ (OpenMP) always, CUDA as well when the
installed torch has CUDA and nvcc is found.  ``GRAINSEG_NO_EXT=1``, a missing torch or a missing C++
compiler gives a pure-Python install whose ops fall back to the PyTorch reference.

Build with ``pip install --no-build-isolation -e .`` so the build sees the torch you installed
(build isolation would download a CUDA torch).  Environment knobs:

- ``GRAINSEG_NO_EXT=1``: skip the extension.
- ``GRAINSEG_NO_CUDA=1``: build the CPU kernels only, even with a CUDA torch.
- ``GRAINSEG_MARCH``: value for ``-march`` (default ``native``; ``none`` leaves it out, for portable wheels).
- ``TORCH_CUDA_ARCH_LIST``: CUDA architectures (default ``8.0;9.0``).
"""
from __future__ import annotations

import glob
import os
import shutil
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _log(msg: str) -> None:
    print(f"[grainseg setup] {msg}", file=sys.stderr)


def _has_cxx() -> bool:
    return any(shutil.which(c) for c in (os.environ.get("CXX", "c++"), "g++", "clang++"))


def _extensions():
    if os.environ.get("GRAINSEG_NO_EXT", "0") == "1":
        _log("GRAINSEG_NO_EXT=1: pure-Python install, ops use the PyTorch reference")
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        _log("torch not importable at build time: pure-Python install (build with --no-build-isolation)")
        return [], {}
    if not _has_cxx():
        _log("no C++ compiler found: pure-Python install")
        return [], {}

    csrc = os.path.join(HERE, "csrc")
    rel = lambda paths: sorted(os.path.relpath(p, HERE) for p in paths)  # noqa: E731
    all_cpp = rel(glob.glob(os.path.join(csrc, "**", "*.cpp"), recursive=True))
    # ``*_cuda.cpp`` files bind the CUDA kernels to torch; they are built only with CUDA.
    cpp_sources = [p for p in all_cpp if not p.endswith("_cuda.cpp")]
    cuda_cpp_sources = [p for p in all_cpp if p.endswith("_cuda.cpp")]
    cu_sources = rel(glob.glob(os.path.join(csrc, "**", "*.cu"), recursive=True))

    if not cpp_sources:
        _log("no kernel sources in csrc/: pure-Python install")
        return [], {}

    march = os.environ.get("GRAINSEG_MARCH", "native")
    # -fno-trapping-math lets the state loops vectorise on every -march (see csrc/cpu/scan_math.h).
    cxx_flags = ["-O3", "-fno-trapping-math", "-fopenmp", "-std=c++17", "-DNDEBUG"]
    if march and march != "none":
        cxx_flags.append(f"-march={march}")
    link_flags = ["-fopenmp"]

    with_cuda = (
        torch.version.cuda is not None
        and cpp_extension.CUDA_HOME is not None
        and os.environ.get("GRAINSEG_NO_CUDA", "0") != "1"
        and bool(cu_sources)
    )
    if with_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        ext = cpp_extension.CUDAExtension(
            "grainseg._C",
            cpp_sources + cuda_cpp_sources + cu_sources,
            include_dirs=[csrc],
            define_macros=[("GRAINSEG_WITH_CUDA", "1")],
            extra_compile_args={
                "cxx": cxx_flags,
                "nvcc": ["-O3", "--use_fast_math", "-std=c++17", "--expt-relaxed-constexpr", "-lineinfo"],
            },
            extra_link_args=link_flags,
        )
        _log(f"building CPU + CUDA kernels for TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}")
    else:
        ext = cpp_extension.CppExtension(
            "grainseg._C",
            cpp_sources,
            include_dirs=[csrc],
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )
        _log("building CPU kernels (no CUDA torch or no nvcc)")
    build_ext = cpp_extension.BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)
    return [ext], {"build_ext": build_ext}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
