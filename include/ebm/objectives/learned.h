// Learned samplers (DESIGN.md "Objective"): a generator q(x) = g(z) trained
// beside the energy gives the negatives in one forward pass instead of a
// Markov chain. The three methods differ in how they keep the generator's
// entropy up: Kim & Bengio (2016) through its batch-norm scales, MEG (Kumar
// et al. 2019) through the mutual information of z and x, VERA (Grathwohl et
// al. 2021) through an importance-sampled estimate of the score of q.
// Every one trains the energy by
//   mean E(x+) - mean E(x-) + alpha (mean E(x+)^2 + mean E(x-)^2)
//   + grad_penalty / 2 mean |dE/dx(x+)|^2
// on detached negatives, and the generator by mean E(x-) - entropy_weight H.
#pragma once

#include <functional>

#include "ebm/objectives/objective.h"

namespace ebm {

class GeneratorImpl;

// The energy's loss shared by the learned-sampler objectives (above), with
// its e_pos, e_neg and gap metrics written into `out`. With ce_weight > 0 on
// a class-conditional energy (JEM's, energy.name = jem), ce_weight x the
// cross entropy of p(y | x+) = softmax(-E(x+, y)) at the batch's labels y is
// added (VERA's JEM variant: JEM's p(x) term with generator negatives), read
// from the same training pass (metrics ce, accuracy).
torch::Tensor learned_sampler_energy_loss(EnergyImpl& energy, const torch::Tensor& x_pos,
                                          const torch::Tensor& x_neg, double alpha, double grad_penalty,
                                          Output& out, const Batch* labelled = nullptr, double ce_weight = 0);

// E(x) with the energy's spectral normalisation held as it stands (an
// eval-mode pass): the generators' losses evaluate the energy after its own
// training pass, whose graph holds the power iteration's vectors.
torch::Tensor energy_held(EnergyImpl& energy, const torch::Tensor& x);

// VERA (Grathwohl et al. 2021, "No MCMC for me"): a generator q(x) = g(z) +
// sigma eps (z ~ N(0, I), eps ~ N(0, I)) gives the negatives in one pass;
//   energy:    mean E(x+) - mean E(x-) + alpha (mean E(x+)^2 + mean E(x-)^2)
//              + grad_penalty / 2 mean |dE/dx(x+)|^2
//   generator: mean E(x-) - entropy_weight H(q), through the surrogate
//              - entropy_weight mean (c . x-), c = sum_k w_k (x- - g(z_k)) / sigma^2
//              (detached) = -d log q(x-)/dx estimated by self-normalised
//              importance sampling of K latents z_k ~ N(z0, diag(s^2)) around
//              the latent z0 that drew x- (weights p(z_k) N(x-; g(z_k), sigma^2) / xi(z_k));
//   posterior: the proposal's log s (a learner of its own, Adam at post_lr)
//              maximises the ELBO E_xi[log q(x-, z)] + H(xi).
// sigma is clamped to [sigma_min, sigma_max] before every step. Metrics:
// e_pos, e_neg, gap, sigma, post_sigma, entropy_grad (|c| mean).
struct VeraOptions {
  TORCH_ARG(double, entropy_weight) = 1.0;
  TORCH_ARG(int64_t, posterior_samples) = 20;
  TORCH_ARG(double, sigma_min) = 0.01;
  TORCH_ARG(double, sigma_max) = 0.3;
  TORCH_ARG(double, post_lr) = 0.02;
  TORCH_ARG(double, init_post_sigma) = 0.1;
  TORCH_ARG(double, alpha) = 0.0;
  TORCH_ARG(double, grad_penalty) = 0.0;
  TORCH_ARG(double, ce_weight) = 0.0;  // > 0: VERA's JEM variant (a class-conditional energy)
};

class Vera : public Objective {
 public:
  Vera(const VeraOptions& options, std::shared_ptr<GeneratorImpl> generator);
  Output compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) override;
  std::vector<LearnedModule> learned_modules() override;
  GeneratorImpl& generator() { return *generator_; }
  // The entropy term's surrogate and the score estimate c [N, ...] at x
  // (drawn from latents z [N, L]); exposed for tests.
  torch::Tensor score_estimate(const torch::Tensor& x, const torch::Tensor& z, at::Generator& gen,
                               double* ess_fraction = nullptr);
  torch::Tensor post_log_sigma() const;

 private:
  VeraOptions options_;
  std::shared_ptr<GeneratorImpl> generator_;
  std::shared_ptr<torch::nn::Module> posterior_;  // holds log s [L]
};

// Kim & Bengio (2016), "Deep directed generative models with energy-based
// probability estimation": a deterministic generator with batch
// normalisation; each normalised unit is taken as Gaussian with its scale
// gamma, so H(q) ~ sum over normalised units of 1/2 log(2 pi e gamma^2)
// (exact when the generator is linear up to its normalised layer and the
// rest is the identity). Needs generator.batch_norm = true. Metrics: e_pos,
// e_neg, gap, entropy (the estimate).
struct KimBengioOptions {
  TORCH_ARG(double, entropy_weight) = 1.0;
  TORCH_ARG(double, alpha) = 0.0;
  TORCH_ARG(double, grad_penalty) = 0.0;
};

