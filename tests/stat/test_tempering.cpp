// Statistical tests of parallel tempering and annealed Langevin against exact
// answers. z = 4.89 (false-alarm rate 1e-6 per assertion); draws are final
// states of independent chains, so the effective sample size is the number of
// chains; run lengths make the remaining bias a tiny fraction of an SE.
#include <gtest/gtest.h>

#include "ebm/core/rng.h"
#include "ebm/energy/energy.h"
#include "ebm/sampling/sampling.h"
#include "ebm/sampling/tempering.h"
#include "moments.h"

using namespace ebm;
using stat::expect_moments;
using stat::kZ;

namespace {
// Variance and mean after ULA updates x' = (1 - c) x + sqrt(2 eta) xi on a
// Gaussian target, T per level: the exact law of the annealed sweep.
std::pair<double, double> swept_moments(double m, double v, const std::vector<double>& c,
                                        const std::vector<double>& eta, int64_t steps) {
  for (size_t i = 0; i < c.size(); ++i)
    for (int64_t t = 0; t < steps; ++t) {
      m = (1 - c[i]) * m;
      v = (1 - c[i]) * (1 - c[i]) * v + 2 * eta[i];
    }
  return {m, v};
}

// N(0, I) data convolved with N(0, sigma^2 I) noise: E(x, sigma) = |x|^2 / (2 (1 + sigma^2)).
class SmoothedGaussian : public NoiseConditionalEnergyImpl {
 public:
  explicit SmoothedGaussian(int64_t dim) : dim_(dim) {}
  torch::Tensor energy_at(const torch::Tensor& x, const torch::Tensor& sigma) override {
    return x.pow(2).sum(1) / (2 * (1 + sigma * sigma));
  }
  std::pair<torch::Tensor, torch::Tensor> energy_and_grad(const torch::Tensor& x) override {
    const double v = 1 + noise_level() * noise_level();
    return {x.pow(2).sum(1) / (2 * v), x / v};
  }
  std::vector<int64_t> event_shape() const override { return {dim_}; }

 private:
  int64_t dim_;
};
}  // namespace

// 0.3 N(-5, 0.5^2) + 0.7 N(5, 0.5^2), every chain started in the minor mode.
//
// The barrier stops a single chain: E(0) - E(-5) = 49.2, and a chain in local
// equilibrium in the left well is beyond x = -1 with probability
// Phi(-8) = 6e-16 per step, so over B * N = 1.2e6 chain-steps the expected
// number of crossings is ~1e-9 (a direct MALA jump from the well to x = 0 has
// log acceptance ~ -119). PT (K = 8 geometric up to T = 100, where the barrier
// is 0.5 and both modes have tempered weight ~ 1/2) crosses: the cold fraction
// in the + mode relaxes to 0.7 with a time constant of ~25 steps (measured with
// 20000 chains: deviation -0.35, -0.10, -0.024 at steps 20, 50, 80), so after
// N = 600 steps the remaining bias is <= 0.7 e^{-600/30} = 1.4e-9, about 2e-7
// of the binomial SE.
TEST(ParallelTempering, RecoversWeightsOfSeparatedMixture) {
  MixtureEnergyImpl target(torch::tensor({0.3, 0.7}), torch::tensor({-5.0, 5.0}).view({2, 1}),
                           torch::tensor({0.5, 0.5}));
  const int64_t chains = 2000, steps = 600;
  const double eps = 0.2, p = 0.7;
  const double se = std::sqrt(p * (1 - p) / chains);  // binomial: independent chains
  auto gen = make_generator(21, kStreamSample);
  auto x0 = -5.0 + 0.5 * at::normal(0.0, 1.0, {chains, 1}, gen, torch::kDouble);
  auto plus = [](const torch::Tensor& x) { return (x > 0).to(torch::kDouble).mean().item<double>(); };

  ParallelTempering pt(ParallelTemperingOptions(eps).n_temps(8).t_max(100.0));
  ChainState st(x0.clone());
  auto stats = pt.run(target, st, steps, gen);
  const double f = plus(st.x);
  EXPECT_NEAR(f, p, kZ * se) << "PT fraction in the + mode";
  expect_moments(st.x, target.mean(), target.covariance().diagonal(), "PT mixture");
  EXPECT_EQ(stats.n_divergent, 0);
  // Sanity, not a derived bound: every adjacent pair exchanges often (~0.75-0.85 here).
  auto rates = pt.swap_rates();
  ASSERT_EQ(rates.size(), 7u);
  std::ostringstream os;
  for (double r : rates) {
    EXPECT_GT(r, 0.3);
    os << " " << r;
  }
  std::cout << "PT: + fraction " << f << " (SE " << se << "), cold accept " << stats.accept_rate
            << ", swap rates" << os.str() << "\n";

  // Control: the same local moves without swaps, and ULA, stay in the minor mode.
  MALASampler mala{MALAOptions(eps)};
  LangevinSampler ula(LangevinOptions(0.05).exact_noise(true));
  for (Sampler* s : std::vector<Sampler*>{&mala, &ula}) {
    ChainState c(x0.clone());
    s->run(target, c, steps, gen);
    const double fc = plus(c.x);
    EXPECT_GT(std::abs(fc - p), kZ * se) << s->name() << " crossed the barrier: " << fc;
    EXPECT_EQ(fc, 0.0) << s->name();
  }
}

