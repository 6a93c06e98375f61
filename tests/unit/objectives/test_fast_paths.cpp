// The score-matching objectives on float MLPs with fast paths off
// (FastPathsGuard(false): the ATen forms CUDA takes, run on the CPU) against
// the same step with them on (blocked passes, fused kernels): the same loss
// and parameter gradient within float rounding.
#include <gtest/gtest.h>

#include <functional>

#include "ebm/core/device.h"
#include "ebm/core/rng.h"
#include "ebm/objectives/score_matching.h"

using namespace ebm;

namespace {
// Loss and parameter gradients of a loss function of the energy. The noise is
// the caller's: with fast paths off the generator's draws go through ATen's
// normal_ (as on CUDA), so the objectives' own draws would differ.
std::vector<torch::Tensor> step(const std::function<torch::Tensor()>& loss_fn, EnergyImpl& energy) {
  auto loss = loss_fn();
  auto out = torch::autograd::grad({loss}, energy.parameters(), {}, false, false, true);
  out.push_back(loss.detach());
  return out;
}

void expect_same_step(const std::function<torch::Tensor()>& loss_fn, EnergyImpl& energy,
                      const std::string& what) {
  auto fast = step(loss_fn, energy);
  std::vector<torch::Tensor> aten;
  {
    FastPathsGuard off(false);
    aten = step(loss_fn, energy);
  }
  ASSERT_EQ(fast.size(), aten.size());
  for (size_t i = 0; i < fast.size(); ++i) {
    ASSERT_TRUE(fast[i].defined() && aten[i].defined()) << what << " " << i;
    // float rounding: 1e-4 of the largest entry
    const double scale = aten[i].abs().max().item<double>() + 1e-6;
    EXPECT_LE((fast[i] - aten[i]).abs().max().item<double>(), 1e-4 * scale)
        << what << (i + 1 == fast.size() ? " loss" : " parameter " + std::to_string(i));
  }
}
}  // namespace

// Each objective's loss as the objective forms it (blocked passes through the
// energy's hooks where they apply, the hand-derived score terms elsewhere),
// with fast paths on and off.
TEST(ScoreMatchingFastPaths, ObjectivesMatchTheAtenFormWithFastPathsOff) {
  auto gen = make_generator(20, kStreamInit);
  MLPEnergy mlp(MLPEnergyOptions(2, {32, 32}).prior_std(3.0));
  NoiseConditionalMLP ncm(NoiseConditionalMLPOptions(2, {32, 32}));
  reset_parameters(*mlp, gen);
  reset_parameters(*ncm, gen);
  mlp->eval();  // (no power-iteration step between the runs)
  ncm->eval();
  const int64_t b = 96;
  auto x = at::normal(0.0, 1.0, {b, 2}, gen, torch::kFloat);
  auto eps = at::normal(0.0, 1.0, {b, 2}, gen, torch::kFloat);
  auto v = at::normal(0.0, 1.0, {b, 2, 2}, gen, torch::kFloat);
  auto sigma = at::rand({b}, gen, torch::kFloat).mul_(0.9).add_(0.1);
  auto ref = torch::full({b}, 0.1f);
  // dsm and mdsm's li form: the blocked pass (fast) against the general form.
  expect_same_step([&] {
    auto l = mlp->denoising_loss(x, eps, sigma, ref);
    return l.defined() ? l : denoising_sm_loss(*mlp, x, eps, sigma, ref).mean();
  }, *mlp, "dsm");
  // ssm: the blocked sliced pass over B M rows, and the variance-reduced form.
  expect_same_step([&] {
    auto l = mlp->sliced_loss(x.unsqueeze(1).expand({b, 2, 2}).reshape({2 * b, 2}), v.reshape({2 * b, 2}));
    return l.defined() ? l : sliced_sm_loss(*mlp, x, v, false).mean();
  }, *mlp, "ssm");
  expect_same_step([&] { return sliced_sm_loss(*mlp, x, v, true).mean(); }, *mlp, "ssm_vr");
  expect_same_step([&] { return exact_sm_loss(*mlp, x).mean(); }, *mlp, "esm");
  // mdsm's ncsn form on a noise-conditional energy (the score terms' kernels).
  expect_same_step([&] { return denoising_sm_loss(*ncm, x, eps, sigma, sigma).mean(); }, *ncm, "msm ncsn");
}
