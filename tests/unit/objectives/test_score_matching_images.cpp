// Score matching on images ([B, C, H, W] rows): the losses sum over every
// pixel, against closed forms on an isotropic quadratic energy; the
// objectives train it to the smoothed optimum; a conv energy's parameter
// gradients through its fast first layer (float32) match float64 ATen; the
// noise-scaled (NCSNv2) wrapper of image networks.
// Statistical tolerances are z * SE with z = 4.89 (two-sided normal,
// false-alarm rate 1e-6 per assertion).
#include <gtest/gtest.h>

#include <cmath>

#include "ebm/core/config.h"
#include "ebm/core/rng.h"
#include "ebm/energy/registry.h"
#include "ebm/energy/conv.h"
#include "ebm/objectives/score_matching.h"

using namespace ebm;

namespace {
constexpr double kZ = 4.89;
const std::vector<int64_t> kShape{1, 4, 4};  // D = 16 pixels
constexpr double kD = 16;

// E(x) = a / 2 |x|^2 over every pixel, a = exp(log_a).
class IsotropicImageEnergy : public EnergyImpl {
 public:
  explicit IsotropicImageEnergy(double a) {
    log_a = register_parameter("log_a", torch::tensor(std::log(a), torch::kDouble));
  }
  torch::Tensor energy(const torch::Tensor& x) override {
    return 0.5 * log_a.exp() * x.pow(2).flatten(1).sum(1);
  }
  std::vector<int64_t> event_shape() const override { return kShape; }
  torch::Tensor log_a;
};

torch::Tensor images(int64_t n, double sd, at::Generator& gen) {
  return at::normal(0.0, sd, {n, 1, 4, 4}, gen, torch::TensorOptions(torch::kDouble));
}

void expect_mean(const torch::Tensor& per_row, double want, const std::string& what) {
  const double mean = per_row.mean().item<double>();
  const double se = per_row.std().item<double>() / std::sqrt(double(per_row.size(0)));
  EXPECT_NEAR(mean, want, kZ * se) << what;
}
}  // namespace

// x ~ N(0, tau^2 I): E[DSM] = D/2 [a^2 s^2 (tau^2 + s^2) - 2 a s^2 + 1] at
// r = s; E[SSM] = D (a^2 tau^2 / 2 - a) for v with E[v v^T] = I.
TEST(ScoreMatchingImages, LossesSumOverEveryPixel) {
  const double a = 1.7, tau = 0.6, s = 0.3;
  IsotropicImageEnergy e(a);
  auto gen = make_generator(4, kStreamTrain);
  const int64_t n = 20000;
  auto x = images(n, tau, gen);
  auto eps = images(n, 1.0, gen);
  auto sig = torch::full({n}, s, torch::kDouble);
  auto dsm = denoising_sm_loss(e, x, eps, sig, sig, false).detach();
  ASSERT_EQ(dsm.sizes(), (c10::IntArrayRef{n}));
  expect_mean(dsm, 0.5 * kD * (a * a * s * s * (tau * tau + s * s) - 2 * a * s * s + 1), "dsm");
  // (row by row: the same loss on the rows flattened, by hand)
  auto xt = (x + s * eps).flatten(1);
  auto by_hand = 0.5 * (s * a * xt - eps.flatten(1)).pow(2).sum(1);
  EXPECT_TRUE(torch::allclose(dsm, by_hand, 1e-12, 1e-12));
  // A constant reference scale r (MDSM, Li et al.): 1/2 |r g - (s / r) eps|^2.
  const double r = 0.2;
  auto mdsm = denoising_sm_loss(e, x, eps, sig, torch::full({n}, r, torch::kDouble), false).detach();
  EXPECT_TRUE(torch::allclose(mdsm, 0.5 * (r * a * xt - (s / r) * eps.flatten(1)).pow(2).sum(1), 1e-12, 1e-12));
  auto v = at::normal(0.0, 1.0, {n, 2, 1, 4, 4}, gen, torch::TensorOptions(torch::kDouble));
  auto ssm = sliced_sm_loss(e, x, v, false, false).detach();
  ASSERT_EQ(ssm.sizes(), (c10::IntArrayRef{n}));
  expect_mean(ssm, kD * (0.5 * a * a * tau * tau - a), "ssm");
  auto vr = sliced_sm_loss(e, x, v, true, false).detach();
  EXPECT_TRUE(torch::allclose(vr, 0.5 * a * a * x.flatten(1).pow(2).sum(1) - a * v.flatten(2).pow(2).sum(2).mean(1),
                              1e-10, 1e-10));
}

// The objectives on image batches: DSM's optimum is a = 1 / (tau^2 + s^2)
// (the smoothed data's precision), SSM's a = 1 / tau^2.
TEST(ScoreMatchingImages, ObjectivesReachTheSmoothedOptimum) {
  const double tau = 0.5, s = 0.4;
  auto gen = make_generator(5, kStreamTrain);
  auto x = images(4096, tau, gen).to(torch::kFloat).to(torch::kDouble);
  DenoisingScoreMatching dsm(DenoisingScoreMatchingOptions(s).spacing_floor(false));
  SlicedScoreMatching ssm(SlicedScoreMatchingOptions().projections(1));
  for (int which = 0; which < 2; ++which) {
    IsotropicImageEnergy e(1.0);
    torch::optim::Adam opt(e.parameters(), torch::optim::AdamOptions(0.05));
    for (int k = 0; k < 600; ++k) {
      opt.zero_grad();
      Batch b;
      b.x = x;
      auto out = which == 0 ? dsm.compute(e, b, gen) : ssm.compute(e, b, gen);
      out.loss.backward();
      opt.step();
    }
    const double want = which == 0 ? 1.0 / (tau * tau + s * s) : 1.0 / (tau * tau);
    // (Adam's last steps jitter log a by ~lr / 10; the batch's variance
    // estimate by ~sqrt(2 / (4096 * 16)) = 0.6%)
    EXPECT_NEAR(e.log_a.exp().item<double>(), want, 0.03 * want) << (which == 0 ? "dsm" : "ssm");
  }
}

