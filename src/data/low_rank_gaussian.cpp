#include "ebm/data/low_rank_gaussian.h"

#include <algorithm>
#include <cmath>

#include "ebm/core/error.h"

namespace ebm {

LowRankGaussian LowRankGaussian::fit(const torch::Tensor& x, int64_t max_components, int64_t max_rows) {
  TORCH_CHECK(max_components >= 1 && max_rows >= 2, "LowRankGaussian::fit: max_components >= 1, max_rows >= 2");
  EBM_CHECK_DATA(x.dim() >= 2 && x.size(0) >= 2, "a Gaussian fit needs at least two rows, got ", x.sizes());
  auto flat = x.detach().to(torch::kCPU).flatten(1);
  const int64_t n = flat.size(0), d = flat.size(1);
  auto mu = flat.sum(0, false, torch::kDouble) / double(n);
  EBM_CHECK_DATA(torch::isfinite(mu).all().item<bool>(), "a Gaussian fit met non-finite values in its rows");
  const int64_t m = std::min(n, max_rows);
  auto rows = m < n ? flat.index_select(0, torch::linspace(0, double(n - 1), m, torch::kDouble).round().to(torch::kLong))
                    : flat;
  auto c = rows.to(torch::kDouble) - mu;
  const int64_t k = std::min({max_components, m - 1, d});
  torch::Tensor basis;
  if (d <= m) {  // the covariance's eigenvectors, largest first
    auto [l, v] = torch::linalg_eigh(c.t().mm(c) / double(m - 1));
    auto top = l.flip(0).narrow(0, 0, k).clamp_min(0);
    basis = v.flip(1).narrow(1, 0, k) * top.sqrt();
  } else {  // through the Gram matrix: u sqrt(l) = c^T v / sqrt(m - 1)
    auto [l, v] = torch::linalg_eigh(c.mm(c.t()) / double(m - 1));
    basis = c.t().mm(v.flip(1).narrow(1, 0, k)) / std::sqrt(double(m - 1));
  }
  LowRankGaussian g;
  g.mean = mu.to(torch::kFloat).reshape(x.sizes().slice(1));
  g.basis = basis.to(torch::kFloat).contiguous();
  return g;
}

torch::Tensor LowRankGaussian::draw(int64_t n, at::Generator& gen) const {
  TORCH_CHECK(defined(), "LowRankGaussian::draw before fit");
  auto z = at::normal(0.0, 1.0, {n, components()}, gen, mean.options());
  std::vector<int64_t> shape{n};
  shape.insert(shape.end(), mean.sizes().begin(), mean.sizes().end());
  return (z.mm(basis.t()) + mean.reshape({1, -1})).reshape(shape);
}

LowRankGaussian LowRankGaussian::to(const c10::Device& device) const {
  if (!defined()) return *this;
  return {mean.to(device), basis.to(device)};
}

}  // namespace ebm
