#include "ebm/core/error.h"
#include "ebm/energy/energy.h"

namespace ebm {

NoiseScaledEnergyImpl::NoiseScaledEnergyImpl(Energy inner, double noise_level) : inner_(std::move(inner)) {
  TORCH_INTERNAL_ASSERT(inner_);
  EBM_CHECK_CONFIG(noise_level > 0 && std::isfinite(noise_level), "energy.noise_level must be > 0, got ",
                   noise_level);
  register_module("inner", inner_);
  set_noise_level(noise_level);
}

torch::Tensor NoiseScaledEnergyImpl::energy_at(const torch::Tensor& x, const torch::Tensor& sigma) {
  auto f = inner_->energy(x);
  return f / sigma.to(f.device(), f.scalar_type());
}

}  // namespace ebm
