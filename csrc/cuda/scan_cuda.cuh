// Host API of grainseg's CUDA scan kernels: the CUDA-only parameters and the launchers.
//
// Torch-free on purpose (cuda_runtime + csrc/scan_params.h only): the .cu files include it and compile
// with plain nvcc; the torch binding (csrc/cuda/scan_binding_cuda.cpp) fills the struct and calls the
// launchers.  See docs/cuda.md for the design.
#pragma once

#include <cuda_runtime_api.h>

#include "scan_params.h"

namespace grainseg {
namespace cuda {

// The CUDA kernels scan tiles of at most kMaxTile steps and save one checkpoint per tile, so the
// checkpoint chunk must be exactly kMaxTile: scan_params.h's kCudaCheckpointChunk, which grainseg._C
// exports as cuda_checkpoint_chunk for grainseg/ops.
constexpr int kMaxTile = kCudaCheckpointChunk;
constexpr int kCheckpointChunk = kMaxTile;

enum class ScanDtype { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kFloat64 = 3 };

// ScanBwdParams (shared with the CPU kernels) plus what only the CUDA kernels need.
//
// Element types: u, delta, B, C, y, dy, du, ddelta, dB, dC in the input dtype (one dtype for all of
// them); A, D, delta_bias, ckpt, dA, dD, ddelta_bias and every buffer below in the compute dtype
// (float, double for double inputs).  The CUDA binding makes u, delta, B, C contiguous and allocates
// every output contiguous; dB, dC are (batch, n_dirs * n_groups, dstate, seqlen).
struct ScanCudaParams : ScanBwdParams {
  // (batch, dim, seqlen) contiguous accumulators of y (forward) and du (backward) over the four SS2D
  // directions.  May alias y / du when the input dtype is the compute dtype; unused when n_dirs == 1.
  void* y_acc = nullptr;
  void* du_acc = nullptr;

  // Backward: one block handles `chan_per_block` consecutive channels of one batch element (for every
  // direction), so dB and dC get one partial sum per block ("slab"), reduced afterwards in a fixed order.
  // chan_per_block must divide dim / n_groups_B and dim / n_groups_C; n_slabs = dim / chan_per_block.
  index_t chan_per_block = 1;
  index_t n_slabs = 0;
  void* dB_part = nullptr;          // (batch, n_dirs, n_slabs, dstate, seqlen)
  void* dC_part = nullptr;          // (batch, n_dirs, n_slabs, dstate, seqlen)
  void* dA_part = nullptr;          // (batch, n_dirs, dim, dstate)
  void* dD_part = nullptr;          // (batch, n_dirs, dim)
  void* ddelta_bias_part = nullptr; // (batch, n_dirs, dim)
};

// Launchers: validate nothing (the binding does), enqueue on `stream`, return the launch status.
// Forward writes y, y_acc and ckpt.  Backward writes du, du_acc, ddelta, the partial buffers and then
// dB, dC, dA, dD, ddelta_bias (sums of the partials in a fixed order).
cudaError_t ss2d_fwd_cuda(const ScanCudaParams& params, ScanDtype dtype, cudaStream_t stream);
cudaError_t ss2d_bwd_cuda(const ScanCudaParams& params, ScanDtype dtype, cudaStream_t stream);
cudaError_t selective_scan_fwd_cuda(const ScanCudaParams& params, ScanDtype dtype, cudaStream_t stream);
cudaError_t selective_scan_bwd_cuda(const ScanCudaParams& params, ScanDtype dtype, cudaStream_t stream);

}  // namespace cuda
}  // namespace grainseg
