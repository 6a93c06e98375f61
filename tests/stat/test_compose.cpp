// Composition of energies and conditional sampling against closed forms.
// Tolerances z * SE with z = 4.89 (false-alarm rate 1e-6 per assertion);
// draws are final states of independent chains, i.i.d. across chains.
#include <gtest/gtest.h>

#include "ebm/core/rng.h"
#include "ebm/energy/compose.h"
#include "ebm/energy/energy.h"
#include "ebm/sampling/conditional.h"
#include "ebm/sampling/sampling.h"
#include "moments.h"

using namespace ebm;
using stat::expect_moments;
using stat::kZ;

namespace {
torch::Tensor dbl(std::vector<double> v, std::vector<int64_t> shape) {
  return torch::tensor(v, torch::kDouble).view(shape);
}
Energy gaussian(const torch::Tensor& m, const torch::Tensor& s) { return std::make_shared<GaussianEnergyImpl>(m, s); }

// Off-diagonal covariance of draws against c01 for Gaussian draws:
// SE = sqrt((s00 s11 + s01^2) / N).
void expect_cov01(const torch::Tensor& x, const torch::Tensor& cov, const char* what) {
  auto c = x - x.mean(0);
  const double n = x.size(0);
  const double c01 = (c.select(1, 0) * c.select(1, 1)).mean().item<double>();
  const double s00 = cov[0][0].item<double>(), s11 = cov[1][1].item<double>(), s01 = cov[0][1].item<double>();
  EXPECT_NEAR(c01, s01, kZ * std::sqrt((s00 * s11 + s01 * s01) / n)) << what;
}
}  // namespace

// and: N(m1, S1) x N(m2, S2) is N(m, S), S = (S1^-1 + S2^-1)^-1,
// m = S (S1^-1 m1 + S2^-1 m2); HMC on the sum of energies must match it.
TEST(Compose, AndOfTwoGaussiansIsTheProductGaussian) {
  auto m1 = dbl({1.0, -1.0}, {2}), m2 = dbl({-0.5, 2.0}, {2});
  auto s1 = dbl({1.0, 0.6, 0.6, 1.5}, {2, 2}), s2 = dbl({2.0, -0.4, -0.4, 0.5}, {2, 2});
  auto p1 = torch::inverse(s1), p2 = torch::inverse(s2);
  auto s = torch::inverse(p1 + p2);
  auto m = torch::mv(s, torch::mv(p1, m1) + torch::mv(p2, m2));
  ComposedEnergyImpl both({gaussian(m1, s1), gaussian(m2, s2)}, "and");
  // Exact: E_and - E_product is a constant.
  auto probe = dbl({0.0, 0.0, 1.0, 2.0, -3.0, 0.5}, {3, 2});
  GaussianEnergyImpl product(m, s);
  auto diff = both.energy(probe) - product.energy(probe);
  EXPECT_NEAR((diff - diff[0]).abs().max().item<double>(), 0.0, 1e-10);

  HMCSampler hmc(HMCOptions(0.2).n_leapfrog(8).jitter(0.2));
  auto gen = make_generator(31, kStreamSample);
  const int64_t chains = 20000;
  ChainState st(2.0 * at::normal(0.0, 1.0, {chains, 2}, gen, torch::kDouble));
  auto stats = hmc.run(both, st, 150, gen);
  EXPECT_GT(stats.accept_rate, 0.7);
  expect_moments(st.x, m, s.diagonal(), "and");
  expect_cov01(st.x, s, "and: covariance");
}