// Temperature mode on N(0, diag(s2)): level s is ULA on N(0, s * s2) with step
// eps s^2 / s_L^2, i.e. x' = (1 - eta/(s s2)) x + sqrt(2 eta) xi; the exact
// law of the sweep follows from the AR(1) recursion. With s_L = 1 and T = 100
// it equals the last level's ULA stationary variance s2 / (1 - eps / (2 s2))
// to 1e-15 (contraction 0.8^200), so the test checks the schedule and the
// known ULA bias (0.11 for s2 = 1, 10 SEs), which rejects the exact variance s2.
TEST(AnnealedLangevin, TemperatureModeEndsOnBiasedULAVariance) {
  auto s2 = torch::tensor({1.0, 0.5}, torch::kDouble);
  GaussianEnergyImpl target(torch::zeros({2}, torch::kDouble), torch::diag(s2));
  const double eps = 0.2;
  const int64_t steps = 100, chains = 20000;
  AnnealedLangevinSampler s(
      AnnealedLangevinOptions(eps).sigma_max(4.0).sigma_min(1.0).n_levels(5).steps_per_level(steps));
  auto gen = make_generator(22, kStreamSample);
  ChainState st(3.0 + at::normal(0.0, 1.0, {chains, 2}, gen, torch::kDouble));
  auto stats = s.step(target, st, gen);
  EXPECT_EQ(stats.n_divergent, 0);
  EXPECT_DOUBLE_EQ(stats.step_size, eps);
  auto mean = torch::zeros({2}, torch::kDouble), var = torch::zeros({2}, torch::kDouble);
  for (int64_t j = 0; j < 2; ++j) {
    const double sj = s2[j].item<double>();
    std::vector<double> c;
    for (size_t i = 0; i < s.levels().size(); ++i) c.push_back(s.step_sizes()[i] / (s.levels()[i] * sj));
    auto [m, v] = swept_moments(3.0, 1.0, c, s.step_sizes(), steps);
    EXPECT_NEAR(v, sj / (1 - eps / (2 * sj)), 1e-12);
    mean[j] = m;
    var[j] = v;
  }
  expect_moments(st.x, mean, var, "annealed (temperature)");
  const double v0 = st.x.select(1, 0).var().item<double>();
  EXPECT_GT(std::abs(v0 - 1.0), kZ * std::sqrt(2.0 / chains) * var[0].item<double>());
}

// Noise-conditional: levels 1 .. 0.2 (L = 5), eta_i = eps s_i^2 / s_L^2 with
// eps = 0.04, on E(x, s) = |x|^2 / (2 (1 + s^2)). The last level is ULA on
// N(0, 1.04) with step 0.04: stationary variance 1.04 / (1 - 0.04 / 2.08) =
// 1.0604, reached to 1e-8 after T = 200 steps (contraction 0.9615^400 of a
// ~0.07 offset; 1e-6 of an SE). A sampler that ignored the noise levels would
// end near variance 2.
TEST(AnnealedLangevin, NoiseConditionalEndsOnLastLevelULAVariance) {
  SmoothedGaussian energy(2);
  const double eps = 0.04, s_min = 0.2;
  const int64_t steps = 200, chains = 20000;
  AnnealedLangevinSampler s(
      AnnealedLangevinOptions(eps).sigma_max(1.0).sigma_min(s_min).n_levels(5).steps_per_level(steps));
  auto gen = make_generator(23, kStreamSample);
  ChainState st(at::normal(0.0, 1.0, {chains, 2}, gen, torch::kDouble));
  auto stats = s.step(energy, st, gen);
  EXPECT_EQ(stats.n_divergent, 0);
  const double v_last = 1 + s_min * s_min;
  const double v_ula = v_last / (1 - eps / (2 * v_last));
  std::vector<double> c;
  for (size_t i = 0; i < s.levels().size(); ++i)
    c.push_back(s.step_sizes()[i] / (1 + s.levels()[i] * s.levels()[i]));
  auto [m, v] = swept_moments(0.0, 1.0, c, s.step_sizes(), steps);
  EXPECT_NEAR(v, v_ula, 1e-7);
  expect_moments(st.x, torch::zeros({2}, torch::kDouble), torch::full({2}, v_ula, torch::kDouble),
                 "annealed (noise-conditional)");
}
