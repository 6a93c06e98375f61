// The noise-conditional MLP: an MLPEnergy f on [x, log sigma], divided by sigma.
#include <cmath>

#include "ebm/core/error.h"
#include "ebm/energy/energy.h"

namespace ebm {

NoiseConditionalMLPImpl::NoiseConditionalMLPImpl(const NoiseConditionalMLPOptions& o)
    : options_(o) {
  EBM_CHECK_CONFIG(o.in_dim() > 0, "NoiseConditionalMLPOptions.in_dim must be > 0, got ",
                   o.in_dim());
  EBM_CHECK_CONFIG(o.noise_level() > 0 && std::isfinite(o.noise_level()),
                   "energy.noise_level must be > 0, got ", o.noise_level());
  EBM_CHECK_CONFIG(o.prior_std() >= 0 && std::isfinite(o.prior_std()),
                   "energy.prior_std must be >= 0, got ", o.prior_std());
  f_ = register_module("f", MLPEnergy(MLPEnergyOptions(o.in_dim() + 1, o.hidden())
                                          .activation(o.activation())
                                          .spectral_norm(o.spectral_norm())));
  set_noise_level(o.noise_level());
}

torch::Tensor NoiseConditionalMLPImpl::with_level(const torch::Tensor& x,
                                                  const torch::Tensor& sigma) const {
  EBM_CHECK_DATA(x.dim() == 2 && x.size(1) == options_.in_dim(),
                 "noise-conditional MLP expects [B, ", options_.in_dim(), "] input, got ",
                 x.sizes());
  EBM_CHECK_DATA(sigma.dim() == 1 && sigma.size(0) == x.size(0),
                 "noise-conditional MLP expects one sigma per row, got ", sigma.sizes());
  return torch::cat({x, sigma.log().unsqueeze(1)}, 1);
}

torch::Tensor NoiseConditionalMLPImpl::energy_at(const torch::Tensor& x,
                                                 const torch::Tensor& sigma) {
  auto s = sigma.to(x.dtype());
  auto e = f_->energy(with_level(x, s)) / s;
  if (options_.prior_std() > 0)
    e = e + x.pow(2).sum(-1) / (2 * options_.prior_std() * options_.prior_std());
  return e;
}

std::pair<torch::Tensor, torch::Tensor> NoiseConditionalMLPImpl::score_terms(
    const torch::Tensor& x, const torch::Tensor& v, const torch::Tensor& sigma) {
  auto s = sigma.defined() ? sigma.to(x.dtype())
                           : torch::full({x.size(0)}, noise_level(), x.options());
  auto xd = x.detach();
  torch::Tensor vin;
  if (v.defined()) vin = torch::cat({v.detach(), torch::zeros({v.size(0), 1}, v.options())}, 1);
  auto [gf, qf] = f_->score_terms(with_level(xd, s), vin);
  auto g = gf.narrow(1, 0, options_.in_dim()) / s.unsqueeze(1);  // d/dx of f / sigma
  auto q = qf / s;
  if (options_.prior_std() > 0) {
    const double inv = 1.0 / (options_.prior_std() * options_.prior_std());
    g = g + inv * xd;
    if (v.defined()) q = q + inv * v.detach().pow(2).sum(1);
  }
  return {g, q};
}

}  // namespace ebm
