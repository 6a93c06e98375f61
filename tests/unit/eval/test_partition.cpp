// Annealed importance sampling's pieces against hand computations.
#include <gtest/gtest.h>

#include <cmath>

#include "ebm/core/rng.h"
#include "ebm/energy/energy.h"
#include "ebm/eval/far_energy.h"
#include "ebm/eval/partition.h"

using namespace ebm;

TEST(Partition, LogMeanExpAndItsErrorByHand) {
  auto lw = torch::tensor({std::log(1.0), std::log(2.0), std::log(3.0), std::log(6.0)}, torch::kDouble);
  EXPECT_NEAR(log_mean_exp(lw), std::log(3.0), 1e-12);
  // w = 1, 2, 3, 6: mean 3, sample sd sqrt(14/3); se = sd / (sqrt(4) * 3)
  EXPECT_NEAR(log_mean_exp_se(lw), std::sqrt(14.0 / 3.0) / 6.0, 1e-12);
  EXPECT_NEAR(effective_sample_size(lw), 144.0 / 50.0, 1e-12);
  // Shifts by a constant move the estimate and nothing else (no overflow at 1e4).
  EXPECT_NEAR(log_mean_exp(lw + 1e4), std::log(3.0) + 1e4, 1e-9);
  EXPECT_NEAR(log_mean_exp_se(lw + 1e4), std::sqrt(14.0 / 3.0) / 6.0, 1e-12);
}

TEST(Partition, SchedulesRunFromZeroToOneIncreasing) {
  for (const char* kind : {"linear", "geometric", "sigmoid"}) {
    for (int64_t k : {1, 2, 10, 1000}) {
      auto b = ais_schedule(kind, k);
      ASSERT_EQ(int64_t(b.size()), k + 1) << kind;
      EXPECT_EQ(b.front(), 0.0) << kind;
      EXPECT_EQ(b.back(), 1.0) << kind;
      for (int64_t i = 1; i <= k; ++i) EXPECT_GT(b[i], b[i - 1]) << kind << " " << k << " at " << i;
    }
  }
  EXPECT_NEAR(ais_schedule("linear", 4)[1], 0.25, 1e-15);
  EXPECT_NEAR(ais_schedule("geometric", 5)[1], 1e-4, 1e-15);
  EXPECT_NEAR(ais_schedule("sigmoid", 2)[1], 0.5, 1e-12);  // (symmetric)
}

// With one temperature AIS is importance sampling from the base: the
// weights are exp(E0(x) - E(x)) at the base's draws, nothing else.
TEST(Partition, OneTemperatureIsImportanceSamplingFromTheBase) {
  auto target = make_target("gaussian:dim=3");
  auto base = AisBase::gaussian(torch::full({3}, 0.5, torch::kDouble), torch::full({3}, 1.5, torch::kDouble));
  AnnealedImportanceSampling ais(base, AisOptions().temps(1).chains(64));
  auto gen = make_generator(7, kStreamEval);
  auto r = ais.estimate(*target, gen);
  auto gen2 = make_generator(7, kStreamEval);
  auto x = base.sample(64, {3}, gen2);
  auto lw = base.energy(x) - target->energy(x);
  EXPECT_TRUE(torch::allclose(r.log_w, lw, 1e-12, 1e-12));
  EXPECT_NEAR(r.log_z, log_mean_exp(lw), 1e-12);
}

// A base equal to the normalised target gives every weight log Z exactly.
TEST(Partition, ExactBaseGivesExactWeights) {
  auto target = std::make_shared<GaussianEnergyImpl>(torch::tensor({1.0, -2.0}, torch::kDouble),
                                                     torch::diag(torch::tensor({4.0, 0.25}, torch::kDouble)));
  auto base = AisBase::gaussian(torch::tensor({1.0, -2.0}, torch::kDouble), torch::tensor({2.0, 0.5}, torch::kDouble));
  AnnealedImportanceSampling ais(base, AisOptions().temps(20).chains(16));
  auto gen = make_generator(3, kStreamEval);
  auto r = ais.estimate(*target, gen);
  EXPECT_NEAR(r.log_z, target->log_z(), 1e-9);
  EXPECT_NEAR(r.se, 0.0, 1e-9);
}

TEST(Partition, UniformBaseIsNormalisedOnItsBox) {
  auto base = AisBase::uniform(torch::tensor({-1.0, 0.0}, torch::kDouble), torch::tensor({1.0, 4.0}, torch::kDouble));
  auto e = base.energy(torch::tensor({{0.0, 1.0}, {2.0, 1.0}}, torch::kDouble));
  EXPECT_NEAR(e[0].item<double>(), std::log(8.0), 1e-12);
  EXPECT_TRUE(std::isinf(e[1].item<double>()));
}

