// Statistical tests against analytic answers. Every tolerance is z * SE with
// z = 4.89, the two-sided normal quantile for a false-alarm rate of 1e-6 per
// assertion. Draws are final states of independent chains (or exact samples),
// so they are i.i.d. and the effective sample size is the number of chains;
// burn-in is chosen so that the remaining bias is < 1e-6 of an SE.
#include <gtest/gtest.h>

#include "ebm/core/rng.h"
#include "ebm/energy/energy.h"
#include "ebm/sampling/sampling.h"
#include "moments.h"

using namespace ebm;

using stat::expect_moments;
using stat::kZ;

// ULA on N(0, diag(s2)): x' = (1 - eta/s2) x + sqrt(2 eta) xi is AR(1) with
// stationary variance s2 / (1 - eta / (2 s2)) -- the known discretisation bias.
TEST(Langevin, MatchesBiasedStationaryVarianceOfGaussian) {
  auto s2 = torch::tensor({1.0, 0.5}, torch::kDouble);
  auto target = std::make_shared<GaussianEnergyImpl>(torch::zeros({2}, torch::kDouble), torch::diag(s2));
  const double eta = 0.1;
  LangevinSampler ula(LangevinOptions(eta).exact_noise(true));
  auto gen = make_generator(11, kStreamSample);
  const int64_t chains = 100000;
  ChainState st(at::normal(0.0, 1.0, {chains, 2}, gen, torch::kDouble));
  // Slowest contraction 1 - eta/1 = 0.9: 0.9^300 ~ 2e-14 of the initial offset.
  ula.run(*target, st, 300, gen);
  auto biased = s2 / (1 - eta / (2 * s2));
  expect_moments(st.x, torch::zeros({2}, torch::kDouble), biased, "ULA");
  // And the bias is real: the exact variance is rejected at the same z.
  const double v0 = st.x.select(1, 0).var().item<double>();
  EXPECT_GT(std::abs(v0 - 1.0), kZ * std::sqrt(2.0 / chains) * biased[0].item<double>());
}

TEST(RandomWalkMH, MatchesCorrelatedGaussianMoments) {
  auto target = make_target("gaussian", 3);  // cov_ij = 0.5^|i-j|
  RandomWalkMH mh(RandomWalkMHOptions(0.8));
  auto gen = make_generator(12, kStreamSample);
  const int64_t chains = 40000;
  ChainState st(2.0 * at::normal(0.0, 1.0, {chains, 3}, gen, torch::kDouble));  // overdispersed
  auto stats = mh.run(*target, st, 1500, gen);
  EXPECT_GT(stats.accept_rate, 0.2);
  EXPECT_LT(stats.accept_rate, 0.9);
  expect_moments(st.x, target->mean(), target->covariance().diagonal(), "MH gaussian");
  // Off-diagonal covariance: SE = sqrt((s11 s22 + s12^2) / N) for Gaussian draws.
  auto cov = target->covariance();
  auto x = st.x - st.x.mean(0);
  const double c01 = (x.select(1, 0) * x.select(1, 1)).mean().item<double>();
  const double se = std::sqrt((1.0 + 0.25) / chains);
  EXPECT_NEAR(c01, cov[0][1].item<double>(), kZ * se);
}

// Two overlapping components (the chains cross freely between them), unequal
// weights: MH must reproduce the mixture's mean and variance.
TEST(RandomWalkMH, MatchesMixtureMoments) {
  auto means = torch::tensor({-1.0, 0.0, 1.0, 0.5}, torch::kDouble).view({2, 2});
  MixtureEnergyImpl target(torch::tensor({0.3, 0.7}), means, torch::tensor({0.7, 0.5}));
  RandomWalkMH mh(RandomWalkMHOptions(0.9));
  auto gen = make_generator(13, kStreamSample);
  const int64_t chains = 40000;
  ChainState st(2.0 * at::normal(0.0, 1.0, {chains, 2}, gen, torch::kDouble));
  mh.run(target, st, 2000, gen);
  expect_moments(st.x, target.mean(), target.covariance().diagonal(), "MH mixture");
}