// or of two Gaussians of one covariance (so one normaliser) with weights
// 0.3, 0.7 is the mixture 0.3 N(m1, S) + 0.7 N(m2, S): mean sum pi_i m_i,
// covariance S + sum pi_i (m_i - mean)(m_i - mean)^T.
TEST(Compose, OrOfTwoGaussiansIsTheirMixture) {
  auto m1 = dbl({-1.0, 0.0}, {2}), m2 = dbl({1.0, 0.5}, {2});
  auto cov = dbl({0.6, 0.1, 0.1, 0.4}, {2, 2});
  ComposedEnergyImpl either({gaussian(m1, cov), gaussian(m2, cov)}, "or", {3.0, 7.0});
  auto probe = dbl({0.0, 0.0, 1.0, 2.0, -3.0, 0.5}, {3, 2});
  // Exact: against -log(0.3 N1 + 0.7 N2), up to the shared log Z.
  GaussianEnergyImpl g1(m1, cov), g2(m2, cov);
  auto mix = -torch::logsumexp(torch::stack({std::log(0.3) - g1.energy(probe), std::log(0.7) - g2.energy(probe)}, 1), 1);
  EXPECT_NEAR((either.energy(probe) - mix).abs().max().item<double>(), 0.0, 1e-10);
  // Its gradient against autograd.
  auto xg = probe.clone().requires_grad_(true);
  auto auto_g = torch::autograd::grad({either.energy(xg).sum()}, {xg})[0];
  EXPECT_LT((either.energy_and_grad(probe).second - auto_g).abs().max().item<double>(), 1e-10);

  // (the components overlap: chains cross between them freely)
  MALASampler mala(MALAOptions(0.4));
  auto gen = make_generator(32, kStreamSample);
  const int64_t chains = 20000;
  ChainState st(2.0 * at::normal(0.0, 1.0, {chains, 2}, gen, torch::kDouble));
  auto stats = mala.run(either, st, 600, gen);
  EXPECT_GT(stats.accept_rate, 0.5);
  auto mean = 0.3 * m1 + 0.7 * m2;
  auto d1 = m1 - mean, d2 = m2 - mean;
  auto mcov = cov + 0.3 * torch::outer(d1, d1) + 0.7 * torch::outer(d2, d2);
  expect_moments(st.x, mean, mcov.diagonal(), "or");
  expect_cov01(st.x, mcov, "or: covariance");
}

// not: E_a - w E_b of Gaussians is the Gaussian of precision P_a - w P_b
// (when positive definite), mean (P_a - w P_b)^-1 (P_a m_a - w P_b m_b).
TEST(Compose, NotOfTwoGaussiansIsTheirPrecisionDifference) {
  auto ma = dbl({0.0, 0.0}, {2}), mb = dbl({1.0, 1.0}, {2});
  auto sa = dbl({1.0, 0.0, 0.0, 1.0}, {2, 2}), sb = dbl({4.0, 0.0, 0.0, 2.0}, {2, 2});
  const double w = 0.5;
  ComposedEnergyImpl neg({gaussian(ma, sa), gaussian(mb, sb)}, "not", {w});
  auto pa = torch::inverse(sa), pb = torch::inverse(sb);
  auto s = torch::inverse(pa - w * pb);
  auto m = torch::mv(s, torch::mv(pa, ma) - w * torch::mv(pb, mb));
  MALASampler mala(MALAOptions(0.3));
  auto gen = make_generator(33, kStreamSample);
  const int64_t chains = 20000;
  ChainState st(at::normal(0.0, 1.0, {chains, 2}, gen, torch::kDouble));
  auto stats = mala.run(neg, st, 500, gen);
  EXPECT_GT(stats.accept_rate, 0.5);
  expect_moments(st.x, m, s.diagonal(), "not");
}

// Inpainting on a Gaussian: sampling coordinates 2, 3 with 0, 1 clamped at
// a is the exact conditional N(m2 + S21 S11^-1 (a - m1), S22 - S21 S11^-1 S12).
TEST(Complete, ClampedGaussianIsTheExactConditional) {
  auto target = make_target("gaussian", 4);  // cov_ij = 0.5^|i-j|
  auto mean = target->mean(), cov = target->covariance();
  auto a = dbl({1.5, -0.5}, {2});
  auto s11 = cov.slice(0, 0, 2).slice(1, 0, 2), s12 = cov.slice(0, 0, 2).slice(1, 2, 4);
  auto s21 = s12.t(), s22 = cov.slice(0, 2, 4).slice(1, 2, 4);
  auto k = torch::mm(s21, torch::inverse(s11));
  auto cm = mean.slice(0, 2, 4) + torch::mv(k, a - mean.slice(0, 0, 2));
  auto cc = s22 - torch::mm(k, s12);

  const int64_t rows = 20000;
  auto known = torch::zeros({rows, 4}, torch::kDouble);
  known.slice(1, 0, 2).copy_(a.expand({rows, 2}));
  auto free = dbl({0, 0, 1, 1}, {1, 4}).to(torch::kBool);
  auto gen = make_generator(34, kStreamSample);
  auto init = 2.0 * at::normal(0.0, 1.0, {rows, 4}, gen, torch::kDouble);
  MALASampler mala(MALAOptions(0.3));
  auto out = complete(*target, mala, known, free, init, CompletionOptions(400), gen);
  EXPECT_GT(out.stats.accept_rate, 0.5);
  // The known coordinates come back exactly as given.
  EXPECT_TRUE(torch::equal(out.x.slice(1, 0, 2), known.slice(1, 0, 2)));
  auto x = out.x.slice(1, 2, 4);
  expect_moments(x, cm, cc.diagonal(), "conditional");
  expect_cov01(x, cc, "conditional: covariance");
  // And the energies returned are E at the kept states.
  EXPECT_LT((out.energy - target->energy(out.x)).abs().max().item<double>(), 1e-12);
}

