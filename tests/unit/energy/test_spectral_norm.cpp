// SpectralNorm on its own: a convolution's weight normalised to spectral norm
// 1 (checked against the singular values in float64), u kept as a buffer of
// the owning module, and the MLP's buffer names as saved models have them.
#include <gtest/gtest.h>

#include "ebm/core/rng.h"
#include "ebm/energy/energy.h"
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
