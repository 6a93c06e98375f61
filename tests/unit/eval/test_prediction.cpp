// Trajectory prediction: the constant-velocity baseline, the per-step MSE,
// the checks on the past and the horizon, the mask (past kept, later steps
// dropped) and the model file's [data] table that gives the step width.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/errors.h"
#include "common/tmp.h"
#include "ebm/core/rng.h"
#include "ebm/data/trajectories.h"
#include "ebm/energy/energy.h"
#include "ebm/energy/registry.h"
#include "ebm/eval/prediction.h"
#include "ebm/model/model.h"
#include "ebm/sampling/sampling.h"
#include "ebm/train/train.h"

using namespace ebm;
using test_helpers::code_of;

namespace {
// Rows of T steps of F = 2 values moving at constant velocity: x_t = a + t v.
torch::Tensor linear(int64_t n, int64_t t, at::Generator& gen) {
  auto a = at::normal(0.0, 1.0, {n, 1, 2}, gen, torch::kDouble);
  auto v = at::normal(0.0, 1.0, {n, 1, 2}, gen, torch::kDouble);
  auto steps = torch::arange(t, torch::kDouble).view({1, t, 1});
  return (a + steps * v).reshape({n, t * 2});
}
}  // namespace

TEST(ConstantVelocity, ExactOnLinearTrajectories) {
  auto gen = make_generator(1, kStreamEval);
  auto x = linear(30, 9, gen);
  auto cv = constant_velocity(x.narrow(1, 0, 3 * 2), 2, 6);
  EXPECT_EQ(cv.sizes(), (c10::IntArrayRef{30, 12}));
  EXPECT_LT((cv - x.narrow(1, 6, 12)).abs().max().item<double>(), 1e-12);
  for (double m : per_step_mse(cv, x.narrow(1, 6, 12), 2)) EXPECT_LT(m, 1e-24);
}

TEST(PerStepMse, AveragesRowsAndCoordinatesOfEachStep) {
  // Two rows, two steps of F = 2; errors (1, 1 | 0, 2) and (3, 3 | 0, 0):
  // step 1: (1 + 1 + 9 + 9) / 4 = 5; step 2: (0 + 4 + 0 + 0) / 4 = 1.
  auto pred = torch::tensor({1.0, 1.0, 0.0, 2.0, 3.0, 3.0, 0.0, 0.0}, torch::kDouble).view({2, 4});
  auto truth = torch::zeros({2, 6}, torch::kDouble);  // (wider than the prediction: its first H steps count)
  auto m = per_step_mse(pred, truth, 2);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_DOUBLE_EQ(m[0], 5.0);
  EXPECT_DOUBLE_EQ(m[1], 1.0);
}

TEST(PastSteps, ChecksWidthPastAndHorizon) {
  auto past = torch::zeros({3, 12});
  EXPECT_EQ(past_steps(past, 4, 10, 7, "p"), 3);
  EXPECT_EQ(code_of([&] { past_steps(past, 5, 10, 1, "p"); }), ExitCode::kBadData);   // 12 not whole steps of 5
  EXPECT_EQ(past_steps(past, 6, 10, 1, "p"), 2);                                    // t_p = 2 is fine ...
  EXPECT_EQ(code_of([&] { past_steps(past, 12, 10, 1, "p"); }), ExitCode::kBadData);  // ... t_p = 1 is not
  std::string msg;
  EXPECT_EQ(code_of([&] { past_steps(past, 4, 10, 8, "p.csv"); }, &msg), ExitCode::kUsage);  // 3 + 8 > 10
  EXPECT_NE(msg.find("p.csv"), std::string::npos) << msg;
  EXPECT_EQ(code_of([&] { past_steps(past, 4, 10, 0, "p"); }), ExitCode::kUsage);
  EXPECT_EQ(code_of([&] { trajectory_steps({2, 8, 8}, 2); }), ExitCode::kBadData);  // an image model
  EXPECT_EQ(code_of([&] { trajectory_steps({15}, 2); }), ExitCode::kBadData);
  EXPECT_EQ(trajectory_steps({16}, 2), 8);
}

// With no sampler steps the prediction is the chains' start, the
// constant-velocity extrapolation, through the change of units and back; the
// horizon picks the first H of the model's future steps.
TEST(PredictTrajectories, StartsFromTheBaselineAndReturnsTheHorizon) {
  auto gen = make_generator(2, kStreamEval);
  auto target = make_target("gaussian", 12);  // T = 6 steps of F = 2
  AffineMap units{torch::linspace(-1, 1, 12, torch::kDouble), torch::linspace(0.5, 2, 12, torch::kDouble)};
  auto past = at::normal(0.0, 1.0, {5, 4}, gen, torch::kDouble);  // t_p = 2
  LangevinSampler ula(LangevinOptions(0.01));
  auto out = predict_trajectories(*target, units, ula, past, PredictionOptions(2, 3).steps(0).chains(2), gen);
  EXPECT_EQ(out.sizes(), (c10::IntArrayRef{5, 6}));
  EXPECT_LT((out - constant_velocity(past, 2, 3)).abs().max().item<double>(), 1e-12);
  // Past beyond the model, bad widths: the checks of past_steps.
  EXPECT_EQ(code_of([&] { predict_trajectories(*target, units, ula, past, PredictionOptions(2, 5), gen); }),
            ExitCode::kUsage);
  EXPECT_EQ(code_of([&] { predict_trajectories(*target, units, ula, past, PredictionOptions(3, 1), gen); }),
            ExitCode::kBadData);
}

