// Kim & Bengio's and MEG's entropy estimators on generators whose entropy is
// known in closed form, and MEG's latent MALA against its formula.
#include <gtest/gtest.h>

#include <cmath>

#include "ebm/core/rng.h"
#include "ebm/energy/conv.h"
#include "ebm/energy/generator.h"
#include "ebm/objectives/learned.h"

using namespace ebm;

namespace {
const auto kF64 = torch::TensorOptions(torch::kDouble);

// x = BN(W z) with W diagonal: each coordinate of W z is Gaussian and
// independent, so batch normalisation makes x ~ N(beta, diag(gamma^2)) and
// H(x) = sum_i 1/2 log(2 pi e gamma_i^2): Kim & Bengio's estimate is exact.
class NormalisedLinearGenerator : public GeneratorImpl {
 public:
  explicit NormalisedLinearGenerator(torch::Tensor gamma)
      : GeneratorImpl(GeneratorOptions({gamma.size(0)}).latent_dim(gamma.size(0)).batch_norm(true)) {
    bn_ = register_module("bn", torch::nn::BatchNorm1d(gamma.size(0)));
    to(torch::kDouble);
    torch::NoGradGuard ng;
    bn_->weight.copy_(gamma);
  }
  torch::Tensor mean(const torch::Tensor& z) override {
    return bn_->forward(z * torch::arange(1, z.size(1) + 1, kF64));
  }
  std::vector<torch::Tensor> batch_norm_scales() const override { return {bn_->weight}; }
  torch::nn::BatchNorm1d bn_{nullptr};
};
}  // namespace

TEST(KimBengioEntropy, ExactOnANormalisedLinearGenerator) {
  auto gamma = torch::tensor({2.0, 0.5, 1.3}, kF64);
  NormalisedLinearGenerator g(gamma);
  auto h = KimBengio::entropy_estimate(g);
  const double closed = 0.5 * torch::logdet(2 * M_PI * M_E * torch::diag(gamma.pow(2))).item<double>();
  EXPECT_NEAR(h.item<double>(), closed, 1e-9);  // (the estimate adds 1e-12 to gamma^2)
  // The premise: the generator's draws have covariance diag(gamma^2). Over
  // n = 100,000 draws the log det of the sample covariance has standard
  // error sqrt(2 D / n) = 0.008; 0.04 is 5 of them.
  auto gen = make_generator(5, kStreamTrain);
  g.train();
  torch::NoGradGuard ng;
  auto x = g.mean(g.latent(100000, gen).to(torch::kDouble));
  auto cov = torch::cov(x.t());
  EXPECT_NEAR(0.5 * torch::logdet(2 * M_PI * M_E * cov).item<double>(), closed, 0.02);
}

TEST(KimBengioEntropy, GradientIsTheClosedFormGradient) {
  auto gamma = torch::tensor({2.0, -0.5}, kF64);
  NormalisedLinearGenerator g(gamma);
  auto grad = torch::autograd::grad({KimBengio::entropy_estimate(g)}, {g.bn_->weight})[0];
  EXPECT_TRUE(torch::allclose(grad, 1.0 / gamma, 1e-9, 1e-9)) << grad;  // d/dgamma 1/2 log gamma^2
}

// MEG: with a linear Gaussian generator x = W z + s eps the mutual
// information is I(x; z) = 1/2 log det(I + W^T W / s^2). A statistics network
// trained on the JSD bound approaches the log density ratio, at which the
// Donsker-Varadhan bound equals I.
TEST(MegEntropy, StatisticsNetworkRecoversTheMutualInformation) {
  torch::manual_seed(0);
  auto gen = make_generator(7, kStreamTrain);
  auto w = torch::tensor({{1.0, 0.0}, {0.4, 0.5}}, kF64);
  const double s = 0.5;
  const double exact = 0.5 * torch::logdet(torch::eye(2, kF64) + w.t().mm(w) / (s * s)).item<double>();
  StatisticsNetworkImpl t({2}, 2, {64, 64});
  t.to(torch::kDouble);
  torch::optim::Adam opt(t.parameters(), torch::optim::AdamOptions(2e-3));
  auto draw = [&](int64_t n) {
    auto z = at::normal(0.0, 1.0, {n, 2}, gen, kF64);
    return std::make_pair(z.mm(w.t()) + s * at::normal(0.0, 1.0, {n, 2}, gen, kF64), z);
  };
  for (int i = 0; i < 1500; ++i) {
    auto [x, z] = draw(256);
    opt.zero_grad();
    (-jsd_mutual_information(t, x, z)).backward();
    opt.step();
  }
  torch::NoGradGuard ng;
  auto [x, z] = draw(50000);
  const double dv = dv_mutual_information(t, x, z).item<double>();
  // exact = 1.182 nats, measured 1.165 (seed 7). The Monte Carlo error of
  // the estimate over 50,000 pairs is about 0.01; the rest is T's fit
  // after 1,500 steps, which falls short from below.
  EXPECT_NEAR(dv, exact, 0.1) << "exact " << exact;
  // The JSD bound itself is no MI estimate, but it must be finite and above
  // -2 log 2 (its value at T = 0).
  EXPECT_GT(jsd_mutual_information(t, x, z).item<double>(), -2 * std::log(2.0));
}