// A float32 conv energy takes its fast first layer (one input channel) even
// under the double backward of score matching: the loss's parameter
// gradients match the same weights in float64 (plain ATen).
TEST(ScoreMatchingImages, ConvEnergyDoubleBackwardThroughTheFastLayer) {
  const std::vector<int64_t> shape{1, 8, 8};
  ConvEnergy f32(ConvEnergyOptions(shape).channels({4, 6}).kernels({3, 3}).strides({2, 2}).paddings({1, 1}).hidden({8}));
  auto x = at::rand({6, 1, 8, 8}, make_generator(6, kStreamData)).mul_(2).sub_(1);
  ASSERT_TRUE(small_input_conv_applies(x, f32->named_parameters()["conv0.weight"]));
  ConvEnergy f64(ConvEnergyOptions(shape).channels({4, 6}).kernels({3, 3}).strides({2, 2}).paddings({1, 1}).hidden({8}));
  {
    torch::NoGradGuard ng;
    f64->to(torch::kDouble);
    auto src = f32->parameters(), dst = f64->parameters();
    for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
  }
  auto gen = make_generator(7, kStreamTrain);
  auto eps = at::normal(0.0, 1.0, {6, 1, 8, 8}, gen, torch::TensorOptions(torch::kFloat));
  auto v = at::normal(0.0, 1.0, {6, 2, 1, 8, 8}, gen, torch::TensorOptions(torch::kFloat));
  auto sig = torch::full({6}, 0.3);
  auto grads = [](ConvEnergy& net, const torch::Tensor& loss) {
    std::vector<torch::Tensor> ps = net->parameters();
    return torch::autograd::grad({loss}, ps, {}, false, false, true);
  };
  for (int which = 0; which < 2; ++which) {
    auto loss = [&](ConvEnergy& net, torch::ScalarType t) {
      return which == 0 ? denoising_sm_loss(*net, x.to(t), eps.to(t), sig.to(t), sig.to(t)).mean()
                        : sliced_sm_loss(*net, x.to(t), v.to(t), false).mean();
    };
    auto g32 = grads(f32, loss(f32, torch::kFloat));
    auto g64 = grads(f64, loss(f64, torch::kDouble));
    ASSERT_EQ(g32.size(), g64.size());
    for (size_t i = 0; i < g32.size(); ++i) {
      // (the last bias moves E, not its gradient: no gradient either way)
      ASSERT_EQ(g32[i].defined(), g64[i].defined()) << which << " param " << i;
      if (!g64[i].defined()) continue;
      const double scale = 1e-6 + g64[i].abs().max().item<double>();
      EXPECT_LT((g32[i].to(torch::kDouble) - g64[i]).abs().max().item<double>(), 1e-3 * scale)
          << (which == 0 ? "dsm" : "ssm") << " param " << i;
    }
  }
}

// energy.noise_conditional = true wraps a conv or resnet network f as
// E(x, sigma) = f(x) / sigma (NCSNv2): per-row levels, E(x) at the set level,
// f's parameters under "inner."; a class-conditional one is refused.
TEST(ScoreMatchingImages, NoiseScaledEnergyDividesTheNetworkByTheLevel) {
  for (const std::string name : {"conv", "resnet"}) {
    Config c(energy_schema());
    c.set_value("energy.name", name);
    c.set_value("energy.channels", std::vector<int64_t>{4, 8});
    if (name == "conv") {
      c.set_value("energy.kernels", std::vector<int64_t>{3, 3});
      c.set_value("energy.strides", std::vector<int64_t>{2, 2});
      c.set_value("energy.paddings", std::vector<int64_t>{1, 1});
      c.set_value("energy.hidden", std::vector<int64_t>{8});
    } else {
      c.set_value("energy.blocks", std::vector<int64_t>{1, 1});
    }
    c.set_value("energy.noise_conditional", true);
    c.set_value("energy.noise_level", 0.25);
    Energy e = build_energy(c, {1, 8, 8});
    auto* nc = e->noise_conditional();
    ASSERT_NE(nc, nullptr) << name;
    EXPECT_EQ(nc->noise_level(), 0.25);
    auto* scaled = dynamic_cast<NoiseScaledEnergyImpl*>(e.get());
    ASSERT_NE(scaled, nullptr);
    for (const auto& kv : e->named_parameters()) EXPECT_EQ(kv.key().rfind("inner.", 0), 0u) << kv.key();
    auto x = at::rand({3, 1, 8, 8}, make_generator(8, kStreamData));
    torch::NoGradGuard ng;
    auto f = scaled->inner().energy(x);
    auto sigma = torch::tensor({0.1, 0.5, 2.0});
    EXPECT_TRUE(torch::allclose(nc->energy_at(x, sigma), f / sigma, 1e-6, 1e-6)) << name;
    EXPECT_TRUE(torch::allclose(e->energy(x), f / 0.25, 1e-6, 1e-6)) << name;
    c.set_value("energy.conditional", true);
    c.set_value("energy.classes", int64_t(3));
    EXPECT_THROW(build_energy(c, {1, 8, 8}), std::exception) << name;
  }
}
