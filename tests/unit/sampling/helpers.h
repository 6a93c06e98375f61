// Test helpers shared by the sampling unit tests.
#pragma once

#include <functional>

#include "common/errors.h"
#include "ebm/energy/energy.h"

namespace ebm::test_helpers {

// E(x) = a . x: a constant gradient; NaN energy where x0 > nan_above.
class LinearEnergy : public EnergyImpl {
 public:
  explicit LinearEnergy(torch::Tensor a, double nan_above = INFINITY)
      : a_(std::move(a)), nan_above_(nan_above) {}
  torch::Tensor energy(const torch::Tensor& x) override {
    auto e = torch::mv(x, a_.to(x.dtype()));
    return torch::where(x.select(1, 0) > nan_above_, torch::full_like(e, NAN), e);
  }
  std::vector<int64_t> event_shape() const override { return {a_.size(0)}; }

 private:
  torch::Tensor a_;
  double nan_above_;
};

}  // namespace ebm::test_helpers
