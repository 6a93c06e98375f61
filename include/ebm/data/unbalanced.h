// The unbalanced 2D family (data.name = unbalanced0 ... unbalanced4; any
// variant >= 0 through unbalanced_mixture): separated Gaussian mixtures with
// unequal weights and shapes whose density and entropy are known exactly.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace ebm {

struct Gaussian2d {
  double weight, mx, my;  // mixture weight, mean
  double s1, s2, angle;   // standard deviations along the axes rotated by angle
};

struct Mixture2d {
  std::vector<Gaussian2d> parts;
  torch::Tensor sample(int64_t n, at::Generator& gen) const;  // [n, 2] float32
  torch::Tensor log_density(const torch::Tensor& x) const;     // [N, 2] -> [N] float64
  double entropy() const;                                      // nats, by quadrature
};

// The mixture of variant v >= 0 (drawn once, then cached).
const Mixture2d& unbalanced_mixture(int64_t variant);

}  // namespace ebm