class KimBengio : public Objective {
 public:
  KimBengio(const KimBengioOptions& options, std::shared_ptr<GeneratorImpl> generator);
  Output compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) override;
  std::vector<LearnedModule> learned_modules() override;
  // The batch-norm entropy estimate (differentiable in the scales).
  static torch::Tensor entropy_estimate(const GeneratorImpl& generator);

 private:
  KimBengioOptions options_;
  std::shared_ptr<GeneratorImpl> generator_;
};

// MEG's statistics network T(x, z): for vectors an MLP on [x, z]; for images
// two stride-2 convolutions of x, flattened, joined by z, then the MLP.
class StatisticsNetworkImpl : public torch::nn::Module {
 public:
  StatisticsNetworkImpl(const std::vector<int64_t>& event_shape, int64_t latent_dim, std::vector<int64_t> hidden);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& z);  // [N]

 private:
  torch::nn::Conv2d c1_{nullptr}, c2_{nullptr};
  std::vector<torch::nn::Linear> layers_;
};

// The Jensen-Shannon mutual-information bound of Deep InfoMax (Hjelm et al.
// 2019): mean -softplus(-T(x, z)) over joint pairs minus mean softplus(T(x, z'))
// over pairs with the latents shuffled (z' = z rolled by one row).
torch::Tensor jsd_mutual_information(StatisticsNetworkImpl& t, const torch::Tensor& x, const torch::Tensor& z);
// The Donsker-Varadhan bound with the same T: mean T(joint) - log mean
// exp T(shuffled); equals I(x; z) at the optimal T (log p(x, z) / p(x) p(z)),
// which the JSD objective also attains.
torch::Tensor dv_mutual_information(StatisticsNetworkImpl& t, const torch::Tensor& x, const torch::Tensor& z);

// One Metropolis-adjusted Langevin step on every row of z for the target
// exp(-U(z)) (U returns [N]): z' = z - step grad U(z) + sqrt(2 step) xi,
// accepted with min(1, exp(U(z) - U(z') + log q(z | z') - log q(z' | z))).
// Returns the per-row acceptance (0/1) and updates z in place.
using LatentPotential = std::function<torch::Tensor(const torch::Tensor&)>;
torch::Tensor latent_mala_step(const LatentPotential& u, torch::Tensor& z, double step, at::Generator& gen);

// A generator's draws refined in its latent space (ebm sample --from
// generator --latent): MALA on U(z) = E(g(z)) + |z|^2 / 2 from latents z
// [N, L], `warmup` steps adapting the step from `step` toward 0.574
// acceptance, then `steps` at the adapted step (a fixed kernel, so exp(-U)
// is invariant). The generator is used in eval mode.
struct LatentRefinement {
  torch::Tensor z;    // [N, L]
  double step = 0;    // the step used after the warm-up
  double accept = 0;  // mean acceptance over the fixed-step steps
};
LatentRefinement refine_latents(EnergyImpl& energy, GeneratorImpl& g, const torch::Tensor& z, int64_t warmup,
                                int64_t steps, double step, at::Generator& gen);
// log q(to | from) = log N(to; from - step grad_from, 2 step I) per row.
torch::Tensor mala_log_proposal(const torch::Tensor& to, const torch::Tensor& from, const torch::Tensor& grad_from,
                                double step);

// MEG (Kumar et al. 2019, "Maximum Entropy Generators for Energy-Based
// Models"): a deterministic generator whose entropy is kept up through the
// mutual information I(x; z) (for a deterministic invertible g, H(x) = I(x;
// z) up to a constant), estimated by the statistics network T with the JSD
// bound; T (a learner of its own, "statistics") ascends the bound, the
// generator descends mean E(g(z)) - entropy_weight I_JSD. With mala_steps >
// 0 the energy's negatives are g(z) after that many latent MALA steps on
// U(z) = E(g(z)) + |z|^2 / 2 with the proposal density in the acceptance
// (the official code drops it); the step adapts toward 0.574 acceptance and
// is checkpointed. Metrics: e_pos, e_neg, gap, mi (JSD), mala_accept,
// mala_step.
struct MegOptions {
  TORCH_ARG(double, entropy_weight) = 1.0;
  TORCH_ARG(double, alpha) = 0.0;
  TORCH_ARG(double, grad_penalty) = 0.0;
  TORCH_ARG(std::vector<int64_t>, stats_hidden) = std::vector<int64_t>{256, 256};
  TORCH_ARG(double, stats_lr) = 0.0;  // 0 = train.lr
  TORCH_ARG(int64_t, mala_steps) = 0;
  TORCH_ARG(double, mala_step) = 0.01;  // the latent step size at the start
};

class Meg : public Objective {
 public:
  Meg(const MegOptions& options, std::shared_ptr<GeneratorImpl> generator);
  Output compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) override;
  std::vector<LearnedModule> learned_modules() override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
  StatisticsNetworkImpl& statistics() { return *stats_; }
  double mala_step() const { return step_; }

 private:
  MegOptions options_;
  std::shared_ptr<GeneratorImpl> generator_;
  std::shared_ptr<StatisticsNetworkImpl> stats_;
  double step_;
};

}  // namespace ebm
