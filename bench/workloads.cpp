#include "workloads.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>

#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/data/data.h"
#include "ebm/energy/conv.h"
#include "ebm/energy/energy.h"
#include "ebm/energy/generator.h"
#include "ebm/energy/resnet.h"
#include "ebm/objectives/learned.h"
#include "ebm/objectives/score_matching.h"
#include "ebm/train/step.h"
#include "ebm/sampling/sampling.h"

namespace ebm::bench {

std::string Result::json() const {
  nlohmann::ordered_json j = {{"workload", workload}, {"rate", rate},       {"unit", unit},
                      {"threads", threads},   {"seconds", seconds}};
  return j.dump();
}

const std::vector<std::string>& workload_names() {
  static const std::vector<std::string> names = {"langevin-mlp", "langevin-mlp-64d", "pcd-mlp-2d",
                                                 "dsm-mlp-2d",   "ssm-mlp-2d",       "hmc-gauss-100d",
                                                 "igebm-fmnist", "resnet-fmnist",
                                                 // (learned samplers against PCD: negatives alone, and whole steps)
                                                 "negatives-pcd-fmnist", "negatives-generator-fmnist",
                                                 "vera-fmnist", "vera-mlp-2d"};
  return names;
}

namespace {
struct Workload {
  std::function<void()> step;
  double units_per_step;
  std::string unit;
};

std::shared_ptr<MLPEnergyImpl> swish_mlp(int64_t in, std::vector<int64_t> hidden, at::Generator& gen) {
  MLPEnergy net(MLPEnergyOptions(in, std::move(hidden)).activation("swish"));
  reset_parameters(*net, gen);
  return net.ptr();
}

Workload langevin(int64_t dim, int64_t width, uint64_t seed) {
  auto gen = std::make_shared<at::Generator>(make_generator(seed, kStreamSample));
  auto net = swish_mlp(dim, {width, width}, *gen);
  for (auto& p : net->parameters()) p.requires_grad_(false);
  const int64_t chains = 1024;
  auto state = std::make_shared<ChainState>(at::normal(0.0, 1.0, {chains, dim}, *gen, torch::kFloat));
  auto sampler = std::make_shared<LangevinSampler>(LangevinOptions(0.01).noise(0.005));
  return {[=] { sampler->step(*net, *state, *gen); }, double(chains), "chain-steps/s"};
}

// One training step of `objective` through train_step (the Trainer's own
// step), batches drawn fresh from 8 gaussians as the peer does, no
// divergence guard (the peer has none).
Workload training(std::shared_ptr<Objective> objective, int64_t batch, double lr, double beta1,
                  uint64_t seed, Energy net = nullptr,
                  std::function<Batch(int64_t, at::Generator&)> draw = nullptr) {
  auto parts = std::make_shared<TrainParts>();
  parts->gen = make_generator(seed, kStreamTrain);
  if (net) {
    reset_parameters(*net, parts->gen);
    parts->energy = net;
  } else {
    parts->energy = swish_mlp(2, {128, 128}, parts->gen);
  }
  parts->objective = std::move(objective);
  Learner l;
  l.name = "energy";
  l.module = parts->energy;
  l.optimizer = std::make_unique<FusedAdam>(parts->energy->parameters(),
                                            torch::optim::AdamOptions(lr).betas({beta1, 0.999}));
  parts->learners.push_back(std::move(l));
  for (auto& m : parts->objective->learned_modules()) {  // (a generator, ...: Adam at the same rate)
    reset_parameters(*m.module, parts->gen);
    Learner e;
    e.name = m.name;
    e.module = m.module;
    e.optimizer = std::make_unique<FusedAdam>(m.module->parameters(),
                                              torch::optim::AdamOptions(m.lr > 0 ? m.lr : lr).betas({beta1, 0.999}));
    parts->learners.push_back(std::move(e));
  }
  // (the workloads draw their own batches: the parts' data rows are unused)
  if (!draw) draw = [](int64_t n, at::Generator& gen) { return Batch{toy2d("8gaussians", n, gen), {}}; };
  parts->draw = [draw](const Dataset&, int64_t n, at::Generator& gen) { return draw(n, gen); };
  const auto options = StepOptions(batch).check_weights(false);
  return {[=] { train_step(*parts, options); }, 1.0, "iterations/s"};
}

// Persistent CD on 8 gaussians, as BENCHMARKS.md states it.
Workload pcd_2d(uint64_t seed) {
  auto buffer = std::make_shared<ReplayBuffer>(
      ReplayBufferOptions(10000).reinit_prob(0.05).init("uniform").low(-4).high(4),
      std::vector<int64_t>{2});
  auto sampler = std::make_shared<LangevinSampler>(LangevinOptions(0.01).noise(0.005));
  auto cd = std::make_shared<ContrastiveDivergence>(ContrastiveDivergenceOptions(20).alpha(0.1),
                                                    sampler, buffer);
  return training(cd, 256, 1e-4, 0.0, seed);
}

// PCD on 28x28 images in [-1, 1] (IGEBM's recipe, BENCHMARKS.md): 60
// Langevin steps of eta 10, noise 0.005, gradients clamped to +-0.03 and
// samples to [-1, 1], a buffer of 8192 from uniform noise, batch 128 rows of
// 8192 random images standing in for Fashion-MNIST (as the peer's).
Workload pcd_images(Energy net, uint64_t seed) {
  auto buffer = std::make_shared<ReplayBuffer>(
      ReplayBufferOptions(8192).reinit_prob(0.05).init("uniform").low(-1).high(1), std::vector<int64_t>{1, 28, 28});
  auto sampler = std::make_shared<LangevinSampler>(
      LangevinOptions(10.0).noise(0.005).grad_clip(0.03).clamp_min(-1).clamp_max(1));
  auto cd = std::make_shared<ContrastiveDivergence>(ContrastiveDivergenceOptions(60).alpha(0.1), sampler, buffer);
  auto data_gen = make_generator(seed, kStreamData);
  Dataset images{at::empty({8192, 1, 28, 28}).uniform_(-1, 1, data_gen), {}, "uniform noise"};
  return training(cd, 128, 1e-4, 0.0, seed, std::move(net),
                  [images](int64_t n, at::Generator& gen) { return draw_batch(images, n, gen); });
}

// The negatives of one PCD iteration alone, as igebm-fmnist draws them: 128
// chains from the buffer, 60 Langevin steps on the conv energy (frozen).
Workload negatives_pcd_images(uint64_t seed) {
  auto gen = std::make_shared<at::Generator>(make_generator(seed, kStreamSample));
  Energy net = ConvEnergy(ConvEnergyOptions({1, 28, 28})).ptr();
  reset_parameters(*net, *gen);
  for (auto& p : net->parameters()) p.requires_grad_(false);
  auto buffer = std::make_shared<ReplayBuffer>(
      ReplayBufferOptions(8192).reinit_prob(0.05).init("uniform").low(-1).high(1), std::vector<int64_t>{1, 28, 28});
  auto sampler = std::make_shared<LangevinSampler>(
      LangevinOptions(10.0).noise(0.005).grad_clip(0.03).clamp_min(-1).clamp_max(1));
  return {[=] {
            auto [x0, slots] = buffer->sample(128, *gen);
            ChainState chains(x0);
            sampler->run(*net, chains, 60, *gen);
            buffer->push(chains.x, slots);
          },
          1.0, "negative-batches/s"};
}

// The same batch of negatives from a learned sampler: one pass of the deconv
// generator (z of 64 dimensions, default widths) plus its noise.
Workload negatives_generator_images(uint64_t seed) {
  auto gen = std::make_shared<at::Generator>(make_generator(seed, kStreamSample));
  auto g = std::make_shared<DeconvGeneratorImpl>(GeneratorOptions({1, 28, 28}).latent_dim(64));
  reset_parameters(*g, *gen);
  return {[=] {
            torch::NoGradGuard ng;
            auto mu = g->mean(g->latent(128, *gen));
            auto x = mu + g->sigma() * at::normal(0.0, 1.0, mu.sizes(), *gen, mu.options());
          },
          1.0, "negative-batches/s"};
}

// A whole VERA iteration (energy, generator and posterior updates) with 20
// posterior samples: on the igebm-fmnist conv energy and batch beside the
// deconv generator, and on pcd-mlp-2d's MLP beside an MLP generator.
Workload vera_images(uint64_t seed) {
  auto g = std::make_shared<DeconvGeneratorImpl>(GeneratorOptions({1, 28, 28}).latent_dim(64));
  auto data_gen = make_generator(seed, kStreamData);
  Dataset images{at::empty({8192, 1, 28, 28}).uniform_(-1, 1, data_gen), {}, "uniform noise"};
  return training(std::make_shared<Vera>(VeraOptions().alpha(0.1), g), 128, 1e-4, 0.0, seed,
                  ConvEnergy(ConvEnergyOptions({1, 28, 28})).ptr(),
                  [images](int64_t n, at::Generator& gen) { return draw_batch(images, n, gen); });
}
Workload vera_2d(uint64_t seed) {
  auto g = std::make_shared<MLPGeneratorImpl>(GeneratorOptions({2}).latent_dim(8));
  return training(std::make_shared<Vera>(VeraOptions().alpha(0.1), g), 256, 1e-4, 0.0, seed);
}

// HMC on a 100-d Gaussian, condition number 100 (variances log-spaced
// 0.01 .. 1), 10 leapfrog steps of 0.05, Metropolis correction, 256 chains.
Workload hmc_gauss_100d(uint64_t seed) {
  auto gen = std::make_shared<at::Generator>(make_generator(seed, kStreamSample));
  auto target = make_target("gaussian:dim=100,cond=100");
  auto state = std::make_shared<ChainState>(at::normal(0.0, 1.0, {256, 100}, *gen, torch::kFloat));
  auto sampler = std::make_shared<HMCSampler>(HMCOptions(0.05).n_leapfrog(10));
  return {[=] { sampler->step(*target, *state, *gen); }, 256.0, "chain-steps/s"};
}

// One score matching training step on 8 gaussians, batch 1024, Adam lr 1e-3
// (default betas): dsm-mlp-2d (sigma = 0.1) and ssm-mlp-2d (one Gaussian
// projection).
Workload score_matching_2d(std::shared_ptr<Objective> objective, uint64_t seed) {
  return training(std::move(objective), 1024, 1e-3, 0.9, seed);
}
}  // namespace

Result run_workload(const std::string& name, double seconds, int threads, uint64_t seed) {
  torch::set_num_threads(threads);
  Workload w;
  if (name == "langevin-mlp") {
    w = langevin(2, 128, seed);
  } else if (name == "langevin-mlp-64d") {
    w = langevin(64, 256, seed);
  } else if (name == "pcd-mlp-2d") {
    w = pcd_2d(seed);
  } else if (name == "dsm-mlp-2d") {
    w = score_matching_2d(std::make_shared<DenoisingScoreMatching>(DenoisingScoreMatchingOptions(0.1)), seed);
  } else if (name == "hmc-gauss-100d") {
    w = hmc_gauss_100d(seed);
  } else if (name == "igebm-fmnist") {
    w = pcd_images(ConvEnergy(ConvEnergyOptions({1, 28, 28})).ptr(), seed);
  } else if (name == "resnet-fmnist") {
    w = pcd_images(ResNetEnergy(ResNetEnergyOptions({1, 28, 28})).ptr(), seed);
  } else if (name == "negatives-pcd-fmnist") {
    w = negatives_pcd_images(seed);
  } else if (name == "negatives-generator-fmnist") {
    w = negatives_generator_images(seed);
  } else if (name == "vera-fmnist") {
    w = vera_images(seed);
  } else if (name == "vera-mlp-2d") {
    w = vera_2d(seed);
  } else if (name == "ssm-mlp-2d") {
    w = score_matching_2d(std::make_shared<SlicedScoreMatching>(SlicedScoreMatchingOptions()), seed);
  } else {
    std::string known;
    for (const auto& n : workload_names()) known += (known.empty() ? "" : ", ") + n;
    fail(ExitCode::kUsage, "--workload ", name, ": unknown (known: ", known, ")");
  }
  for (int i = 0; i < 5; ++i) w.step();
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  int64_t iters = 0;
  double elapsed = 0;
  do {
    w.step();
    ++iters;
    elapsed = std::chrono::duration<double>(clock::now() - t0).count();
  } while (elapsed < seconds);
  Result r;
  r.workload = name;
  r.unit = w.unit;
  r.rate = iters * w.units_per_step / elapsed;
  r.seconds = elapsed;
  r.threads = threads;
  return r;
}

}  // namespace ebm::bench
