#include "ebm/core/gemm.h"

#include "ebm/core/device.h"

#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/csrc/autograd/variable.h>

#ifdef EBM_HAVE_DNNL
#include <dnnl.h>
#endif

namespace ebm {

namespace {
// A 2-D float CPU tensor the raw product can read: rows contiguous (plain)
// or columns contiguous (a transposed view). Sets trans and the leading
// dimension.
bool raw_operand(const at::Tensor& t, bool& trans, int64_t& ld) {
  if (t.dim() != 2 || t.scalar_type() != at::kFloat || !cpu_fast_path(t)) return false;
  if (t.stride(1) == 1 && t.stride(0) >= std::max<int64_t>(1, t.size(1))) {
    trans = false, ld = t.stride(0);
    return true;
  }
  if (t.stride(0) == 1 && t.stride(1) >= std::max<int64_t>(1, t.size(0))) {
    trans = true, ld = t.stride(1);
    return true;
  }
  return false;
}

bool records_graph(const at::Tensor& a, const at::Tensor& b) {
  return at::GradMode::is_enabled() && (a.requires_grad() || b.requires_grad());
}
}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc) {
  if (m == 0 || n == 0) return;
#ifdef EBM_HAVE_DNNL
  // oneDNN's kernels are slow for thin outputs (n = 2: 4-6x slower than
  // OpenBLAS); those stay on BLAS.
  if (k > 0 && n >= 16) {
    const auto status = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a,
                                   lda, b, ldb, beta, c, ldc);
    TORCH_CHECK(status == dnnl_success, "dnnl_sgemm failed with status ", int(status));
    return;
  }
#endif
  // ATen over views of the raw buffers (also the k == 0 case: C = beta C).
  auto view = [](const float* p, bool t, int64_t rows, int64_t cols, int64_t ld) {
    auto opts = at::TensorOptions().dtype(at::kFloat);
    auto* q = const_cast<float*>(p);
    return t ? at::from_blob(q, {rows, cols}, {1, ld}, opts)
             : at::from_blob(q, {rows, cols}, {ld, 1}, opts);
  };
  at::NoGradGuard ng;
  auto cv = view(c, false, m, n, ldc);
  auto av = view(a, trans_a, m, k, lda);
  auto bv = view(b, trans_b, k, n, ldb);
  if (beta != 0.0f) {
    cv.addmm_(av, bv, beta, alpha);
    return;
  }
  at::mm_out(cv, av, bv);
  if (alpha != 1.0f) cv.mul_(alpha);
}

void mm_into(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, float beta) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0), "mm: shapes ", a.sizes(),
              " and ", b.sizes(), " do not multiply");
  at::assert_no_overlap(out, a);
  at::assert_no_overlap(out, b);
  bool ta = false, tb = false;
  int64_t lda = 0, ldb = 0;
  const bool graph = records_graph(a, b) || (at::GradMode::is_enabled() && out.requires_grad());
  if (!graph &&
      out.is_contiguous() && out.scalar_type() == at::kFloat &&
      out.dim() == 2 && out.size(0) == a.size(0) && out.size(1) == b.size(1) &&
      raw_operand(a, ta, lda) && raw_operand(b, tb, ldb) && cpu_fast_path(out)) {
    sgemm(ta, tb, a.size(0), b.size(1), a.size(1), 1.0f, a.data_ptr<float>(), lda,
          b.data_ptr<float>(), ldb, beta, out.data_ptr<float>(), b.size(1));
    // An in-place write, as ATen's would be: a graph that saved `out` sees it.
    torch::autograd::impl::bump_version(out);
    return;
  }
  if (graph && beta == 0.0f)
    out.copy_(at::mm(a, b));  // out= variants do not record a graph
  else if (beta == 0.0f)
    at::mm_out(out, a, b);
  else
    out.addmm_(a, b, beta, 1.0);
}

at::Tensor fast_mm(const at::Tensor& a, const at::Tensor& b) {
  bool ta = false, tb = false;
  int64_t lda = 0, ldb = 0;
  if (records_graph(a, b) || !raw_operand(a, ta, lda) || !raw_operand(b, tb, ldb) ||
      a.dim() != 2 || b.dim() != 2 || a.size(1) != b.size(0))
    return at::mm(a, b);
  auto out = at::empty({a.size(0), b.size(1)}, a.options());
  mm_into(out, a, b);
  return out;
}

}  // namespace ebm