// The mixture base by hand in 1-D (two components), its gradient against
// central differences, and its draws' shares of the components.
TEST(Partition, MixtureBaseIsNormalisedWithItsGradient) {
  auto base = AisBase::mixture(torch::tensor({0.25, 0.75}, torch::kDouble), torch::tensor({{-1.0}, {2.0}}, torch::kDouble),
                               torch::tensor({{0.5}, {1.5}}, torch::kDouble));
  ASSERT_EQ(base.components(), 2);
  auto normal = [](double x, double m, double s) {
    return std::exp(-0.5 * (x - m) * (x - m) / (s * s)) / (s * std::sqrt(2 * M_PI));
  };
  for (double x : {-3.0, -1.0, 0.3, 2.0, 7.0}) {
    const auto at = torch::tensor({{x}}, torch::kDouble);
    const double p = 0.25 * normal(x, -1.0, 0.5) + 0.75 * normal(x, 2.0, 1.5);
    EXPECT_NEAR(base.energy(at).item<double>(), -std::log(p), 1e-10) << x;
    const double h = 1e-5;
    const double fd = (base.energy(torch::tensor({{x + h}}, torch::kDouble)).item<double>() -
                       base.energy(torch::tensor({{x - h}}, torch::kDouble)).item<double>()) / (2 * h);
    EXPECT_NEAR(base.grad(at).item<double>(), fd, 1e-6) << x;
  }
  auto gen = make_generator(5, kStreamEval);
  auto draws = base.sample(20000, {1}, gen);
  // (the share below 0.5, where the first component is 99.9% and the second
  // 16%: 0.25 * 0.9987 + 0.75 * 0.1587 = 0.369; sd of the share 0.0034)
  EXPECT_NEAR((draws < 0.5).to(torch::kDouble).mean().item<double>(), 0.369, 0.02);
}

// A 20-d mixture whose narrowest mode (sd 0.05) holds 10%: the mixture base
// fitted to its draws starts chains in every mode, and AIS finds log Z = 0
// (the target is normalised) within 0.05 nats, 4 of its standard errors.
TEST(Partition, MixtureBaseFindsANarrowMode) {
  const int64_t d = 20;
  auto means = torch::zeros({3, d}, torch::kDouble);
  means[1].fill_(3.0);
  means[2].fill_(-3.0);
  auto target = std::make_shared<MixtureEnergyImpl>(torch::tensor({0.7, 0.2, 0.1}, torch::kDouble), means,
                                                    torch::tensor({1.0, 0.3, 0.05}, torch::kDouble));
  auto gen = make_generator(11, kStreamEval);
  const auto draws = target->sample(2000, gen);
  auto base = AisBase::fit("mixture", draws);
  EXPECT_GE(base.components(), 3);
  AnnealedImportanceSampling ais(base, AisOptions().temps(200).chains(100));
  auto r = ais.estimate(*target, gen);
  EXPECT_NEAR(r.log_z, 0.0, std::max(0.05, 4 * r.se)) << "se " << r.se;
}

// A strongly correlated 50-d Gaussian (AR(1), rho 0.995: variances from
// 0.0025 to 400 along its axes): a base fitted axis by axis is ~190 nats
// from it and AIS at 50 temperatures misses log Z by nats; the base in the
// rows' principal axes is close to it, and the same AIS finds log Z within
// 0.1 (5 of its standard errors or 0.1). Its gradient is the energy's.
TEST(Partition, PrincipalAxesBaseFollowsCorrelatedRows) {
  auto target = make_target("gaussian:dim=50,rho=0.995");
  auto gen = make_generator(12, kStreamEval);
  const auto draws = target->sample(4000, gen).to(torch::kDouble);
  for (const std::string kind : {"gaussian", "mixture"}) {
    auto base = AisBase::fit(kind, draws);
    EXPECT_TRUE(base.whitened());
    AnnealedImportanceSampling ais(base, AisOptions().temps(50).chains(100));
    auto r = ais.estimate(*target, gen);
    EXPECT_NEAR(r.log_z, target->log_z(), std::max(0.1, 5 * r.se)) << kind << " se " << r.se;
    auto x = draws.narrow(0, 0, 3).clone();
    const auto g = base.grad(x);
    for (int64_t j : {0, 17, 49}) {
      auto up = x.clone(), down = x.clone();
      up.select(1, j).add_(1e-5);
      down.select(1, j).sub_(1e-5);
      const auto fd = (base.energy(up) - base.energy(down)) / 2e-5;
      EXPECT_TRUE(torch::allclose(g.select(1, j), fd, 1e-4, 1e-3)) << kind << " " << j;
    }
  }
  const auto axes = AisBase::gaussian(draws.mean(0), draws.std(0));
  AnnealedImportanceSampling plain(axes, AisOptions().temps(50).chains(100));
  EXPECT_LT(plain.estimate(*target, gen).log_z, target->log_z() - 1.0);
}

