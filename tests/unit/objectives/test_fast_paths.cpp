// The score-matching objectives on float MLPs with fast paths off
// (FastPathsGuard(false): the ATen forms CUDA takes, run on the CPU) against
// the same step with them on (blocked passes, fused kernels): the same loss
// and parameter gradient within float rounding.
#include <gtest/gtest.h>

#include "ebm/core/device.h"
#include "ebm/core/rng.h"
#include "ebm/objectives/score_matching.h"

using namespace ebm;

namespace {
// Loss and parameter gradients of one objective step; the generator is
// re-seeded so both runs draw the same noise and projections.
std::vector<torch::Tensor> step(Objective& objective, EnergyImpl& energy, const torch::Tensor& x) {
  auto gen = make_generator(21, kStreamTrain);
  auto loss = objective.compute(energy, {x, {}}, gen).loss;
  auto out = torch::autograd::grad({loss}, energy.parameters(), {}, false, false, true);
  out.push_back(loss.detach());
  return out;
}

void expect_same_step(Objective& objective, EnergyImpl& energy, const torch::Tensor& x,
                      const std::string& what) {
  auto fast = step(objective, energy, x);
  std::vector<torch::Tensor> aten;
  {
    FastPathsGuard off(false);
    aten = step(objective, energy, x);
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

TEST(ScoreMatchingFastPaths, ObjectivesMatchTheAtenFormWithFastPathsOff) {
  auto gen = make_generator(20, kStreamInit);
  MLPEnergy mlp(MLPEnergyOptions(2, {32, 32}).prior_std(3.0));
  NoiseConditionalMLP ncm(NoiseConditionalMLPOptions(2, {32, 32}));
  reset_parameters(*mlp, gen);
  reset_parameters(*ncm, gen);
  mlp->eval();  // (no power-iteration step between the runs)
  ncm->eval();
  auto x = at::normal(0.0, 1.0, {96, 2}, gen, torch::kFloat);
  DenoisingScoreMatching dsm(DenoisingScoreMatchingOptions(0.1));
  SlicedScoreMatching ssm(SlicedScoreMatchingOptions().projections(2));
  SlicedScoreMatching ssm_vr(SlicedScoreMatchingOptions().variance_reduced(true));
  ExactScoreMatching esm(ExactScoreMatchingOptions(2));
  MultiscaleScoreMatching li(MultiscaleScoreMatchingOptions().form("li"));
  MultiscaleScoreMatching ncsn(MultiscaleScoreMatchingOptions().form("ncsn"));
  expect_same_step(dsm, *mlp, x, "dsm");
  expect_same_step(ssm, *mlp, x, "ssm");
  expect_same_step(ssm_vr, *mlp, x, "ssm_vr");
  expect_same_step(esm, *mlp, x, "esm");
  expect_same_step(li, *mlp, x, "msm li");
  expect_same_step(ncsn, *ncm, x, "msm ncsn");
}