// Exact samplers of the analytic targets against their stated moments.
TEST(AnalyticTargets, ExactSamplersMatchMoments) {
  auto gen = make_generator(14, kStreamSample);
  const int64_t n = 200000;
  for (const std::string name : {"gaussian", "mixture", "banana", "double_well"}) {
    auto t = make_target(name, name == "banana" ? 2 : 3);
    auto x = t->sample(n, gen);
    ASSERT_EQ(x.sizes(), (std::vector<int64_t>{n, t->dim()}));
    expect_moments(x, t->mean(), t->covariance().diagonal(), name);
  }
  // Funnel: y ~ N(0, 9) and x / exp(y/2) ~ N(0, 1) (the x moments themselves
  // have tails too heavy for a useful standard error).
  FunnelEnergyImpl funnel(4);
  auto x = funnel.sample(n, gen);
  auto y = x.select(1, 0);
  auto z = x.narrow(1, 1, 3) * torch::exp(-0.5 * y).unsqueeze(1);
  expect_moments(y.unsqueeze(1), torch::zeros({1}, torch::kDouble), torch::full({1}, 9.0, torch::kDouble),
                 "funnel y");
  expect_moments(z, torch::zeros({3}, torch::kDouble), torch::ones({3}, torch::kDouble), "funnel x|y");
}

// The double well's exact sampler against its density: the fraction of mass
// in x1 > 0 is 1/2 and in |x1| < 1 is the quadrature value.
TEST(AnalyticTargets, DoubleWellHistogramMatchesDensity) {
  DoubleWellEnergyImpl dw(1, 2.0);
  auto gen = make_generator(15, kStreamSample);
  const int64_t n = 200000;
  auto x = dw.sample(n, gen).select(1, 0);
  // P(|x| < 1) by the trapezoid rule on the normalised density.
  const int64_t m = 200001;
  double inside = 0;
  for (int64_t i = 0; i < m; ++i) {
    double v = -1.0 + 2.0 * i / (m - 1), u = v * v - 1;
    inside += std::exp(-2.0 * u * u) * ((i == 0 || i == m - 1) ? 0.5 : 1.0);
  }
  inside *= (2.0 / (m - 1)) / std::exp(dw.log_z());
  const double p_hat = (x.abs() < 1).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(p_hat, inside, kZ * std::sqrt(inside * (1 - inside) / n));
  const double pos = (x > 0).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(pos, 0.5, kZ * std::sqrt(0.25 / n));
}

// MALA and HMC are exact (up to Monte Carlo error) on a correlated 10-d
// Gaussian: cov_ij = 0.5^|i-j|, started overdispersed.
TEST(MALA, MatchesCorrelatedGaussianMoments) {
  auto target = make_target("gaussian", 10);
  MALASampler mala(MALAOptions(0.25));
  auto gen = make_generator(16, kStreamSample);
  const int64_t chains = 20000;
  ChainState st(2.0 * at::normal(0.0, 1.0, {chains, 10}, gen, torch::kDouble));
  auto stats = mala.run(*target, st, 400, gen);
  EXPECT_GT(stats.accept_rate, 0.5);
  expect_moments(st.x, target->mean(), target->covariance().diagonal(), "MALA gaussian10");
}

TEST(HMC, MatchesCorrelatedGaussianMoments) {
  auto target = make_target("gaussian", 10);
  HMCSampler hmc(HMCOptions(0.25).n_leapfrog(8).jitter(0.2));
  auto gen = make_generator(17, kStreamSample);
  const int64_t chains = 20000;
  ChainState st(2.0 * at::normal(0.0, 1.0, {chains, 10}, gen, torch::kDouble));
  auto stats = hmc.run(*target, st, 100, gen);
  EXPECT_GT(stats.accept_rate, 0.7);
  EXPECT_EQ(stats.n_divergent, 0);
  expect_moments(st.x, target->mean(), target->covariance().diagonal(), "HMC gaussian10");
}

