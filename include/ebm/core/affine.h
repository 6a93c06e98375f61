// A per-coordinate affine change of units between a user's data and the
// space a model is trained in: u = (x - shift) / scale (standardisation).
// The density of x is that of u times 1 / prod(scale), so log p(x) =
// log p(u) - log_det() and an energy in the user's units is E(u) + log_det().
#pragma once

#include <torch/torch.h>

#include <cmath>

namespace ebm {

struct AffineMap {
  torch::Tensor shift, scale;  // [D] float64 on the CPU; undefined: the identity

  bool defined() const { return shift.defined(); }
  // u = (x - shift) / scale for rows x [N, D], in x's dtype and device
  // (formed in float64: data that differ only in units give the same bits).
  torch::Tensor to_model(const torch::Tensor& x) const {
    if (!defined()) return x;
    const auto o = x.options().dtype(torch::kDouble);
    return ((x.to(torch::kDouble) - shift.to(o)) / scale.to(o)).to(x.scalar_type());
  }
  // x = shift + scale u.
  torch::Tensor to_user(const torch::Tensor& u) const {
    if (!defined()) return u;
    return u * scale.to(u.device(), u.scalar_type()) + shift.to(u.device(), u.scalar_type());
  }
  // d(grad wrt u) -> grad wrt x: dE/dx = dE/du / scale.
  torch::Tensor grad_to_user(const torch::Tensor& g) const {
    if (!defined()) return g;
    return g / scale.to(g.device(), g.scalar_type());
  }
  // log |dx/du| = sum log scale.
  double log_det() const { return defined() ? scale.log().sum().item<double>() : 0.0; }

  // Centres each column of rows x [N, D] and scales it to standard
  // deviation `sd` (shift = mean, scale = std / sd; a constant column keeps
  // scale 1).
  static AffineMap standardize(const torch::Tensor& x, double sd = 1.0) {
    auto d = x.to(torch::kCPU, torch::kDouble).reshape({x.size(0), -1});
    auto mean = d.mean(0);
    auto s = x.size(0) > 1 ? d.std(0) / sd : torch::ones_like(mean);
    s = torch::where(s > 0, s, torch::ones_like(s));
    return {mean.contiguous(), s.contiguous()};
  }
};

}  // namespace ebm
