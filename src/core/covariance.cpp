// held_out_ridge (core/covariance.h).
#include "ebm/core/covariance.h"
#include "ebm/core/subsample.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

namespace ebm {

double held_out_ridge(const torch::Tensor& xc, const torch::Tensor& target) {
  TORCH_CHECK(xc.dim() == 2 && target.dim() == 1 && target.size(0) == xc.size(1),
              "held_out_ridge: rows [N, D] and a target [D], got ", xc.sizes(), " and ", target.sizes());
  if (xc.size(0) < 4) return 0.1;
  torch::NoGradGuard ng;
  const auto rows = evenly_spaced_rows(xc.to(torch::kCPU, torch::kDouble), 20000);
  const int64_t n = rows.size(0);
  // (in the target's units every column's ridge is the same a)
  const auto z = rows / target.to(torch::kCPU, torch::kDouble).sqrt().unsqueeze(0);
  const std::array<torch::Tensor, 2> folds = {z.slice(0, 0, n, 2), z.slice(0, 1, n, 2)};
  std::vector<double> grid;
  // (down to 1e-12: trajectories whose starts spread 3e4 apart move by steps
  // of sd 1; their finest direction is 1e-9 of a column's variance, and a
  // ridge of 1e-9 made a Gaussian's one-step prediction 15% worse)
  for (int q = -48; q <= 4; ++q) grid.push_back(std::pow(10.0, q / 4.0));
  std::vector<double> score(grid.size(), 0.0);
  for (size_t f = 0; f < 2; ++f) {
    const auto& fit = folds[f];
    const auto& held = folds[1 - f];
    const auto cov = fit.t().mm(fit) / double(fit.size(0));
    auto [values, vectors] = torch::linalg_eigh(cov);
    auto lam = values.clamp_min(0.0);
    // (the held-out rows' mean square along each eigenvector)
    auto s = held.mm(vectors).square().mean(0);
    const double tiny = 1e-12 * std::max(lam.max().item<double>(), s.max().item<double>());
    const auto spread = (lam > tiny) | (s > tiny);
    lam = lam.masked_select(spread);
    s = s.masked_select(spread);
    for (size_t g = 0; g < grid.size(); ++g) {
      const auto v = lam + grid[g];
      score[g] += double(held.size(0)) * -0.5 * (s / v + v.log()).sum().item<double>();
    }
  }
  size_t best = 0;
  for (size_t g = 1; g < grid.size(); ++g)
    if (score[g] > score[best]) best = g;
  return grid[best];
}

torch::Tensor ridge_target(const torch::Tensor& var) {
  const auto positive = var.masked_select(var > 0);
  const double finest = positive.numel() > 0 ? positive.min().item<double>() : 1.0;
  return torch::where(var > 0, var, torch::full_like(var, finest));
}

}  // namespace ebm
