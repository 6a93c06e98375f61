// held_out_ridge (core/covariance.h): the ridge the rows choose, against the
// two regimes where a fixed one was wrong.
#include <gtest/gtest.h>

#include "ebm/core/covariance.h"

namespace {

torch::Tensor centred(const torch::Tensor& x) { return x - x.mean(0); }

// Fewer rows than dimensions, identity covariance: the sample covariance is
// singular and the held-out rows want it shrunk hard (a is about 1; any a
// below 0.1 leaves 200 - 150 directions nearly without spread).
TEST(HeldOutRidge, FewRowsShrinkHard) {
  torch::manual_seed(1);
  auto x = torch::randn({150, 200}, torch::kDouble);
  const double a = ebm::held_out_ridge(centred(x), torch::ones({200}, torch::kDouble));
  EXPECT_GE(a, 0.3);
}

// Many rows, a spectrum from sd 1 down to sd 1e-3 rotated so that no column
// is special: the ridge must stay under half the smallest variance (1e-6,
// where the columns' variances average about 0.1), which a fixed 1e-3 of
// each column's variance (about 1e-4) wiped out. (It comes out 0.28 of it:
// 2,000 rows per fold do not pin the smallest sample eigenvalue.)
TEST(HeldOutRidge, ManyRowsKeepFineDirections) {
  torch::manual_seed(2);
  const int64_t d = 32, n = 4000;
  auto sd = torch::logspace(0, -3, d, 10, torch::kDouble);
  auto q = std::get<0>(torch::linalg_qr(torch::randn({d, d}, torch::kDouble)));
  auto x = (torch::randn({n, d}, torch::kDouble) * sd).mm(q.t());
  auto xc = centred(x);
  const auto var = xc.square().mean(0);
  const double a = ebm::held_out_ridge(xc, var);
  EXPECT_LT(a * var.max().item<double>(), 0.5 * 1e-6);
}

// A constant column (or a repeated one) has no spread in either fold: left
// out of the score, it does not pull the ridge to the grid's end (1e-9),
// which each such direction's -1/2 log a per row did.
TEST(HeldOutRidge, DirectionsWithoutSpreadAreLeftOut) {
  torch::manual_seed(4);
  auto x = centred(torch::randn({2000, 20}, torch::kDouble));
  const double plain = ebm::held_out_ridge(x, torch::ones({20}, torch::kDouble));
  auto with = torch::cat({x, torch::zeros({2000, 1}, torch::kDouble), x.narrow(1, 0, 1)}, 1);
  const double a = ebm::held_out_ridge(with, torch::ones({22}, torch::kDouble));
  EXPECT_EQ(a, plain);
  EXPECT_GT(a, 1e-6);
  EXPECT_EQ(ebm::ridge_target(torch::tensor({0.0, 2.0, 0.5}, torch::kDouble)).min().item<double>(), 0.5);
}

// Isotropic rows, many of them: a ridge of about d / n or more shrinks the
// sample spectrum's spread toward the truth; nothing above 1 (a flat fit).
TEST(HeldOutRidge, IsotropicRowsModerate) {
  torch::manual_seed(3);
  auto x = torch::randn({2000, 40}, torch::kDouble);
  const double a = ebm::held_out_ridge(centred(x), torch::ones({40}, torch::kDouble));
  EXPECT_LE(a, 1.0);
  EXPECT_GE(a, 1e-9);
}

TEST(HeldOutRidge, TinyInputs) {
  EXPECT_EQ(ebm::held_out_ridge(torch::zeros({3, 5}, torch::kDouble), torch::ones({5}, torch::kDouble)), 0.1);
  EXPECT_THROW(ebm::held_out_ridge(torch::zeros({10, 5}, torch::kDouble), torch::ones({4}, torch::kDouble)),
               c10::Error);
}

}  // namespace