// NUTS on the correlated 10-d Gaussian, with a fixed step and no adaptation.
TEST(NUTS, MatchesCorrelatedGaussianMoments) {
  auto target = make_target("gaussian", 10);
  NUTSSampler nuts(NUTSOptions(0.3));
  auto gen = make_generator(18, kStreamSample);
  const int64_t chains = 4000;
  ChainState st(2.0 * at::normal(0.0, 1.0, {chains, 10}, gen, torch::kDouble));
  // Each transition is close to an independent draw here (trees of ~8
  // leaves span the target): 30 transitions leave no measurable bias.
  auto stats = nuts.run(*target, st, 30, gen);
  EXPECT_GT(stats.accept_rate, 0.8);
  EXPECT_EQ(stats.n_divergent, 0);
  expect_moments(st.x, target->mean(), target->covariance().diagonal(), "NUTS gaussian10");
}

// Neal's 100-d Gaussian (sd 0.01 .. 1.00) after Stan-style warm-up: the
// adapted mass matrix makes it isotropic, so a short run mixes. Each
// sampler's draws are the final states of independent chains. Warm-up itself
// is checked: the adapted inverse mass tracks the variances and the step
// size lands where the target acceptance puts it.
class Neal100 : public ::testing::TestWithParam<std::string> {};

TEST_P(Neal100, AdaptedSamplerMatchesMoments) {
  auto target = make_target("neal100");
  auto sampler = make_sampler(GetParam());
  auto gen = make_generator(19, kStreamSample);
  // NUTS's early warm-up, with the identity metric on a target of condition
  // number 1e4, builds trees to the maximum depth: fewer chains and depth 7
  // (a user option) keep the test short.
  const int64_t chains = GetParam().rfind("nuts", 0) == 0 ? 1000 : 4000;
  ChainState st(at::normal(0.0, 1.0, {chains, 100}, gen, torch::kDouble));
  WarmupAdapter warmup(*sampler, WarmupOptions(300));
  while (!warmup.done()) warmup.step(*target, st, gen);
  // Stan's windows for 300 warm-up steps: 75 + [25, 50, 100] + 50.
  using W = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(warmup.windows(), (W{{75, 100}, {100, 150}, {150, 250}}));
  auto stats = sampler->run(*target, st, 40, gen);
  EXPECT_EQ(stats.n_divergent, 0);
  // A functional check of dual averaging (not a statistical bound): the
  // acceptance after warm-up is near the target.
  EXPECT_NEAR(stats.accept_rate, sampler->target_accept(), 0.15) << GetParam();
  expect_moments(st.x, target->mean(), target->covariance().diagonal(), GetParam() + " neal100");
}

INSTANTIATE_TEST_SUITE_P(Samplers, Neal100,
                         ::testing::Values("mala:step=0.001", "hmc:step=0.01,leapfrog=10,jitter=0.2",
                                           "nuts:step=0.01,depth=7"),
                         [](const auto& info) { return info.param.substr(0, info.param.find(':')); });

// Neal's funnel (10-d) with NUTS: y ~ N(0, 3^2). A small adapted step (target
// acceptance 0.95) lets trajectories enter the neck.
TEST(NUTS, FunnelScaleOfY) {
  auto target = make_target("funnel");
  NUTSSampler nuts(NUTSOptions(0.1));
  auto gen = make_generator(20, kStreamSample);
  const int64_t chains = 1000;
  ChainState st(target->sample(chains, gen));  // stationary start: no burn-in bias
  WarmupAdapter warmup(nuts, WarmupOptions(50).target_accept(0.95).adapt_mass(false));
  while (!warmup.done()) warmup.step(*target, st, gen);
  nuts.run(*target, st, 10, gen);
  auto y = st.x.select(1, 0);
  const double n = chains, sd = y.std().item<double>();
  const double m4 = y.pow(4).mean().item<double>();
  // SE of the variance from the fourth moment; delta method for the sd.
  const double se_sd = std::sqrt(std::max(m4 - 81.0, 0.0) / n) / (2 * 3.0);
  EXPECT_NEAR(sd, 3.0, kZ * se_sd);
  EXPECT_NEAR(y.mean().item<double>(), 0.0, kZ * 3.0 / std::sqrt(n));
}
