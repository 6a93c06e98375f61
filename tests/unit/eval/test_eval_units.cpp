// Likelihoods of standardised models (data.standardize) in the user's units:
// nll2d's quadrature and AIS's chains run in the model's units, so the
// data's spread (1e-9 or 1e3) and columns of scales 1e6 apart change
// nothing but the Jacobian term.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/mixture.h"
#include "common/tmp.h"
#include "ebm/core/config.h"
#include "ebm/core/rng.h"
#include "ebm/data/data.h"
#include "ebm/data/unbalanced.h"
#include "ebm/energy/standardized.h"
#include "ebm/eval/eval.h"
#include "ebm/eval/tasks.h"
#include "ebm/io/io.h"
#include "ebm/model/model.h"

using namespace ebm;

namespace {
// The mixture target (E = -log p, log Z = 0) seen in other units.
std::shared_ptr<StandardizedEnergyImpl> in_units(const AnalyticEnergy& inner, const torch::Tensor& shift,
                                                 const torch::Tensor& scale) {
  return std::make_shared<StandardizedEnergyImpl>(inner, AffineMap{shift, scale});
}

using test_helpers::MixtureEnergy;
}  // namespace

// Quadrature: log Z = 0 (to the 1e-3 tolerance, plus 1e-3) and the mean NLL
// of the points E_u(u) + sum log scale + log Z, with a spread of 1e-9 (where
// a grid in the user's units never resolved the data: its smallest box is
// 1e-3 wide) and with offsets of 1e6; the mode check sums to one.
TEST(EvalUnits, Nll2dInTheModelsUnitsAtAnyScale) {
  auto inner = make_target("mixture", 2);
  auto gen = make_generator(61, kStreamEval);
  const auto u = inner->sample(4000, gen);
  const std::vector<std::pair<torch::Tensor, torch::Tensor>> maps = {
      {torch::tensor({0.0, 0.0}, torch::kDouble), torch::tensor({1e-9, 3e-9}, torch::kDouble)},
      {torch::tensor({1e6, -3e5}, torch::kDouble), torch::tensor({1e-3, 2e-3}, torch::kDouble)},
      {torch::tensor({0.0, 0.0}, torch::kDouble), torch::tensor({1e4, 1e-4}, torch::kDouble)}};
  for (const auto& [shift, scale] : maps) {
    auto user = in_units(inner, shift, scale);
    const auto x = AffineMap{shift, scale}.to_user(u);
    const auto r = nll2d(*user, x);
    const double log_det = scale.log().sum().item<double>();
    EXPECT_TRUE(r.converged) << scale;
    EXPECT_NEAR(r.log_z, 0.0, 2e-3) << scale;
    EXPECT_NEAR(r.mean_nll, inner->energy(u).mean().item<double>() + log_det + r.log_z, 1e-9 * std::abs(log_det) + 1e-9)
        << scale;
    // (the box is the user's: it holds the points)
    EXPECT_LT(r.box.lo[0], x.select(1, 0).min().item<double>());
    EXPECT_GT(r.box.hi[1], x.select(1, 1).max().item<double>());
    auto kgen = make_generator(62, kStreamEval);
    const auto m = mode_masses(*user, x, 4, 4.0, 0.02, kgen);
    EXPECT_NEAR(m.model_mass.sum().item<double>(), 1.0, 3e-3) << scale << m.table();
    EXPECT_TRUE(m.ok) << scale << m.table();
  }
}