// Denoising's posterior: prior N(0, sp^2 I), observation y with noise s:
// the anchored energy's draws are N(y sp^2 / (sp^2 + s^2), sp^2 s^2 / (sp^2 + s^2)).
TEST(Complete, AnchoredEnergyIsTheGaussianPosterior) {
  const double sp2 = 2.0, s = 0.5, s2 = s * s;
  auto prior = std::make_shared<GaussianEnergyImpl>(torch::zeros({3}, torch::kDouble),
                                                    sp2 * torch::eye(3, torch::kDouble));
  const int64_t rows = 20000;
  auto y = dbl({1.0, -2.0, 0.5}, {1, 3}).expand({rows, 3}).contiguous();
  auto gen = make_generator(35, kStreamSample);
  MALASampler mala(MALAOptions(0.2));
  auto out = complete(*prior, mala, y, torch::ones({1, 3}, torch::kBool), y.clone(),
                      CompletionOptions(300).anchor_std(s), gen);
  auto pm = y[0] * (sp2 / (sp2 + s2));
  auto pv = torch::full({3}, sp2 * s2 / (sp2 + s2), torch::kDouble);
  expect_moments(out.x, pm, pv, "posterior");
}

// Each value its own noise std (anchor_std x anchor_scale, a standardised
// model's columns): s_j = 0.5 x (1, 0.5, 2), posterior per column as above.
TEST(Complete, AnchorScaleGivesEachValueItsStd) {
  const double sp2 = 2.0;
  auto prior = std::make_shared<GaussianEnergyImpl>(torch::zeros({3}, torch::kDouble),
                                                    sp2 * torch::eye(3, torch::kDouble));
  const int64_t rows = 20000;
  auto y = dbl({1.0, -2.0, 0.5}, {1, 3}).expand({rows, 3}).contiguous();
  auto gen = make_generator(36, kStreamSample);
  MALASampler mala(MALAOptions(0.02));
  const auto scale = dbl({1.0, 0.5, 2.0}, {3});
  auto out = complete(*prior, mala, y, torch::ones({1, 3}, torch::kBool), y.clone(),
                      CompletionOptions(400).anchor_std(0.5).anchor_scale(scale), gen);
  auto s2 = (0.5 * scale).square();
  auto pm = y[0] * (sp2 / (sp2 + s2));
  auto pv = sp2 * s2 / (sp2 + s2);
  expect_moments(out.x, pm, pv, "posterior, per-value std");
}

// Several chains per row: the one of lowest final energy is kept.
TEST(Complete, KeepsTheLowestEnergyChain) {
  auto target = make_target("gaussian", 2);
  auto known = torch::zeros({3, 2}, torch::kDouble);
  auto free = torch::ones({1, 2}, torch::kBool);
  // No transitions: the chains stay at their starts, so the winner is known.
  auto init = dbl({3, 3, 0.1, 0, 2, 2,  -1, -1, 0, 0, 5, 5,  4, 0, 0, 4, 0.5, 0.5}, {9, 2});
  LangevinSampler ula(LangevinOptions(0.01));
  auto gen = make_generator(36, kStreamSample);
  auto out = complete(*target, ula, known, free, init, CompletionOptions(0).chains(3), gen);
  auto expect = dbl({0.1, 0, 0, 0, 0.5, 0.5}, {3, 2});
  EXPECT_TRUE(torch::allclose(out.x, expect));
}
