// What every energy inherits (energy.h): gradients by autograd, and the
// seeded parameter reset any network can use.
#include <cmath>

#include "ebm/energy/energy.h"

namespace ebm {

torch::Tensor EnergyImpl::grad(const torch::Tensor& x) {
  return energy_and_grad(x).second;
}

std::pair<torch::Tensor, torch::Tensor> EnergyImpl::energy_and_grad(const torch::Tensor& x) {
  torch::AutoGradMode enable(true);
  auto xr = x.detach().requires_grad_(true);
  auto e = energy(xr);                                         // [B]
  auto g = torch::autograd::grad({e.sum()}, {xr}, {}, false, false)[0];
  return {e.detach(), g.detach()};
}

void reset_parameters(torch::nn::Module& module, at::Generator& gen) {
  torch::NoGradGuard ng;
  for (auto& m : module.modules(/*include_self=*/true)) {
    // (one dictionary held for the loop: a pointer found in a temporary one
    // would dangle)
    auto params = m->named_parameters(/*recurse=*/false);
    for (auto& kv : params) {
      if (kv.key() != "weight") continue;
      auto& w = kv.value();
      const int64_t fan_in = w.numel() / w.size(0);
      const double bound = 1.0 / std::sqrt(double(fan_in));
      w.uniform_(-bound, bound, gen);
      if (auto* b = params.find("bias")) b->uniform_(-bound, bound, gen);
    }
  }
}

}  // namespace ebm
