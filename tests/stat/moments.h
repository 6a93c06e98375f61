// Shared by the statistical tests: z for a false-alarm rate of 1e-6 per
// assertion, and moment checks of i.i.d. draws against the truth.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <string>

namespace ebm::stat {

constexpr double kZ = 4.89;  // two-sided normal quantile for 1e-6

// Checks per-dimension mean and variance of i.i.d. draws x [N, D] against the
// truth. SE(mean) = sd / sqrt(N); SE(var) = sqrt((m4 - var^2) / N) with the
// fourth central moment estimated from the draws.
inline void expect_moments(const torch::Tensor& x, const torch::Tensor& mean, const torch::Tensor& var,
                           const std::string& what) {
  auto xd = x.to(torch::kDouble);
  const double n = xd.size(0);
  for (int64_t j = 0; j < xd.size(1); ++j) {
    auto c = xd.select(1, j);
    const double m = c.mean().item<double>(), v = c.var().item<double>();
    const double m4 = (c - m).pow(4).mean().item<double>();
    const double tm = mean[j].item<double>(), tv = var[j].item<double>();
    EXPECT_NEAR(m, tm, kZ * std::sqrt(tv / n)) << what << " mean of dim " << j;
    EXPECT_NEAR(v, tv, kZ * std::sqrt(std::max(m4 - v * v, 0.0) / n)) << what << " var of dim " << j;
  }
}

}  // namespace ebm::stat
