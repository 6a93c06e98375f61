// SpectralNorm on its own: a convolution's weight normalised to spectral norm
// 1 (checked against the singular values in float64), u kept as a buffer of
// the owning module, and the MLP's buffer names as saved models have them.
#include <gtest/gtest.h>

#include "ebm/core/rng.h"
#include "ebm/energy/conv.h"
#include "ebm/energy/energy.h"
#include "ebm/energy/resnet.h"
#include "ebm/energy/spectral_norm.h"

using namespace ebm;

namespace {
// The largest singular value of w seen as [out, -1], in float64.
double sigma_max(const torch::Tensor& w) {
  return torch::linalg_svdvals(w.detach().to(torch::kDouble).reshape({w.size(0), -1}))[0]
      .item<double>();
}
}  // namespace

TEST(SpectralNorm, ConvWeightHasUnitSpectralNormAfterPowerIteration) {
  auto gen = make_generator(3, kStreamInit);
  torch::nn::Module owner;
  auto w = owner.register_parameter("weight", at::normal(0.0, 0.5, {8, 3, 3, 3}, gen));
  SpectralNorm sn(owner, "u0", 8);
  // sigma's error shrinks as (s2 / s1)^(2 k) after k steps: 200 are plenty
  // for a random 8 x 27 matrix.
  for (int k = 0; k < 200; ++k) sn.normalise(w, /*update=*/true);
  auto wn = sn.normalise(w, /*update=*/false);
  ASSERT_EQ(wn.sizes(), w.sizes());
  EXPECT_NEAR(sigma_max(wn), 1.0, 1e-4);
  // The estimate sigma = u^T W v is the float64 top singular value.
  EXPECT_NEAR((w / wn).flatten()[0].item<double>(), sigma_max(w), 1e-4 * sigma_max(w));
  // Without an update u is left as it is: the same weight twice.
  EXPECT_TRUE(torch::equal(sn.normalise(w, false), wn));
  // Differentiable w.r.t. W.
  auto g = torch::autograd::grad({sn.normalise(w, false).pow(2).sum()}, {w})[0];
  EXPECT_EQ(g.sizes(), w.sizes());
  EXPECT_TRUE(g.isfinite().all().item<bool>());
}

TEST(SpectralNorm, LinearWeightMatchesSvdAndUIsTheOwnersBuffer) {
  auto gen = make_generator(4, kStreamInit);
  torch::nn::Module owner;
  auto w = owner.register_parameter("weight", at::normal(0.0, 1.0, {5, 7}, gen));
  SpectralNorm sn(owner, "u", 5);
  for (int k = 0; k < 200; ++k) sn.normalise(w, true);
  EXPECT_NEAR(sigma_max(sn.normalise(w, false)), 1.0, 1e-4);
  // Saved, loaded and moved with the owner: the owner's buffer is u itself.
  auto* buf = owner.named_buffers().find("u");
  ASSERT_NE(buf, nullptr);
  EXPECT_TRUE(buf->is_same(sn.u()));
  owner.to(torch::kDouble);
  EXPECT_EQ(sn.u().scalar_type(), torch::kDouble);
  EXPECT_NEAR(sigma_max(sn.normalise(owner.named_parameters()["weight"], false)), 1.0, 1e-4);
}

TEST(SpectralNorm, MlpBufferNamesAreThoseOfSavedModels) {
  MLPEnergy mlp(MLPEnergyOptions(2, {16, 8}).spectral_norm(true));
  std::vector<std::string> names;
  for (const auto& kv : mlp->named_buffers()) names.push_back(kv.key());
  EXPECT_EQ(names, (std::vector<std::string>{"u0", "u1", "u2"}));
  NoiseConditionalMLP nc(NoiseConditionalMLPOptions(2, {16}).spectral_norm(true));
  names.clear();
  for (const auto& kv : nc->named_buffers()) names.push_back(kv.key());
  EXPECT_EQ(names, (std::vector<std::string>{"f.u0", "f.u1"}));
  EXPECT_TRUE(MLPEnergy(MLPEnergyOptions(2, {16}))->named_buffers().is_empty());
}

namespace {
// For every (weight, u) pair of a network, the largest singular value of
// W / sigma with sigma = u^T W v, v = W^T u / |W^T u| (= |W^T u|): the
// weight the network uses.
void expect_unit_spectral_norms(torch::nn::Module& net, const std::vector<std::pair<std::string, std::string>>& pairs,
                                double tol, const std::string& tag) {
  auto params = net.named_parameters();
  auto buffers = net.named_buffers();
  for (const auto& [w_name, u_name] : pairs) {
    ASSERT_NE(params.find(w_name), nullptr) << tag << " " << w_name;
    ASSERT_NE(buffers.find(u_name), nullptr) << tag << " " << u_name;
    auto w = params[w_name].detach().to(torch::kDouble);
    auto u = buffers[u_name].detach().to(torch::kDouble);
    const double sigma = torch::mv(w.reshape({w.size(0), -1}).t(), u).norm().item<double>();
    EXPECT_NEAR(sigma_max(w / sigma), 1.0, tol) << tag << " " << w_name << " (" << w.sizes() << ")";
  }
}
}  // namespace

