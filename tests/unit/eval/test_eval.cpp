// nll2d against analytic targets with known log Z and entropy.
#include <gtest/gtest.h>

#include "ebm/core/rng.h"
#include "ebm/eval/eval.h"

using namespace ebm;

TEST(Nll2d, RecoversLogZOfAnalyticTargets) {
  auto gen = make_generator(21, kStreamEval);
  for (const std::string name : {"gaussian", "banana", "mixture", "double_well"}) {
    auto t = make_target(name, 2);
    auto test = t->sample(20000, gen);
    auto r = nll2d(*t, test);
    EXPECT_TRUE(r.converged) << name;
    // Midpoint rule on a smooth integrand: converged to the requested 1e-3.
    EXPECT_NEAR(r.log_z, t->log_z(), 2e-3) << name;
    EXPECT_LT(r.log_z_error, 1e-3) << name;
  }
}

// For the Gaussian, the mean NLL of exact samples estimates the entropy
// 1/2 log det(2 pi e Sigma); tolerance z = 4.89 (false alarm 1e-6) times the
// reported standard error, plus the quadrature tolerance.
TEST(Nll2d, MeanNllOfExactSamplesIsTheEntropy) {
  auto gen = make_generator(22, kStreamEval);
  auto t = make_target("gaussian", 2);
  auto test = t->sample(50000, gen);
  auto r = nll2d(*t, test);
  const double entropy =
      0.5 * std::log(std::pow(2 * M_PI * M_E, 2) * torch::det(t->covariance()).item<double>());
  EXPECT_NEAR(r.mean_nll, entropy, 4.89 * r.nll_se + 2e-3);
}
