#include "rows.h"

#include <ATen/Dispatch.h>

#include "ebm/core/device.h"
#include "ebm/core/simd.h"

namespace ebm::rows {
namespace {
// True when every energy and gradient entry is finite; `sum` gets sum(e).
template <typename T>
EBM_MULTIVERSION bool all_finite(const T* e, int64_t ne, const T* g, int64_t ng, double* sum) {
  double acc = 0;
  for (int64_t i = 0; i < ne; ++i) acc += double(e[i]);
  T probe = 0;  // NaN or inf anywhere makes the product-sum non-finite (in any order)
#pragma omp simd reduction(+ : probe)
  for (int64_t i = 0; i < ng; ++i) probe += g[i] * T(0);
  *sum = acc;
  return std::isfinite(acc) && std::isfinite(double(probe));
}
}  // namespace

Held hold_non_finite(const torch::Tensor& e, torch::Tensor& g, torch::Tensor* noise) {
  // One pass (one device sync) settles the common case: a finite total means
  // every entry is finite; an overflowing one only sends us down the exact path.
  bool all_ok = false;
  double esum = 0;
  if (cpu_fast_path(g) && e.is_contiguous() && g.is_contiguous() &&
      e.scalar_type() == g.scalar_type()) {
    AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "all_finite", [&] {
      all_ok = all_finite<scalar_t>(e.data_ptr<scalar_t>(), e.numel(), g.data_ptr<scalar_t>(),
                                    g.numel(), &esum);
    });
  } else {
    auto sums = torch::stack({e.sum(torch::kDouble), g.sum(torch::kDouble)}).cpu();
    esum = sums[0].item<double>();
    all_ok = std::isfinite(esum) && std::isfinite(sums[1].item<double>());
  }
  Held held;
  if (all_ok) {
    held.energy_mean = esum / double(e.numel());
    return held;
  }
  auto ok = torch::isfinite(e) & finite(g);
  held.count = e.size(0) - ok.sum().item<int64_t>();
  held.energy_mean = finite_mean(e);
  if (held.count == 0) return held;
  held.rows = ~ok;
  auto m = per_row(ok, g);
  g = torch::where(m, g, torch::zeros_like(g));
  if (noise) *noise = torch::where(m, *noise, torch::zeros_like(*noise));
  return held;
}

}  // namespace ebm::rows
