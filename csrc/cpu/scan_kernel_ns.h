// The namespace of one compiled variant of the CPU kernels (scan_cpu_variant.cpp): every function of
// scan_math.h, scan_simd.h and scan_cpu_kernel.h lives in grainseg::cpu::GRAINSEG_KERNEL_NS, so that the
// AVX-512, AVX2 and baseline copies of the same code, compiled with different flags into one extension,
// never share a symbol (setup.py also makes each copy's other symbols local, see scan_cpu_isa.h).
#pragma once

#ifndef GRAINSEG_KERNEL_NS
#error "the kernel headers are included only by scan_cpu_variant.cpp, which defines GRAINSEG_KERNEL_NS"
#endif
