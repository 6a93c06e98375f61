// nll2d against analytic targets with known log Z and entropy.
#include <gtest/gtest.h>

#include "ebm/core/rng.h"
#include "ebm/core/error.h"
#include "ebm/data/data.h"
#include "ebm/data/unbalanced.h"
#include "ebm/eval/eval.h"
#include "ebm/io/io.h"
#include "ebm/train/train.h"
#include "common/tmp.h"

#include <filesystem>

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

namespace {
// E(x) = -log p(x) of a Gaussian mixture (log Z = 0), with the weights given.
class MixtureEnergy : public EnergyImpl {
 public:
  explicit MixtureEnergy(Mixture2d m) : m_(std::move(m)) {}
  torch::Tensor energy(const torch::Tensor& x) override { return -m_.log_density(x).to(x.scalar_type()); }
  std::vector<int64_t> event_shape() const override { return {2}; }

 private:
  Mixture2d m_;
};
}  // namespace

// The unbalanced sets' exact density: it integrates to 1 (log Z = 0 by
// quadrature) and its mean NLL over samples is the stated entropy (z = 4.89,
// false alarm 1e-6, plus the quadrature tolerance).
TEST(Unbalanced, ExactDensityIntegratesToOneAndGivesTheEntropy) {
  for (int64_t v : {0, 3}) {
    const std::string name = "unbalanced" + std::to_string(v);
    MixtureEnergy e(unbalanced_mixture(v));
    auto gen = make_generator(30 + v, kStreamTestData);
    auto x = toy2d(name, 20000, gen).to(torch::kDouble);
    auto r = nll2d(e, x);
    EXPECT_TRUE(r.converged) << name;
    EXPECT_NEAR(r.log_z, 0.0, 2e-3) << name;
    EXPECT_NEAR(r.mean_nll, toy2d_entropy(name), 4.89 * r.nll_se + 2e-3) << name;
  }
}

// The mode-mass check passes the exact density and flags the same mixture
// with equal weights (the shapes right, the masses wrong).
TEST(ModeMasses, PassesTheTruthAndFlagsWrongWeights) {
  const auto& truth = unbalanced_mixture(0);
  auto gen = make_generator(40, kStreamTestData);
  auto x = toy2d("unbalanced0", 10000, gen).to(torch::kDouble);
  MixtureEnergy exact(truth);
  auto kgen = make_generator(41, kStreamEval);
  auto good = mode_masses(exact, x, 8, 4.0, 0.02, kgen);
  EXPECT_TRUE(good.ok) << good.table();
  EXPECT_NEAR(good.model_mass.sum().item<double>(), 1.0, 2e-3);
  EXPECT_LT(good.kl, 0.01) << good.table();
  Mixture2d equal = truth;
  for (auto& g : equal.parts) g.weight = 1.0 / double(equal.parts.size());
  MixtureEnergy wrong(equal);
  kgen = make_generator(41, kStreamEval);
  auto bad = mode_masses(wrong, x, 8, 4.0, 0.02, kgen);
  EXPECT_FALSE(bad.ok) << bad.table();
  EXPECT_GE(bad.flagged.sum().item<int64_t>(), 2);
  EXPECT_GT(bad.kl, 0.05);
  // (the same cells both times: k-means from the same stream)
  EXPECT_TRUE(torch::equal(good.centers, bad.centers));
  auto j = mode_masses_json(bad);
  EXPECT_EQ(j["cells"].size(), 8u);
  EXPECT_FALSE(j["ok"].get<bool>());
}

TEST(KMeans, FindsSeparatedClusters) {
  auto gen = make_generator(42, kStreamTestData);
  auto a = at::normal(0.0, 0.1, {500, 2}, gen, torch::TensorOptions().dtype(torch::kDouble));
  auto b = at::normal(0.0, 0.1, {300, 2}, gen, torch::TensorOptions().dtype(torch::kDouble)) + 5;
  auto c = kmeans(torch::cat({a, b}), 2, gen);
  auto lo = std::get<0>(c.sum(1).sort()).contiguous();
  EXPECT_NEAR(lo[0].item<double>(), 0.0, 0.05);
  EXPECT_NEAR(lo[1].item<double>(), 10.0, 0.05);
  EXPECT_THROW(kmeans(a.narrow(0, 0, 3), 4, gen), Error);
}

// ----- Runs: units and mode masses ------------------------------------------
namespace fs = std::filesystem;
namespace {
using test_helpers::fresh_dir;
constexpr int64_t kModeCheckSteps = 3000;

// The shipped PCD recipe (configs/toy2d-pcd.toml) at a short budget.
Config recipe(int64_t steps) {
  Config c = make_train_config();
  c.load_file(std::string(EBM_SOURCE_DIR) + "/configs/toy2d-pcd.toml");
  c.set("train.steps=" + std::to_string(steps));
  c.set("train.log_every=100");
  c.set("train.checkpoint_every=100000");
  return c;
}
}  // namespace

// A user's CSV in other units (x 100, + 1000) trains the same model in the
// standardised space, and its NLL in the user's units is the original's plus
// the log-Jacobian 2 log 100: NLL - entropy is unchanged. (The points are
// multiples of 2^-10, so 100 x + 1000 is exact in float32 and both runs see
// the same standardised bits.)
TEST(Trainer, OtherUnitsGiveTheSameNllMinusEntropy) {
  const std::string d = fresh_dir("units");
  fs::create_directories(d);
  auto gen = make_generator(60, kStreamData);
  auto x = (toy2d("unbalanced0", 4000, gen) * 1024).round() / 1024;
  write_npy(d + "/a.npy", x);
  write_npy(d + "/b.npy", x * 100 + 1000);
  std::vector<double> nll;
  std::vector<torch::Tensor> tests;
  for (const std::string f : {"a", "b"}) {
    Config c = recipe(300);
    c.set("data.path=" + d + "/" + f + ".npy");
    c.validate();
    Trainer t(c, d + "/run_" + f);
    t.run(false);
    t.energy().eval();
    auto r = nll2d(*t.user_energy(), t.data().test.x);
    nll.push_back(r.mean_nll);
    tests.push_back(t.data().test.x);
  }
  EXPECT_TRUE(torch::equal(tests[1], tests[0] * 100 + 1000));
  EXPECT_NEAR(nll[1] - nll[0], 2 * std::log(100.0), 2e-3);
  fs::remove_all(d);
}

// The mode-mass check flags a model of the previous default recipe (Langevin
// chains only, raw units, the fixed [-4, 4] init box) on an unbalanced set,
// and passes one of the shipped recipe, at the same short budget.
TEST(Trainer, ModeCheckFlagsThePreviousRecipeAndPassesTheNew) {
  const std::string d = fresh_dir("modes");
  auto check = [&](Config c, const std::string& tag) {
    c.set("data.name=unbalanced0");
    c.set("data.n=20000");
    c.validate();
    Trainer t(c, d + "/" + tag);
    t.run(false);
    t.energy().eval();
    auto gen = make_generator(61, kStreamEval);
    return mode_masses(*t.user_energy(), t.data().test.x, 8, 4.0, 0.02, gen);
  };
  Config old = recipe(kModeCheckSteps);
  for (const std::string s : {"sampler.name=langevin", "sampler.exact_noise=true", "sampler.steps=20",
                              "objective.jumps=0", "data.standardize=off", "buffer.init=uniform"})
    old.set(s);
  auto bad = check(old, "old");
  auto good = check(recipe(kModeCheckSteps), "new");
  EXPECT_FALSE(bad.ok) << bad.table();
  EXPECT_TRUE(good.ok) << good.table();
  fs::remove_all(d);
}
