"""Run under an emulated CPU (qemu-x86_64 -cpu <model>, .ci/check_portable.sh): the extension loads,
picks the expected kernel variant, refuses variants the CPU lacks, and the fused SS2D scan and the 1-D
selective scan (forward and backward) match the pure-PyTorch reference at a small shape.

    python .ci/emulated_cpu_check.py EXPECTED_VARIANT
"""
from __future__ import annotations

import os
import sys

import torch

import grainseg.ops as ops
from grainseg.ops import reference, selective_scan, ss2d_scan, use_backend

expected = sys.argv[1]
C = ops.extension()
assert C is not None and ops.backend("cpu") == "cpu", "grainseg._C did not load"
got = ops.cpu_capability()
print(f"emulated check: compiled {list(C.compiled_cpu_capabilities())}, supported {ops.cpu_capabilities()}, "
      f"in use {got}")
assert got == expected, f"expected variant {expected}, got {got}"
for name in C.compiled_cpu_capabilities():
    if name not in ops.cpu_capabilities():
        try:
            C.set_cpu_capability(name)
        except RuntimeError as exc:
            assert "which this CPU lacks" in str(exc), exc
            print(f"emulated check: {name} refused: {exc}")
        else:
            raise AssertionError(f"set_cpu_capability({name!r}) did not refuse a variant the CPU lacks")


def run(fn, args, **kw):
    args = {k: v.detach().clone().requires_grad_() if v is not None else None for k, v in args.items()}
    y = fn(**args, **kw)
    ct = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    names = [k for k, v in args.items() if v is not None]
    return [y, *torch.autograd.grad(y, [args[k] for k in names], ct)]


g = torch.Generator().manual_seed(0)
r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
b, c, h, w, n = 1, 3, 6, 11, 16  # L = 66: one 64-step chunk and a tail
ss2d_args = dict(u=r(b, c, h, w), delta=r(b, 4, c, h, w) * 0.5 - 1, A=-(torch.rand(4, c, n, generator=g) + 0.2),
                 B=r(b, 4, n, h, w), C=r(b, 4, n, h, w), D=r(4, c), delta_bias=r(4, c) * 0.3)
sel_args = dict(u=r(2, 4, 70), delta=r(2, 4, 70) * 0.5 - 1, A=-(torch.rand(4, 8, generator=g) + 0.2),
                B=r(2, 2, 8, 70), C=r(2, 1, 8, 70), D=r(4), delta_bias=r(4) * 0.3)
for what, fn, args in (("ss2d_scan n=16", ss2d_scan, ss2d_args), ("selective_scan n=8", selective_scan, sel_args)):
    ours = run(fn, args, delta_softplus=True)
    with use_backend("reference"):
        ref = run(fn, args, delta_softplus=True)
    err = max(((a - e).abs().max() / e.abs().max().clamp(min=1)).item() for a, e in zip(ours, ref))
    print(f"emulated check: {what} fp32, forward + 7 gradients, max relative error {err:.2e}")
    assert err < 2e-4, f"{what}: error {err} against the reference"
print(f"emulated check: OK on {os.environ.get('GRAINSEG_EMULATED_CPU', 'this CPU')} ({got})")
