// sampler.adapt: contrastive divergence scales its sampler's step after each
// iteration toward the target acceptance, so a step tuned for one scale and
// dimension does not leave the chains standing still in another; the step
// rides in checkpoints. The energy here is N(0, I) in 20 dimensions, where
// MALA's 0.57 acceptance sits near eps = 0.5 (h = 2 eps ~ 1.65^2 d^(-1/3)).
#include <gtest/gtest.h>

#include "ebm/core/rng.h"
#include "ebm/energy/energy.h"
#include "ebm/objectives/objective.h"
#include "ebm/sampling/sampling.h"

using namespace ebm;

namespace {
constexpr int64_t kDim = 20;

std::shared_ptr<ContrastiveDivergence> make_cd(bool adapt, double step) {
  return std::make_shared<ContrastiveDivergence>(
      ContrastiveDivergenceOptions(5).adapt_step(adapt), std::make_shared<MALASampler>(MALAOptions(step)),
      std::make_shared<ReplayBuffer>(ReplayBufferOptions(256).reinit_prob(0).init("gaussian"),
                                     std::vector<int64_t>{kDim}));
}

// Runs `iters` iterations; returns the mean acceptance of the last `tail`.
double run(ContrastiveDivergence& cd, EnergyImpl& energy, int64_t iters, int64_t tail, at::Generator& gen) {
  double acc = 0;
  for (int64_t i = 0; i < iters; ++i) {
    Batch b{at::normal(0.0, 1.0, {64, kDim}, gen, torch::TensorOptions(torch::kFloat)), {}};
    auto out = cd.compute(energy, b, gen);
    if (i >= iters - tail) acc += out.metrics.at("accept_rate") / double(tail);
  }
  return acc;
}
}  // namespace

TEST(ContrastiveDivergence, AdaptsTheStepTowardTheTargetAcceptance) {
  auto energy = std::make_shared<GaussianEnergyImpl>(torch::zeros({kDim}), torch::eye(kDim));
  auto gen = make_generator(21, kStreamTrain);
  auto fixed = make_cd(false, 0.01);
  const double acc_fixed = run(*fixed, *energy, 50, 50, gen);
  EXPECT_EQ(fixed->sampler().step_size(), 0.01);
  EXPECT_EQ(fixed->adapted_step(), 0.0);
  EXPECT_GT(acc_fixed, 0.95) << "a step of 0.01 is far too small in 20 dimensions";

  auto cd = make_cd(true, 0.01);
  // From 0.01 the step grows by exp(0.05 (1 - 0.57)) ~ 2.2% an iteration: it
  // reaches ~0.5 after ~200 iterations, then hovers.
  const double acc = run(*cd, *energy, 600, 200, gen);
  // The acceptance of 200 x 64 chains x 5 transitions has a standard error
  // near 0.01; the step's own wandering adds about as much: 0.05 is ~3.5 sd.
  EXPECT_NEAR(acc, 0.57, 0.05);
  EXPECT_GT(cd->sampler().step_size(), 0.2);
  EXPECT_LT(cd->sampler().step_size(), 1.5);
  EXPECT_EQ(cd->adapted_step(), cd->sampler().step_size());

  // The adapted step is part of the objective's checkpoint.
  torch::serialize::OutputArchive out;
  cd->save(out);
  std::ostringstream os;
  out.save_to(os);
  std::istringstream is(os.str());
  torch::serialize::InputArchive in;
  in.load_from(is);
  auto resumed = make_cd(true, 0.01);
  resumed->load(in);
  EXPECT_EQ(resumed->sampler().step_size(), cd->sampler().step_size());
}
