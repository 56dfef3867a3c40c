"""Small CUDA scans for compute-sanitizer (run by test_cuda_sanitizer.py): every tile configuration,
two-tile sequences with tails, grouped B / C, fp32 / bf16 / fp64 and the >48 KiB shared-memory path.

``--small`` runs one case only (benchmarks/gpu_check.sh): the fp32 SS2D forward and backward over a
3 x 700 map, 2100 steps, so two tiles of the largest configuration, a masked tail, the checkpoints and
the ordered dB / dC reduction."""
from __future__ import annotations

import sys

import torch

import grainseg.ops as ops

if not ops.extension_has_cuda():
    sys.exit("grainseg._C has no CUDA kernels")
dev = "cuda"
if "--small" in sys.argv[1:]:
    u = torch.randn(1, 2, 3, 700, device=dev, requires_grad=True)
    delta = (0.5 * torch.rand(1, 4, 2, 3, 700, device=dev)).requires_grad_()
    A = (-0.5 * torch.rand(4, 2, 4, device=dev)).requires_grad_()
    B, C = (torch.randn(1, 4, 4, 3, 700, device=dev, requires_grad=True) for _ in range(2))
    D, bias = torch.randn(4, 2, device=dev, requires_grad=True), torch.rand(4, 2, device=dev, requires_grad=True)
    ops.ss2d_scan(u, delta, A, B, C, D, bias).square().sum().backward()
    torch.cuda.synchronize()
    print("sanitizer case done (small)")
    sys.exit(0)
for dtype in (torch.float32, torch.bfloat16):
    for h, w in ((3, 5), (11, 13), (20, 40), (3, 700)):  # 15, 143, 800, 2100 steps
        u = torch.randn(1, 2, h, w, device=dev, dtype=dtype, requires_grad=True)
        delta = (0.5 * torch.rand(1, 4, 2, h, w, device=dev)).to(dtype).requires_grad_()
        A = (-0.5 * torch.rand(4, 2, 4, device=dev)).requires_grad_()
        B = torch.randn(1, 4, 4, h, w, device=dev, dtype=dtype, requires_grad=True)
        C = torch.randn(1, 4, 4, h, w, device=dev, dtype=dtype, requires_grad=True)
        D = torch.randn(4, 2, device=dev, requires_grad=True)
        bias = torch.rand(4, 2, device=dev, requires_grad=True)
        ops.ss2d_scan(u, delta, A, B, C, D, bias).float().square().sum().backward()
    L = 2100
    u = torch.randn(1, 4, L, device=dev, dtype=dtype, requires_grad=True)
    delta = torch.rand(1, 4, L, device=dev, dtype=dtype, requires_grad=True)
    A = (-torch.rand(4, 8, device=dev)).requires_grad_()
    B = torch.randn(1, 2, 8, L, device=dev, dtype=dtype, requires_grad=True)
    C = torch.randn(1, 4, 8, L, device=dev, dtype=dtype, requires_grad=True)
    ops.selective_scan(u, delta, A, B, C, delta_softplus=True).float().sum().backward()
n = ops.extension().max_d_state  # the largest state: the > 48 KiB shared-memory path
x = [torch.randn(s, device=dev, dtype=torch.float64) for s in ((1, 1, 3, 5), (1, 4, 1, 3, 5), (4, 1, n),
                                                            (1, 4, n, 3, 5), (1, 4, n, 3, 5))]
x[2] = -x[2].abs()
x = [t.requires_grad_() for t in x]
ops.ss2d_scan(*x).sum().backward()
torch.cuda.synchronize()
print("sanitizer case done")
