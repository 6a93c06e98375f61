// E(x) = -log p(x) of a 2D Gaussian mixture with the weights given (log Z =
// 0): the exact density the 2D likelihood and mode checks are tested on.
#pragma once

#include <utility>

#include "ebm/data/unbalanced.h"
#include "ebm/energy/energy.h"

namespace ebm::test_helpers {

class MixtureEnergy : public EnergyImpl {
 public:
  explicit MixtureEnergy(Mixture2d m) : m_(std::move(m)) {}
  torch::Tensor energy(const torch::Tensor& x) override { return -m_.log_density(x).to(x.scalar_type()); }
  std::vector<int64_t> event_shape() const override { return {2}; }

 private:
  Mixture2d m_;
};

}  // namespace ebm::test_helpers
