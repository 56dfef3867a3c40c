"""Build script: the package plus the optional compiled extension ``grainseg._C``.

The extension holds the SS2D / selective-scan kernels: C++ (OpenMP) always, CUDA as well when the
installed torch has CUDA and nvcc is found.  ``GRAINSEG_NO_EXT=1``, a missing torch or a missing C++
compiler gives a pure-Python install whose ops fall back to the PyTorch reference.

Build with ``pip install --no-build-isolation -e .`` so the build sees the torch you installed
(build isolation would download a CUDA torch).  Environment knobs:

- ``GRAINSEG_NO_EXT=1``: skip the extension.
- ``GRAINSEG_NO_CUDA=1``: build the CPU kernels only, even with a CUDA torch.
- ``GRAINSEG_MARCH``: unset (the default): the *dispatch* build - the CPU kernels
  (``csrc/cpu/scan_cpu_variant.cpp``) compiled three times, for AVX-512 (``-march=x86-64-v4``), AVX2
  (``-march=x86-64-v3``) and baseline x86-64, the rest without ``-march``; the variant is chosen at run
  time from cpuid (``GRAINSEG_CPU_CAPABILITY=avx512|avx2|baseline`` forces one).  Portable: a wheel
  built anywhere runs on any x86-64 CPU at that CPU's best variant.  Set to an architecture
  (``native``, ``x86-64-v3``, ...) for one build of everything with ``-march=<value>`` (variant
  ``native``), or ``none`` for one build without ``-march``.  Non-x86 machines always get one build
  (``-march=native`` unless set).
- ``TORCH_CUDA_ARCH_LIST``: CUDA architectures (default ``8.0;9.0``).
"""
from __future__ import annotations

import glob
import os
import platform
import shutil
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _log(msg: str) -> None:
    print(f"[grainseg setup] {msg}", file=sys.stderr)


def _has_cxx() -> bool:
    return any(shutil.which(c) for c in (os.environ.get("CXX", "c++"), "g++", "clang++"))


# The kernel variants of the dispatch build: name (-DGRAINSEG_ISA, the suffix of the exported
# grainseg_scan_kernels_<name>) and the flags added for it.  csrc/cpu/scan_cpu.cpp checks the same levels
# at run time.
ISA_VARIANTS = (
    ("avx512", ["-march=x86-64-v4"]),
    ("avx2", ["-march=x86-64-v3"]),
    ("baseline", []),
)


def _jobs() -> int:
    try:
        return max(1, int(os.environ.get("MAX_JOBS") or 0) or (os.cpu_count() or 1))
    except ValueError:
        return os.cpu_count() or 1


def _build_variant(cxx, source, flags, include_dirs, out_dir, name):
    """Compiles one kernel variant into a relocatable object whose only global symbol is its table.

    ``ld -r --force-group-allocation`` turns the COMDAT groups (inline functions, template instances
    such as std::sort<long*> or c10's Half conversions, compiled here with this variant's ISA) into
    plain sections, and ``objcopy --keep-global-symbol`` then makes every definition but the table
    local: the final link cannot pick an AVX-512 copy of a shared inline function for the baseline code.
    """
    import subprocess

    obj = os.path.join(out_dir, f"scan_cpu_{name}.o")
    merged = os.path.join(out_dir, f"scan_cpu_{name}.r.o")
    final = os.path.join(out_dir, f"scan_cpu_{name}.isa.o")
    entry = f"grainseg_scan_kernels_{name}"
    cmd = [cxx, "-fPIC", *flags, f"-DGRAINSEG_ISA={name}", *[f"-I{d}" for d in include_dirs], "-c", source, "-o", obj]
    subprocess.run(cmd, check=True)
    subprocess.run([os.environ.get("LD", "ld"), "-r", "--force-group-allocation", "-o", merged, obj], check=True)
    subprocess.run([os.environ.get("OBJCOPY", "objcopy"), f"--keep-global-symbol={entry}", merged, final],
                   check=True)
    out = subprocess.run(["nm", "-g", "--defined-only", final], check=True, capture_output=True, text=True).stdout
    exported = [line.split()[-1] for line in out.splitlines() if line.strip()]
    if exported != [entry]:
        raise RuntimeError(f"kernel variant {name}: expected only {entry} global, got {exported[:10]}")
    return final


def _dispatch_build_ext(base):
    """build_ext that compiles the kernel variants (ISA_VARIANTS) beside the extension's sources.

    setuptools gives one set of flags to all sources of an extension, so the variants are compiled
    here, each with its own flags, and handed to the link as extra objects; with MAX_JOBS > 1 they
    compile in a thread pool while ninja compiles the other sources.
    """
    from concurrent.futures import ThreadPoolExecutor

    class DispatchBuildExt(base):
        def build_extension(self, ext):
            spec = getattr(ext, "grainseg_variants", None)
            if not spec:
                return super().build_extension(ext)
            from torch.utils import cpp_extension

            out_dir = os.path.join(os.path.abspath(self.build_temp), "isa")
            os.makedirs(out_dir, exist_ok=True)
            abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(__import__('torch')._C._GLIBCXX_USE_CXX11_ABI)}"
            include_dirs = [os.path.join(HERE, d) for d in ext.include_dirs] + cpp_extension.include_paths()
            cxx = os.environ.get("CXX") or shutil.which("c++") or "g++"
            source = os.path.join(HERE, spec["source"])
            jobs = _jobs()
            pool = ThreadPoolExecutor(max_workers=min(jobs, len(ISA_VARIANTS)))
            futures = [pool.submit(_build_variant, cxx, source, spec["flags"] + [abi] + flags, include_dirs,
                                   out_dir, name) for name, flags in ISA_VARIANTS]
            if jobs == 1:  # one compile at a time: the variants first, then ninja
                [f.result() for f in futures]
            compiler_link = self.compiler.link

            def link(target_desc, objects, *args, **kwargs):
                objects = list(objects) + [f.result() for f in futures]
                return compiler_link(target_desc, objects, *args, **kwargs)

            self.compiler.link = link
            try:
                super().build_extension(ext)
            finally:
                self.compiler.link = compiler_link
                pool.shutdown(wait=True)

    return DispatchBuildExt


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

    variant_src = os.path.join("csrc", "cpu", "scan_cpu_variant.cpp")
    cpp_sources = [p for p in cpp_sources if p != variant_src]
    march = os.environ.get("GRAINSEG_MARCH", "").strip()
    dispatch = not march and platform.machine().lower() in ("x86_64", "amd64")
    if not march and not dispatch:
        march = "native"
    # -fno-trapping-math lets the state loops vectorise on every -march (see csrc/cpu/scan_math.h).
    cxx_flags = ["-O3", "-fno-trapping-math", "-fopenmp", "-std=c++17", "-DNDEBUG"]
    if dispatch:
        _log("CPU kernels: runtime dispatch over " + ", ".join(n for n, _ in ISA_VARIANTS))
    else:
        # one build: the kernels join the other sources, all with -march=<march>
        cpp_sources.append(variant_src)
        cxx_flags.append("-DGRAINSEG_ISA=native")
        if march != "none":
            cxx_flags.append(f"-march={march}")
        _log(f"CPU kernels: one build, -march={march} (variant 'native')")
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
    if dispatch:
        ext.grainseg_variants = {"source": variant_src, "flags": cxx_flags}
    build_ext = _dispatch_build_ext(cpp_extension.BuildExtension).with_options(
        use_ninja=shutil.which("ninja") is not None)
    return [ext], {"build_ext": build_ext}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