// The conv energy's weights as used after 50 training forwards (one power
// iteration each): spectral norm 1 to 1e-2 for its [16, 3, 3, 3] conv
// weight and its dense weights; eval mode and frozen parameters (sampling)
// leave u as it is.
TEST(SpectralNorm, ConvEnergyWeightsHaveUnitSpectralNormAfterTraining) {
  ConvEnergy net(ConvEnergyOptions({3, 8, 8})
                     .channels({16, 8})
                     .kernels({3, 3})
                     .strides({2, 2})
                     .paddings({1, 1})
                     .hidden({12})
                     .spectral_norm(true));
  auto gen = make_generator(5, kStreamInit);
  reset_parameters(*net, gen);
  const std::vector<std::pair<std::string, std::string>> pairs{{"conv0.weight", "u_conv0"},
                                                               {"conv1.weight", "u_conv1"},
                                                               {"dense0.weight", "u_dense0"},
                                                               {"dense1.weight", "u_dense1"}};
  auto x = at::rand({4, 3, 8, 8}, gen) * 2 - 1;
  net->train();
  for (int k = 0; k < 50; ++k) net->energy(x);
  expect_unit_spectral_norms(*net, pairs, 1e-2, "conv");
  auto u0 = net->named_buffers()["u_conv0"].clone();
  net->eval();
  net->energy(x);
  EXPECT_TRUE(torch::equal(net->named_buffers()["u_conv0"], u0));
  net->train();
  // (what sampling's FreezeParameters does)
  for (auto& p : net->parameters()) p.requires_grad_(false);
  net->energy(x);
  net->grad(x);
  for (auto& p : net->parameters()) p.requires_grad_(true);
  EXPECT_TRUE(torch::equal(net->named_buffers()["u_conv0"], u0));
  {
    torch::NoGradGuard ng;
    net->energy(x);
  }
  EXPECT_TRUE(torch::equal(net->named_buffers()["u_conv0"], u0));
  net->energy(x);  // a training forward: one more step
  EXPECT_FALSE(torch::equal(net->named_buffers()["u_conv0"], u0));

  // The energy is the unnormalised network's with every weight divided by its
  // sigma (float64, eval mode).
  net->to(torch::kDouble);
  net->eval();
  ConvEnergy plain(ConvEnergyOptions(net->options()).spectral_norm(false));
  plain->to(torch::kDouble);
  plain->eval();
  {
    torch::NoGradGuard ng;
    auto dst = plain->named_parameters();
    auto bufs = net->named_buffers();
    for (const auto& kv : net->named_parameters()) {
      auto v = kv.value().detach();
      for (const auto& [w_name, u_name] : pairs)
        if (kv.key() == w_name) v = v / torch::mv(v.reshape({v.size(0), -1}).t(), bufs[u_name]).norm();
      dst[kv.key()].copy_(v);
    }
    auto xd = x.to(torch::kDouble);
    EXPECT_TRUE(torch::allclose(net->energy(xd), plain->energy(xd), 1e-10, 1e-12));
  }
}

TEST(SpectralNorm, ResNetEnergyWeightsHaveUnitSpectralNormAfterTraining) {
  ResNetEnergy net(ResNetEnergyOptions({3, 8, 8}).channels({16, 8}).blocks({1, 1}).classes(4));
  auto gen = make_generator(6, kStreamInit);
  reset_parameters(*net, gen);
  auto x = at::rand({4, 3, 8, 8}, gen) * 2 - 1;
  net->train();
  for (int k = 0; k < 50; ++k) net->energy(x);
  expect_unit_spectral_norms(*net,
                             {{"stem.weight", "u_stem"},  // [16, 3, 3, 3]
                              {"s0b0c1.weight", "u_s0b0c1"},
                              {"s1b0c1.weight", "u_s1b0c1"},
                              {"s1b0skip.weight", "u_s1b0skip"},
                              {"head.weight", "u_head"}},  // a linear [4, 8]
                             1e-2, "resnet");
  EXPECT_EQ(net->named_parameters()["stem.weight"].sizes(), (c10::IntArrayRef{16, 3, 3, 3}));
}

// SpectralNorm on a Linear's weight, updated 100 times.
TEST(SpectralNorm, LinearModuleWeightAfterHundredUpdates) {
  auto gen = make_generator(7, kStreamInit);
  torch::nn::Linear lin(24, 10);
  reset_parameters(*lin, gen);
  SpectralNorm sn(*lin, "u", 10);
  for (int k = 0; k < 100; ++k) sn.normalise(lin->weight, true);
  EXPECT_NEAR(sigma_max(sn.normalise(lin->weight, false)), 1.0, 1e-2);
}
