// Float32 matrix products on the CPU for the hand-written fast paths (MLP
// input gradients, score-matching kernels). When the build finds oneDNN
// (Debian's libdnnl-dev; LibTorch already links its library) they run on
// dnnl_sgemm, which is 10-15% faster than OpenBLAS on this project's MLP
// shapes (outputs narrower than 16 columns, where it is slower, excepted);
// otherwise on BLAS through ATen. Graph-building products (grad mode
// on and an input that requires grad), other dtypes and other devices always
// go through ATen, so autograd sees them.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace ebm {

// C = alpha op(A) op(B) + beta C; row-major, C is m x n, op(A) m x k.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc);

// a @ b for 2-D tensors; `out` (contiguous, [a.size(0), b.size(1)], not
// overlapping a or b) receives a @ b + beta * out. Either operand may be a
// transposed view.
at::Tensor fast_mm(const at::Tensor& a, const at::Tensor& b);
void mm_into(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, float beta = 0.0f);

}  // namespace ebm