// Fewer rows than dimensions (30 draws of a 50-d standard Gaussian): the
// rows span 29 directions, and along the other 21 the base's spread is the
// ridge's (floored at 1e-3 of the unit spread, it was too narrow there: its
// draws' smallest variance 0.012, now over 0.05). Both kinds find log Z
// within 0.2.
TEST(Partition, PrincipalAxesBaseWithFewerRowsThanValues) {
  auto target = make_target("gaussian:dim=50");
  auto gen = make_generator(14, kStreamEval);
  const auto draws = target->sample(30, gen).to(torch::kDouble);
  for (const std::string kind : {"gaussian", "mixture"}) {
    auto base = AisBase::fit(kind, draws);
    const auto z = base.sample(4000, {50}, gen);
    const auto zc = z - z.mean(0);
    const auto smallest = torch::linalg_eigvalsh(zc.t().mm(zc) / 3999.0).min().item<double>();
    EXPECT_GT(smallest, 0.05) << kind;
    AnnealedImportanceSampling ais(base, AisOptions().temps(200).chains(100));
    auto r = ais.estimate(*target, gen);
    EXPECT_NEAR(r.log_z, target->log_z(), std::max(0.2, 5 * r.se)) << kind << " se " << r.se;
  }
}

TEST(Partition, BadOptionsAreRefused) {
  auto base = AisBase::gaussian(torch::zeros({2}, torch::kDouble), torch::ones({2}, torch::kDouble));
  EXPECT_THROW(AnnealedImportanceSampling(base, AisOptions().temps(0)), std::exception);
  EXPECT_THROW(AnnealedImportanceSampling(base, AisOptions().chains(0)), std::exception);
  EXPECT_THROW(AnnealedImportanceSampling(base, AisOptions().moves(0)), std::exception);
  EXPECT_THROW(AnnealedImportanceSampling(base, AisOptions().schedule("cubic")), std::exception);
  EXPECT_THROW(AnnealedImportanceSampling(base, AisOptions().transition("nuts")), std::exception);
  // A base of another dimension than the energy's samples.
  auto target = make_target("gaussian:dim=3");
  AnnealedImportanceSampling ais(base, AisOptions().temps(2).chains(4));
  auto gen = make_generator(1, kStreamEval);
  EXPECT_THROW(ais.estimate(*target, gen), std::exception);
}

namespace {
// -logsumexp of linear logits: a classifier's energy without p(x), falling
// linearly away from the data in most directions.
class SoftmaxEnergy : public EnergyImpl {
 public:
  explicit SoftmaxEnergy(torch::Tensor w) : w_(std::move(w)) {}
  torch::Tensor energy(const torch::Tensor& x) override {
    return -torch::logsumexp(x.flatten(1).mm(w_.to(x.scalar_type())), 1);
  }
  std::vector<int64_t> event_shape() const override { return {w_.size(0)}; }
  torch::Tensor w_;
};
}  // namespace

// far_energy: a classifier's -logsumexp energy falls without bound (AIS
// refuses it: log Z is infinite); Gaussians, a mixture and the funnel, whose
// energies grow far out, are left alone.
TEST(FarEnergy, FlagsAnEnergyThatFallsWithoutBound) {
  auto gen = make_generator(13, kStreamEval);
  const auto rows = at::normal(0.0, 1.0, {500, 6}, gen, torch::TensorOptions(torch::kDouble));
  SoftmaxEnergy softmax(at::normal(0.0, 1.0, {6, 4}, gen, torch::TensorOptions(torch::kDouble)));
  const auto far = far_energy(softmax, rows);
  EXPECT_TRUE(far.unbounded);
  EXPECT_LT(far.at[2], far.at[1]);
  EXPECT_LT(far.at[2], far.rows_min);
  EXPECT_NE(far.describe().find("falls without bound"), std::string::npos);
  for (const std::string spec : {"gaussian:dim=6", "mixture", "funnel:dim=6", "double_well"}) {
    auto target = make_target(spec);
    EXPECT_FALSE(far_energy(*target, target->sample(500, gen).to(torch::kDouble)).unbounded) << spec;
  }
}
