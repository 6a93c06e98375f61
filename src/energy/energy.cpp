// What every energy inherits (energy.h): gradients by autograd, and the
// seeded parameter reset any network can use.
#include <cmath>

#include "ebm/energy/energy.h"

#include "ebm/core/error.h"

namespace ebm {

torch::Tensor EnergyImpl::grad(const torch::Tensor& x) {
  return energy_and_grad(x).second;
}

std::pair<torch::Tensor, torch::Tensor> EnergyImpl::energy_and_grad(const torch::Tensor& x) {
  torch::AutoGradMode enable(true);
  auto xr = x.detach().requires_grad_(true);
  auto e = energy(xr);                                         // [B]
  // (an energy computed off the graph, detached or through numpy: no dE/dx
  // to sample or train with; it was an internal error, exit 70)
  EBM_CHECK_DATA(e.requires_grad(), "the energy's output does not depend differentiably on its input (it has no "
                 "gradient path to x: detached, or computed outside autograd); samplers need dE/dx");
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
      if (w.dim() < 2) continue;  // (a normalisation's scale keeps its init of 1)
      const int64_t fan_in = w.numel() / w.size(0);
      const double bound = 1.0 / std::sqrt(double(fan_in));
      w.uniform_(-bound, bound, gen);
      if (auto* b = params.find("bias")) b->uniform_(-bound, bound, gen);
    }
  }
}

Energy at_labels(EnergyImpl& energy, const torch::Tensor& y) {
  Energy view(Energy(), &energy);  // (aliasing, not owning)
  if (!y.defined()) return view;
  auto labelled = std::make_shared<LabelledEnergyImpl>(view);
  labelled->set_labels(y);
  return labelled;
}

LabelledEnergyImpl::LabelledEnergyImpl(Energy inner) : inner_(std::move(inner)) {
  TORCH_CHECK(inner_ && inner_->num_classes() > 0, "LabelledEnergy: the energy is not class-conditional");
  register_module("inner", inner_);
}

void LabelledEnergyImpl::set_labels(torch::Tensor y) {
  TORCH_CHECK(y.dim() == 1 && y.numel() >= 1, "LabelledEnergy: labels must be [B] or [1], got ", y.sizes());
  y = y.to(torch::kLong);
  const int64_t lo = y.min().item<int64_t>(), hi = y.max().item<int64_t>();
  TORCH_CHECK(lo >= 0 && hi < inner_->num_classes(), "LabelledEnergy: labels in [", lo, ", ", hi,
              "] outside the model's ", inner_->num_classes(), " classes");
  labels_ = y;
}

torch::Tensor LabelledEnergyImpl::energy(const torch::Tensor& x) {
  TORCH_CHECK(labels_.defined(), "LabelledEnergy: set_labels before evaluating");
  auto e = inner_->class_energies(x);  // [B, K]
  auto y = labels_.to(e.device());
  if (y.size(0) == 1) return e.select(1, y.item<int64_t>());
  TORCH_CHECK(y.size(0) == e.size(0), "LabelledEnergy: ", y.size(0), " labels for ", e.size(0), " rows");
  return e.gather(1, y.unsqueeze(1)).squeeze(1);
}

}  // namespace ebm