TEST(MegLatentMala, ProposalDensityMatchesTheGaussianFormula) {
  auto gen = make_generator(3, kStreamTrain);
  auto from = at::normal(0.0, 1.0, {4, 3}, gen, kF64), to = at::normal(0.0, 1.0, {4, 3}, gen, kF64);
  auto grad = at::normal(0.0, 1.0, {4, 3}, gen, kF64);
  const double step = 0.3;
  auto got = mala_log_proposal(to, from, grad, step);
  for (int64_t i = 0; i < 4; ++i) {
    double want = 0;
    for (int64_t j = 0; j < 3; ++j) {
      const double m = from[i][j].item<double>() - step * grad[i][j].item<double>(), v = 2 * step;
      const double d = to[i][j].item<double>() - m;
      want += -0.5 * d * d / v - 0.5 * std::log(2 * M_PI * v);
    }
    EXPECT_NEAR(got[i].item<double>(), want, 1e-12);
  }
}

// The Metropolis correction keeps N(0, I) invariant under U = |z|^2 / 2 even
// at a step where the unadjusted chain's stationary variance is 1 / (1 -
// step / 2) = 1.67; with the proposal density left out (or wrong) the
// variance drifts away from 1.
TEST(MegLatentMala, KeepsTheTargetInvariant) {
  auto gen = make_generator(4, kStreamTrain);
  const int64_t n = 20000;
  auto z = at::normal(0.0, 1.0, {n, 2}, gen, kF64);
  LatentPotential u = [](const torch::Tensor& v) { return 0.5 * v.pow(2).sum(1); };
  double accepted = 0;
  for (int k = 0; k < 30; ++k) accepted += latent_mala_step(u, z, 0.8, gen).mean().item<double>();
  EXPECT_GT(accepted / 30, 0.3);
  EXPECT_LT(accepted / 30, 0.99);
  // Var over 40,000 coordinates (correlated across steps only through z
  // itself): standard error sqrt(2 / 40000) = 0.007; 0.035 is 5 of them.
  EXPECT_NEAR(z.var().item<double>(), 1.0, 0.035);
  EXPECT_NEAR(z.mean().item<double>(), 0.0, 0.025);
}

// Every learned-sampler step on an image energy with spectral normalisation
// (whose power iteration updates its vectors in place on each training pass)
// backpropagates each learner's loss; before the energy took one training
// pass over [x+, x-] and the generators' losses a held pass, autograd
// refused (a saved vector modified in place).
TEST(LearnedSamplers, StepOnASpectrallyNormalisedConvEnergy) {
  const std::vector<int64_t> shape = {1, 8, 8};
  auto gen = make_generator(9, kStreamTrain);
  auto energy = ConvEnergy(ConvEnergyOptions(shape).spectral_norm(true));
  energy->train();
  Batch batch{at::empty({6, 1, 8, 8}).uniform_(-1, 1, gen), {}};
  auto deconv = [&](bool bn) {
    return std::make_shared<DeconvGeneratorImpl>(GeneratorOptions(shape).latent_dim(4).channels({4, 4}).batch_norm(bn));
  };
  std::vector<std::shared_ptr<Objective>> objectives = {
      std::make_shared<Vera>(VeraOptions().posterior_samples(3).grad_penalty(0.1).alpha(0.1), deconv(false)),
      std::make_shared<KimBengio>(KimBengioOptions().grad_penalty(0.1), deconv(true)),
      std::make_shared<Meg>(MegOptions().stats_hidden({8}).mala_steps(2), deconv(false))};
  for (auto& o : objectives) {
    auto u0 = energy->buffers()[0].clone();
    Output out = o->compute(*energy, batch, gen);
    auto pe = energy->parameters();
    auto ge = torch::autograd::grad({out.loss}, pe, {}, true);
    for (auto& g : ge) EXPECT_TRUE(g.defined() && torch::isfinite(g).all().item<bool>());
    for (const auto& [name, loss] : out.learner_losses) {
      for (auto& m : o->learned_modules()) {
        if (m.name != name) continue;
        auto gm = torch::autograd::grad({loss}, m.module->parameters(), {}, true, false, true);
        bool any = false;
        for (auto& g : gm) any = any || (g.defined() && g.abs().sum().item<double>() > 0);
        EXPECT_TRUE(any) << name;
      }
    }
    EXPECT_FALSE(torch::equal(u0, energy->buffers()[0]));  // (one power iteration per step)
  }
}

