// The paths a CUDA device takes, run on the CPU: with the fast paths switched
// off (FastPathsGuard, core/device.h) every sampler and the replay buffer use
// tensor operations only. Deterministic parts must match the hand-written CPU
// kernels to float rounding; stochastic ones must reach the analytic target.
//
// Moment checks as in tests/stat: z = 4.89 standard errors (false-alarm rate
// 1e-6 per assertion); draws are final states of independent chains, so the
// effective sample size is the number of chains; each run is long enough that
// the remaining burn-in bias is below 1e-6 of an SE (stated per test).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ebm/core/device.h"
#include "ebm/core/rng.h"
#include "ebm/energy/energy.h"
#include "ebm/sampling/sampling.h"
#include "ebm/sampling/tempering.h"
#include "helpers.h"
#include "stat/moments.h"

namespace ebm {
namespace {
using stat::expect_moments;

torch::Tensor variances(const AnalyticEnergy& t) { return t->covariance().diagonal(); }

// Overdispersed start: twice the spread of N(0, I).
torch::Tensor overdispersed(int64_t chains, int64_t dim, at::Generator& gen) {
  return 2.0 * at::normal(0.0, 1.0, {chains, dim}, gen, torch::kDouble);
}

// `steps` transitions of `sampler` on the ATen path from an overdispersed
// start: no divergence, and the final states have the target's moments.
Stats expect_reaches_target(Sampler& sampler, const AnalyticEnergy& target, int64_t chains,
                            int64_t steps, uint64_t seed) {
  FastPathsGuard guard(false);
  auto gen = make_generator(seed, kStreamTestData);
  ChainState st(overdispersed(chains, target->dim(), gen));
  auto stats = sampler.run(*target, st, steps, gen);
  EXPECT_EQ(stats.n_divergent, 0) << sampler.name();
  expect_moments(st.x, target->mean(), variances(target), sampler.name() + " (ATen)");
  return stats;
}

// Noise off (the two paths draw differently), with and without the gradient
// clip and the box: the tensor update is the fused loop's, up to rounding
// (FMA contraction differs).
TEST(AtenPaths, NoiselessLangevinMatchesTheFastPath) {
  auto target = make_target("gaussian:dim=3");
  auto gen = make_generator(1, kStreamTestData);
  auto x0 = overdispersed(64, 3, gen).to(torch::kFloat);
  const auto plain = LangevinOptions(0.05).noise(0);
  for (const auto& o : {plain, LangevinOptions(plain).grad_clip(0.7).clamp_min(-1).clamp_max(1.2)}) {
    auto run = [&](bool fast) {
      FastPathsGuard guard(fast);
      LangevinSampler s(o);
      ChainState st(x0.clone());
      auto stats = s.run(*target, st, 5, gen);
      EXPECT_EQ(stats.n_divergent, 0);
      return st.x;
    };
    auto fast = run(true), aten = run(false);
    EXPECT_TRUE(torch::allclose(aten, fast, 1e-5, 1e-6)) << (aten - fast).abs().max();
  }
}

TEST(AtenPaths, LangevinHoldsNonFiniteChains) {
  FastPathsGuard guard(false);
  test_helpers::LinearEnergy energy(torch::tensor({1.0, -2.0}), /*nan_above=*/0.5);
  auto x = torch::tensor({{0.0, 0.0}, {1.0, 0.0}, {-1.0, 1.0}});  // row 1: NaN energy
  LangevinSampler s(LangevinOptions(0.1).noise(0.3));
  ChainState st(x.clone());
  auto gen = make_generator(2, kStreamTestData);
  auto stats = s.step(energy, st, gen);
  EXPECT_EQ(stats.n_divergent, 1);
  EXPECT_TRUE(torch::equal(st.x[1], x[1]));
  EXPECT_FALSE(torch::equal(st.x[0], x[0]));
  EXPECT_DOUBLE_EQ(stats.energy_mean, (0.0 + (-1.0 - 2.0)) / 2);
}

// ULA on N(0, diag(s2)) started at the target: AR(1) with stationary
// variance s2 / (1 - eta / (2 s2)), reached to 0.9^400 ~ 5e-19 of the initial
// offset (slowest contraction 1 - eta / max s2 = 0.9).
TEST(AtenPaths, UlaMatchesItsBiasedStationaryVariance) {
  FastPathsGuard guard(false);
  auto target = make_target("gaussian:dim=2,cond=2");
  const double eta = 0.1;
  LangevinSampler ula(LangevinOptions(eta).exact_noise(true));
  auto gen = make_generator(3, kStreamTestData);
  ChainState st(target->sample(20000, gen));
  ula.run(*target, st, 200, gen);
  auto s2 = variances(target);
  expect_moments(st.x, target->mean(), s2 / (1 - eta / (2 * s2)), "ULA (ATen)");
}

// Metropolis-adjusted samplers on the correlated 3-d Gaussian (cov_ij =
// 0.5^|i-j|), started overdispersed. Run lengths: MH (step 0.8, acceptance
// ~0.5) mixes in tens of steps, 600 given; MALA contracts at least by
// 1 - eps a / max var = 1 - 0.125 / 2.2 per step, (0.943)^400 = 6e-11.
TEST(AtenPaths, MetropolisSamplersMatchTheGaussian) {
  auto target = make_target("gaussian:dim=3");
  RandomWalkMH mh(RandomWalkMHOptions(0.8));
  EXPECT_GT(expect_reaches_target(mh, target, 4000, 600, 10).accept_rate, 0.2);
  MALASampler mala(MALAOptions(0.25));
  EXPECT_GT(expect_reaches_target(mala, target, 4000, 400, 11).accept_rate, 0.5);
  MALASampler preconditioned(MALAOptions(0.25).inv_mass(torch::tensor({1.0, 0.5, 2.0})));
  EXPECT_GT(expect_reaches_target(preconditioned, target, 4000, 400, 12).accept_rate, 0.5);
}

// HMC on a diagonal Gaussian (variances 0.1 .. 1): the target the fused CPU
// kernel takes, here through leapfrog's tensor form. Trajectories of length
// ~2 make each transition close to an independent draw: 60 are plenty.
TEST(AtenPaths, HmcMatchesTheDiagonalGaussian) {
  auto target = make_target("gaussian:dim=4,cond=10");
  HMCSampler hmc(HMCOptions(0.25).n_leapfrog(8).jitter(0.2).inv_mass(
      torch::tensor({1.0, 0.8, 0.5, 0.3})));
  EXPECT_GT(expect_reaches_target(hmc, target, 8000, 60, 20).accept_rate, 0.7);
}

TEST(AtenPaths, LeapfrogMatchesTheFusedKernel) {
  auto target = make_target("gaussian:dim=5,cond=30");
  auto gen = make_generator(21, kStreamTestData);
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    auto x0 = overdispersed(32, 5, gen).to(dtype), p0 = at::normal(0.0, 1.0, {32, 5}, gen, dtype);
    auto eps = 0.1 + 0.05 * at::rand({32}, gen, dtype);
    auto inv_mass = torch::tensor({1.0, 0.5, 2.0, 1.0, 0.7}, dtype);
    auto run = [&](bool fast) {
      FastPathsGuard guard(fast);
      auto x = x0.clone(), p = p0.clone(), g = target->grad(x0).to(dtype);
      auto e = leapfrog(*target, x, p, g, inv_mass, eps, 12);
      return std::vector<torch::Tensor>{x, p, g, e};
    };
    auto fast = run(true), aten = run(false);
    const double rtol = dtype == torch::kFloat ? 1e-4 : 1e-10;
    for (size_t i = 0; i < fast.size(); ++i)
      EXPECT_TRUE(torch::allclose(aten[i], fast[i], rtol, rtol))
          << i << ": " << (aten[i] - fast[i]).abs().max();
  }
}

// NUTS with a fixed step: trees of ~8 leaves span the target, so each
// transition is close to an independent draw and 25 leave no measurable bias.
TEST(AtenPaths, NutsMatchesTheGaussian) {
  NUTSSampler nuts(NUTSOptions(0.3));
  EXPECT_GT(expect_reaches_target(nuts, make_target("gaussian:dim=3"), 3000, 25, 22).accept_rate, 0.8);
}

// Annealed Langevin in temperature mode ending on s_L = 1: the last level is
// ULA with step eps on the target, whose 100 steps (contraction <= 0.8 per
// step) leave the stationary law s2 / (1 - eps / (2 s2)) to 1e-19 of the
// earlier levels' offset.
TEST(AtenPaths, AnnealedLangevinEndsOnTheLastLevelUla) {
  FastPathsGuard guard(false);
  auto target = make_target("gaussian:dim=2,cond=2");
  const double eps = 0.2;
  AnnealedLangevinSampler s(
      AnnealedLangevinOptions(eps).sigma_max(4.0).sigma_min(1.0).n_levels(3).steps_per_level(100));
  auto gen = make_generator(23, kStreamTestData);
  ChainState st(overdispersed(8000, 2, gen));
  auto stats = s.step(*target, st, gen);
  EXPECT_EQ(stats.n_divergent, 0);
  auto s2 = variances(target);
  expect_moments(st.x, target->mean(), s2 / (1 - eps / (2 * s2)), "annealed (ATen)");
}

// Parallel tempering's cold replicas are MALA chains at T = 1 (step 0.2:
// contraction 1 - 0.2 / 2.2 per step, 0.91^250 = 6e-11) with swaps that
// leave the joint target invariant.
TEST(AtenPaths, ParallelTemperingColdChainsMatchTheGaussian) {
  ParallelTempering pt(ParallelTemperingOptions(0.2).n_temps(3).t_max(4.0));
  expect_reaches_target(pt, make_target("gaussian:dim=3"), 2000, 250, 24);
  for (double r : pt.swap_rates()) EXPECT_GT(r, 0.1);
}

// The buffer's tensor path draws the same chains as its row-copy path (the
// same draws from the generator, the same rows), and checkpoints round-trip.
TEST(AtenPaths, ReplayBufferMatchesTheFastPath) {
  auto run = [](bool fast) {
    FastPathsGuard guard(fast);
    ReplayBuffer buf(
        ReplayBufferOptions(40).reinit_prob(0.3).init("gaussian").device(torch::kCPU), {2, 3});
    auto gen = make_generator(25, kStreamTestData);
    std::vector<torch::Tensor> out;
    for (int k = 0; k < 5; ++k) {
      auto [x, slots] = buf.sample(16, gen);
      out.push_back(x);
      buf.push(x + 1, slots);
    }
    out.push_back(buf.data().clone());
    torch::serialize::OutputArchive archive;
    buf.save(archive);
    std::stringstream bytes;
    archive.save_to(bytes);
    ReplayBuffer loaded(buf.options(), {2, 3});
    torch::serialize::InputArchive in;
    in.load_from(bytes);
    loaded.load(in);
    EXPECT_TRUE(torch::equal(loaded.data(), buf.data()));
    return out;
  };
  auto fast = run(true), aten = run(false);
  for (size_t i = 0; i < fast.size(); ++i) EXPECT_TRUE(torch::equal(aten[i], fast[i])) << i;
}

// Uniform on [-4, 4] (variance 64 / 12) and N(0, 0.5^2) inits, from the
// generator passed in.
TEST(AtenPaths, ReplayBufferInitDistributions) {
  FastPathsGuard guard(false);
  auto gen = make_generator(26, kStreamTestData);
  const int64_t n = 20000;
  auto zero = torch::zeros({1}, torch::kDouble);
  expect_moments(ReplayBuffer(ReplayBufferOptions(0), {1}).init_samples(n, gen), zero,
                 torch::full({1}, 64.0 / 12.0, torch::kDouble), "uniform init");
  ReplayBuffer gaussian(ReplayBufferOptions(0).init("gaussian").std(0.5), {1});
  expect_moments(gaussian.init_samples(n, gen), zero, torch::full({1}, 0.25, torch::kDouble),
                 "gaussian init");
}

}  // namespace
}  // namespace ebm
