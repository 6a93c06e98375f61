// The MLP energy with fast paths off (FastPathsGuard(false): the ATen and
// autograd forms CUDA takes, run here on the CPU) against its hand-written
// CPU kernels: the same gradient, energy, score terms and parameter
// gradients within float rounding, and no blocked loss.
#include <gtest/gtest.h>

#include "ebm/core/device.h"
#include "ebm/core/rng.h"
#include "ebm/core/simd.h"
#include "ebm/energy/energy.h"

using namespace ebm;

namespace {
struct Case {
  int64_t d;
  std::vector<int64_t> hidden;
  std::string act;
  torch::ScalarType dtype;
  bool sn;
};

// Relative agreement: |a - b| <= tol (|b|_max + 1).
void expect_close(const torch::Tensor& a, const torch::Tensor& b, double tol, const std::string& what) {
  ASSERT_TRUE(a.defined() && b.defined()) << what;
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const double scale = b.abs().max().item<double>() + 1.0;
  EXPECT_LE((a - b).abs().max().item<double>(), tol * scale) << what;
}

MLPEnergy make_net(const Case& c, at::Generator& gen) {
  MLPEnergy net(MLPEnergyOptions(c.d, c.hidden).activation(c.act).spectral_norm(c.sn).prior_std(2.0));
  reset_parameters(*net, gen);
  net->to(c.dtype);
  net->eval();  // (no power-iteration step between the two evaluations)
  return net;
}

std::vector<torch::Tensor> param_grads(MLPEnergyImpl& net, const torch::Tensor& y) {
  return torch::autograd::grad({y}, net.parameters(), {}, false, false, /*allow_unused=*/true);
}

// Fast paths on, then off, of f (which returns the tensors to compare).
template <class F>
std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>> both(F&& f) {
  auto fast = f();
  FastPathsGuard off(false);
  return {fast, f()};
}

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {2, {32, 32}, "swish", torch::kFloat, false},  // the blocked sweep (AVX-512)
      {3, {16, 8}, "swish", torch::kFloat, true},    // small input, fused swish
      {6, {24}, "softplus", torch::kFloat, false},   // a GEMM first layer
      {3, {16, 8}, "elu", torch::kDouble, true},
  };
  return c;
}

std::string name(const Case& c) {
  return c.act + " d" + std::to_string(c.d) + (c.dtype == torch::kFloat ? " float" : " double");
}
}  // namespace

TEST(FastPaths, MlpGradAndEnergyMatchTheAtenForm) {
  for (const auto& c : cases()) {
    auto gen = make_generator(11, kStreamInit);
    auto net = make_net(c, gen);
    auto x = at::normal(0.0, 1.5, {70, c.d}, gen, torch::kDouble).to(c.dtype);
    const double tol = c.dtype == torch::kFloat ? 2e-5 : 1e-10;
    auto [fast, aten] = both([&] {
      auto [e, g] = net->energy_and_grad(x);
      return std::vector<torch::Tensor>{net->grad(x).clone(), e.clone(), g.clone()};
    });
    expect_close(fast[0], aten[0], tol, name(c) + " grad");
    expect_close(fast[1], aten[1], tol, name(c) + " energy");
    expect_close(fast[2], aten[2], tol, name(c) + " energy_and_grad");
    // E(x) with a graph over the parameters (the hand-written parameter
    // gradient against autograd's).
    auto [fast_p, aten_p] = both([&] {
      auto e = net->energy(x);
      auto gs = param_grads(*net, e.sum());
      gs.push_back(e.detach());
      return gs;
    });
    for (size_t i = 0; i < fast_p.size(); ++i)
      expect_close(fast_p[i], aten_p[i], tol, name(c) + " energy parameter grad " + std::to_string(i));
  }
}

TEST(FastPaths, MlpScoreTermsMatchTheAtenForm) {
  for (const auto& c : cases()) {
    auto gen = make_generator(12, kStreamInit);
    auto net = make_net(c, gen);
    auto x = at::normal(0.0, 1.5, {70, c.d}, gen, torch::kDouble).to(c.dtype);
    auto v = at::normal(0.0, 1.0, {70, c.d}, gen, torch::kDouble).to(c.dtype);
    auto a = at::normal(0.0, 1.0, {70, c.d}, gen, torch::kDouble).to(c.dtype);
    auto w = at::normal(0.0, 1.0, {70}, gen, torch::kDouble).to(c.dtype);
    const double tol = c.dtype == torch::kFloat ? 1e-4 : 1e-10;
    for (bool second : {false, true}) {
      auto [fast, aten] = both([&] {
        auto [g, q] = net->score_terms(x, second ? v : torch::Tensor());
        auto y = (g * a).sum() + (second ? (q * w).sum() : torch::zeros({}, x.options()));
        auto out = param_grads(*net, y);
        out.push_back(g.detach());
        if (second) out.push_back(q.detach());
        return out;
      });
      for (size_t i = 0; i < fast.size(); ++i)
        expect_close(fast[i], aten[i], tol,
                     name(c) + (second ? " g, q" : " g") + " output " + std::to_string(i));
    }
  }
}

TEST(FastPaths, BlockedLossesAreOffWithFastPathsOff) {
  auto gen = make_generator(13, kStreamInit);
  MLPEnergy net(MLPEnergyOptions(2, {32, 32}));
  reset_parameters(*net, gen);
  auto x = torch::randn({64, 2}), eps = torch::randn({64, 2});
  auto sig = torch::full({64}, 0.3f);
  // (whether they are on with fast paths depends on the CPU: AVX-512)
  EXPECT_EQ(net->denoising_loss(x, eps, sig, sig).defined(), cpu_has_avx512());
  EXPECT_EQ(net->sliced_loss(x, eps).defined(), cpu_has_avx512());
  FastPathsGuard off(false);
  EXPECT_FALSE(net->denoising_loss(x, eps, sig, sig).defined());
  EXPECT_FALSE(net->sliced_loss(x, eps).defined());
}

TEST(FastPaths, EnergiesOfferNoHooksByDefault) {
  GaussianEnergyImpl g(torch::zeros({2}), torch::eye(2));
  auto x = torch::randn({4, 2});
  EXPECT_EQ(g.noise_conditional(), nullptr);
  EXPECT_FALSE(g.score_terms(x, x, {}).first.defined());
  EXPECT_FALSE(g.denoising_loss(x, x, x.select(1, 0), x.select(1, 0)).defined());
  EXPECT_FALSE(g.sliced_loss(x, x).defined());
  NoiseConditionalMLP nc(NoiseConditionalMLPOptions(2, {8}));
  EXPECT_EQ(nc->noise_conditional(), nc.get());
  MLPEnergy mlp(MLPEnergyOptions(2, {8}));
  EXPECT_EQ(mlp->noise_conditional(), nullptr);
}
