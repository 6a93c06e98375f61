// The training rows' nearest-neighbour spacing and the floor it puts under
// denoising score matching's noise (objective.sigma_floor = spacing).
#include <gtest/gtest.h>

#include <cmath>

#include "ebm/core/rng.h"
#include "common/nets.h"
#include "ebm/objectives/score_matching.h"

using namespace ebm;

namespace {
// The points of a 7 x 7 x 7 lattice of step h: every point's nearest other
// point is h away.
torch::Tensor lattice(double h) {
  auto t = torch::arange(7, torch::kDouble) * h;
  auto g = torch::meshgrid({t, t, t}, "ij");
  return torch::stack({g[0].flatten(), g[1].flatten(), g[2].flatten()}, 1);
}
}  // namespace

TEST(NnSpacing, LatticeGivesItsStepOverRootD) {
  EXPECT_NEAR(nn_spacing(lattice(0.5)), 0.5 / std::sqrt(3.0), 1e-12);
  // duplicated rows are skipped: the spacing is to the nearest other point
  EXPECT_NEAR(nn_spacing(torch::cat({lattice(0.5), lattice(0.5)})), 0.5 / std::sqrt(3.0), 1e-12);
  EXPECT_NEAR(nn_spacing(lattice(2.0).to(torch::kFloat)), 2.0 / std::sqrt(3.0), 1e-6);
  EXPECT_EQ(nn_spacing(torch::ones({1, 3})), 0.0);
  EXPECT_EQ(nn_spacing(torch::ones({10, 3})), 0.0);  // no two distinct rows
}

TEST(DenoisingScoreMatching, SigmaFloorRaisesSigmaToTheSpacing) {
  const double spacing = 0.5 / std::sqrt(3.0);
  auto rows = lattice(0.5);
  DenoisingScoreMatching low(DenoisingScoreMatchingOptions(0.1).spacing_floor(true));
  low.fit_data(rows);
  EXPECT_NEAR(low.sigma(), spacing, 1e-12);
  DenoisingScoreMatching high(DenoisingScoreMatchingOptions(0.5).spacing_floor(true));
  high.fit_data(rows);
  EXPECT_EQ(high.sigma(), 0.5);
  DenoisingScoreMatching off(DenoisingScoreMatchingOptions(0.1));
  off.fit_data(rows);
  EXPECT_EQ(off.sigma(), 0.1);
  // the raised sigma is the one the loss uses: the same loss as asking for it
  test_helpers::ClassQuadratics net(torch::tensor({{0.0, 1.0, 2.0}, {3.0, 1.0, 0.0}}, torch::kDouble));
  DenoisingScoreMatching asked(DenoisingScoreMatchingOptions(low.sigma()));
  auto g1 = make_generator(4, kStreamTrain), g2 = make_generator(4, kStreamTrain);
  auto a = low.compute(net, {rows, {}}, g1), b = asked.compute(net, {rows, {}}, g2);
  EXPECT_NEAR(a.loss.item<double>(), b.loss.item<double>(), 1e-12);
  EXPECT_NEAR(a.metrics.at("sigma"), spacing, 1e-12);
}