// The conditional mode of a Gaussian trajectory (T = 5 steps of F = 2, cov
// 0.5^|i-j| in the model's units, other units for the user) is its
// conditional mean m2 + S21 S11^-1 (a - m1): predict_mode reaches it; the
// Gaussian baseline fitted to 50,000 draws is within 0.05 of it (its
// estimation error is about 0.005 here); the last position repeats.
TEST(PredictMode, ReachesTheGaussianConditionalMean) {
  auto target = make_target("gaussian", 10);
  auto mean = target->mean(), cov = target->covariance();
  AffineMap units{torch::linspace(-2, 3, 10, torch::kDouble), torch::linspace(0.5, 3, 10, torch::kDouble)};
  auto gen = make_generator(5, kStreamEval);
  auto a_u = at::normal(0.0, 1.0, {20, 4}, gen, torch::kDouble);
  auto s11 = cov.slice(0, 0, 4).slice(1, 0, 4), s12 = cov.slice(0, 0, 4).slice(1, 4, 8);
  auto cm_u = mean.slice(0, 4, 8) + (a_u - mean.slice(0, 0, 4)).mm(torch::inverse(s11)).mm(s12);
  auto cm = units.shift.slice(0, 4, 8) + units.scale.slice(0, 4, 8) * cm_u;
  auto past = units.shift.slice(0, 0, 4) + units.scale.slice(0, 0, 4) * a_u;
  auto got = predict_mode(*target, units, past, 2, 2, 200, 1.0);
  ASSERT_EQ(got.sizes(), (c10::IntArrayRef{20, 4}));
  EXPECT_LT((got - cm).abs().max().item<double>(), 1e-4);
  // (zero steps: each row's start, the last position held or the
  // constant-velocity extrapolation, whichever has the lower energy)
  auto start = predict_mode(*target, units, past, 2, 3, 0, 1.0);
  auto held = last_position(past, 2, 3), moving = constant_velocity(past, 2, 3);
  auto e_held = target->energy(units.to_model(torch::cat({past, held}, 1)));
  auto e_moving = target->energy(units.to_model(torch::cat({past, moving}, 1)));
  auto want_start = torch::where((e_moving < e_held).unsqueeze(1), moving, held);
  EXPECT_TRUE(torch::allclose(start, want_start, 1e-9, 1e-9));
  const auto picked_moving = (e_moving < e_held).sum().item<int64_t>();
  EXPECT_GT(picked_moving, 0);
  EXPECT_LT(picked_moving, 20);
  auto draws = at::normal(0.0, 1.0, {50000, 10}, gen, torch::kDouble).mm(torch::linalg_cholesky(cov).t()) + mean;
  auto train = units.shift + units.scale * draws;
  auto g = gaussian_prediction(train, past, 2, 2);
  EXPECT_LT(((g - cm) / units.scale.slice(0, 4, 8)).abs().max().item<double>(), 0.05);
  EXPECT_EQ(code_of([&] { predict_mode(*target, units, past, 2, 4, 10, 1.0); }), ExitCode::kUsage);
}

// model.pt keeps the run's [data] table: predict reads the step width from it;
// a file saved without one (as before) loads with an empty table.
TEST(ModelFile, KeepsTheDataTable) {
  const std::string dir = test_helpers::fresh_dir("ebm_predict_model");
  Config c = make_train_config();
  c.set("data.name=particles");
  c.set("data.n=40");
  c.set("data.steps=4");
  c.set("energy.hidden=[8]");
  c.set("objective.name=dsm");
  c.set("train.steps=1");
  c.set("train.batch_size=8");
  c.validate();
  Trainer t(c, dir + "/run");
  t.run(false);
  ModelInfo info;
  load_model(dir + "/run/model.pt", &info);
  EXPECT_EQ(info.event_shape, (std::vector<int64_t>{24}));
  ASSERT_FALSE(info.data_toml.empty());
  EXPECT_EQ(trajectory_step_dim(data_config(info.data_toml, "model")), 6);

  Config ec(energy_schema());
  ec.set("energy.hidden=[8]");
  auto e = build_energy(ec, {24});
  save_model(dir + "/old.pt", *e, ec, {24});
  ModelInfo old;
  load_model(dir + "/old.pt", &old);
  EXPECT_TRUE(old.data_toml.empty());
  // (NaN weights are no model: every energy was NaN, and `ebm energy` blamed
  // its input rows)
  {
    torch::NoGradGuard ng;
    e->parameters()[0].view(-1)[3] = std::nan("");
  }
  save_model(dir + "/nan.pt", *e, ec, {24});
  EXPECT_EQ(code_of([&] { load_model(dir + "/nan.pt"); }), ExitCode::kBadData);
  std::filesystem::remove_all(dir);
}
