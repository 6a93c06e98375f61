// Datasets: the 2D toy generators of FFJORD (Grathwohl et al. 2019,
// lib/toy_data.py) and VERA (Grathwohl et al. 2021), re-derived without
// scikit-learn, and seeded splits of any [N, D] matrix.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace ebm {

// 8gaussians, 25gaussians, swissroll, moons, 2spirals, checkerboard, pinwheel,
// rings, circles.
const std::vector<std::string>& toy2d_names();
bool is_toy2d(const std::string& name);
// n points, float32 [n, 2]; deterministic given the generator state.
torch::Tensor toy2d(const std::string& name, int64_t n, at::Generator& gen);
// Differential entropy of the data distribution in nats (for NLL reports):
// closed-form where known, otherwise a stated Monte Carlo estimate.
double toy2d_entropy(const std::string& name);

struct Split {
  torch::Tensor train, test;
};
// Random permutation from `gen`, the last round(test_fraction * N) rows test.
Split split_rows(const torch::Tensor& data, double test_fraction, at::Generator& gen);

}  // namespace ebm