// The deconv generator draws any [C, H, W]: sides that are not multiples of
// 4 are drawn at the next multiple and cropped to the centre, so with the
// same weights a [3, 30, 30] generator's draws are a [3, 32, 32] one's rows
// and columns 1 to 30; a [1, 13, 17] one draws its shape in the output range.
TEST(LearnedSamplers, DeconvGeneratorDrawsSidesThatAreNotMultiplesOfFour) {
  torch::manual_seed(5);
  auto opts = [](std::vector<int64_t> shape) {
    return GeneratorOptions(std::move(shape)).latent_dim(4).channels({4, 4}).batch_norm(true);
  };
  auto g32 = std::make_shared<DeconvGeneratorImpl>(opts({3, 32, 32}));
  auto g30 = std::make_shared<DeconvGeneratorImpl>(opts({3, 30, 30}));
  {
    torch::NoGradGuard ng;
    auto src = g32->named_parameters(), dst = g30->named_parameters();
    ASSERT_EQ(src.size(), dst.size());
    for (const auto& p : src) dst[p.key()].copy_(p.value());
  }
  g32->eval();
  g30->eval();
  auto z = torch::randn({5, 4});
  auto a = g32->mean(z), b = g30->mean(z);
  ASSERT_EQ(b.sizes(), (std::vector<int64_t>{5, 3, 30, 30}));
  EXPECT_TRUE(torch::allclose(b, a.narrow(2, 1, 30).narrow(3, 1, 30)));
  auto odd = std::make_shared<DeconvGeneratorImpl>(opts({1, 13, 17}));
  auto c = odd->mean(z);
  ASSERT_EQ(c.sizes(), (std::vector<int64_t>{5, 1, 13, 17}));
  EXPECT_GE(c.min().item<double>(), -1.0);
  EXPECT_LE(c.max().item<double>(), 1.0);
}

// VERA's JEM variant: with ce_weight the energy's loss gains exactly
// ce_weight x the cross entropy of softmax(-E(x+, y)) at the labels, read
// from the same pass; a non-classifier energy is refused.
namespace {
class TwoClassLinear : public EnergyImpl {
 public:
  TwoClassLinear() { l_ = register_module("l", torch::nn::Linear(2, 2)); }
  torch::Tensor energy(const torch::Tensor& x) override { return -torch::logsumexp(-class_energies(x), 1); }
  torch::Tensor class_energies(const torch::Tensor& x) override { return l_->forward(x); }
  int64_t num_classes() const override { return 2; }
  std::vector<int64_t> event_shape() const override { return {2}; }
  torch::nn::Linear l_{nullptr};
};
}  // namespace

TEST(LearnedSamplers, JemVariantAddsTheCrossEntropy) {
  torch::manual_seed(3);
  TwoClassLinear energy;
  Batch batch{torch::randn({8, 2}), torch::tensor({0, 1, 1, 0, 1, 0, 0, 1}, torch::kLong)};
  auto x_neg = torch::randn({8, 2});
  Output a, b;
  auto plain = learned_sampler_energy_loss(energy, batch.x, x_neg, 0.1, 0.0, a);
  auto with_ce = learned_sampler_energy_loss(energy, batch.x, x_neg, 0.1, 0.0, b, &batch, 0.5);
  auto ce = torch::nn::functional::cross_entropy(-energy.class_energies(batch.x), batch.y);
  EXPECT_NEAR((with_ce - plain).item<double>(), 0.5 * ce.item<double>(), 1e-6);
  EXPECT_NEAR(b.metrics.at("ce"), ce.item<double>(), 1e-6);
  EXPECT_TRUE(b.metrics.count("accuracy"));
  // The gap is logged as contrastive divergence logs it: E(x-) - E(x+).
  EXPECT_NEAR(a.metrics.at("e_pos"), energy.energy(batch.x).mean().item<double>(), 1e-6);
  EXPECT_NEAR(a.metrics.at("e_neg"), energy.energy(x_neg).mean().item<double>(), 1e-6);
  EXPECT_NEAR(a.metrics.at("gap"), a.metrics.at("e_neg") - a.metrics.at("e_pos"), 1e-12);
  auto conv = ConvEnergy(ConvEnergyOptions({1, 8, 8}));
  Batch images{torch::rand({2, 1, 8, 8}), torch::tensor({0, 1}, torch::kLong)};
  Output c;
  EXPECT_THROW(learned_sampler_energy_loss(*conv, images.x, images.x, 0, 0, c, &images, 1.0), std::exception);
}
