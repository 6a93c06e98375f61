// Trajectory prediction against a closed form: on a Gaussian energy over a
// 'trajectory' the future given the past is the exact Gaussian conditional,
// so predict_trajectories' draws (MALA, one chain per row) must have its
// mean and variance, in the user's units through a change of units.
// Tolerances z * SE with z = 4.89 (false-alarm rate 1e-6 per assertion).
#include <gtest/gtest.h>

#include "ebm/core/rng.h"
#include "ebm/energy/energy.h"
#include "ebm/eval/prediction.h"
#include "ebm/sampling/sampling.h"
#include "moments.h"

using namespace ebm;

// T = 5 steps of F = 2 values (D = 10), cov_ij = 0.5^|i-j| in the model's
// units, x = shift + scale u. Past t_p = 2 steps, horizon H = 2: steps 2 and
// 3 are returned, step 4 is sampled too and dropped. The conditional of u's
// coordinates 4..7 given u_0..3 = a is N(m2 + S21 S11^-1 (a - m1),
// S22 - S21 S11^-1 S12) (marginalising step 4 away), mapped to x.
TEST(Predict, GaussianTrajectoryGivesTheExactConditional) {
  auto target = make_target("gaussian", 10);
  auto mean = target->mean(), cov = target->covariance();
  AffineMap units{torch::linspace(-2, 3, 10, torch::kDouble), torch::linspace(0.5, 3, 10, torch::kDouble)};
  auto a_u = torch::tensor({1.0, -0.5, 0.8, 0.2}, torch::kDouble);
  auto s11 = cov.slice(0, 0, 4).slice(1, 0, 4), s12 = cov.slice(0, 0, 4).slice(1, 4, 8);
  auto s22 = cov.slice(0, 4, 8).slice(1, 4, 8);
  auto k = torch::mm(s12.t(), torch::inverse(s11));
  auto cm_u = mean.slice(0, 4, 8) + torch::mv(k, a_u - mean.slice(0, 0, 4));
  auto cv_u = (s22 - torch::mm(k, s12)).diagonal();
  auto scale = units.scale.slice(0, 4, 8), shift = units.shift.slice(0, 4, 8);
  auto cm = shift + scale * cm_u, cv = scale.square() * cv_u;

  const int64_t rows = 10000;
  auto past = (units.shift.slice(0, 0, 4) + units.scale.slice(0, 0, 4) * a_u).expand({rows, 4}).contiguous();
  MALASampler mala(MALAOptions(0.3));
  auto gen = make_generator(36, kStreamSample);
  auto out = predict_trajectories(*target, units, mala, past, PredictionOptions(2, 2).steps(300).chains(1), gen);
  ASSERT_EQ(out.sizes(), (c10::IntArrayRef{rows, 4}));
  stat::expect_moments(out, cm, cv, "future given the past");
}