// AIS on a 4-d mixture whose columns are in units 1e6 apart: log Z = 0 and
// the test NLL is the points' mean E_u + sum log scale. The tolerance, 0.15
// nats, is about 5 of the estimate's standard errors at these settings
// (measured: 0.02 to 0.03); in the user's units one step suited no column
// and the base was 1000x too wide in the narrowest.
TEST(EvalUnits, AisRunsInTheModelsUnits) {
  auto inner = make_target("mixture", 4);
  const auto shift = torch::zeros({4}, torch::kDouble);
  const auto scale = torch::tensor({1e-3, 1.0, 1e3, 1.0}, torch::kDouble);
  auto user = in_units(inner, shift, scale);
  auto gen = make_generator(63, kStreamEval);
  const auto u = inner->sample(2000, gen);
  const std::string dir = test_helpers::fresh_dir("ais_units");
  std::filesystem::create_directories(dir);
  write_csv(dir + "/x.csv", AffineMap{shift, scale}.to_user(u));
  Config c(eval_task_schema());
  c.set_value("task.name", std::string("ais"));
  c.set_value("task.data", dir + "/x.csv");
  c.set_value("task.temps", int64_t(300));
  c.set_value("task.chains", int64_t(64));
  ModelInfo info;
  info.event_shape = {4};
  const auto r = ais_task(c, *user, info);
  const double log_z = r.json["log_z"].get<double>();
  EXPECT_NEAR(log_z, 0.0, 0.15) << r.text;
  // (the CSV holds float32 values: the energies of what was read)
  const auto read = AffineMap{shift, scale}.to_model(read_matrix(dir + "/x.csv").to(torch::kDouble));
  const double want = inner->energy(read).mean().item<double>() + scale.log().sum().item<double>() + log_z;
  EXPECT_NEAR(r.json["test"]["nll"].get<double>(), want, 1e-6) << r.text;
  EXPECT_FALSE(r.json.contains("warnings")) << r.text;
  std::filesystem::remove_all(dir);
}

// The mode check's cells are k-means' in the data's standardised columns:
// the unbalanced mixture in units 1e4 and 1e-4 (offset 1e6) gets the same
// cells and data fractions as in its own, passes the truth and flags the
// same mixture with equal weights. In raw units every cell was a slice
// along the first column, merging modes that share it.
TEST(EvalUnits, ModeCellsAreTheSameInAnyUnits) {
  const auto& truth = unbalanced_mixture(0);
  Mixture2d equal = truth;
  for (auto& g : equal.parts) g.weight = 1.0 / double(equal.parts.size());
  auto gen = make_generator(40, kStreamTestData);
  const auto x = toy2d("unbalanced0", 10000, gen).to(torch::kDouble);
  const AffineMap odd{torch::tensor({1e6, 0.0}, torch::kDouble), torch::tensor({1e4, 1e-4}, torch::kDouble)};
  auto kgen = make_generator(41, kStreamEval);
  MixtureEnergy plain_truth(truth);
  const auto plain = mode_masses(plain_truth, x, 8, 4.0, 0.02, kgen);
  for (const Mixture2d* mixture : {&truth, static_cast<const Mixture2d*>(&equal)}) {
    auto user = std::make_shared<StandardizedEnergyImpl>(std::make_shared<MixtureEnergy>(*mixture), odd);
    kgen = make_generator(41, kStreamEval);
    const auto m = mode_masses(*user, odd.to_user(x), 8, 4.0, 0.02, kgen);
    EXPECT_TRUE(torch::allclose(m.data_fraction, plain.data_fraction, 0, 1e-12)) << m.table() << plain.table();
    EXPECT_TRUE(torch::allclose(odd.to_model(m.centers), plain.centers, 1e-6, 1e-6)) << m.table();
    EXPECT_EQ(m.ok, mixture == &truth) << m.table();
  }
}

// nll2d of a standardised model holds [-5, 5]^2 of its units whatever the
// test rows: two rows of one mode (a 20-row run's test split) still give
// log Z = 0 for the whole unbalanced mixture.
TEST(EvalUnits, Nll2dOfTwoRowsIntegratesTheWholeModel) {
  auto gen = make_generator(43, kStreamTestData);
  const auto u = toy2d("unbalanced0", 2000, gen).to(torch::kDouble);
  const AffineMap map{torch::tensor({50.0, -7.0}, torch::kDouble), torch::tensor({3.0, 0.5}, torch::kDouble)};
  auto user = std::make_shared<StandardizedEnergyImpl>(std::make_shared<MixtureEnergy>(unbalanced_mixture(0)), map);
  const auto near = (u - u[0]).norm(2, 1).argsort().narrow(0, 0, 2);
  const auto r = nll2d(*user, map.to_user(u.index_select(0, near)));
  EXPECT_TRUE(r.converged);
  EXPECT_NEAR(r.log_z, 0.0, 2e-3);
}
