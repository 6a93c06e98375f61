// MCMC on a batch of chains (DESIGN.md "Sampler"). Rows of x are chains.
// A non-finite energy or position inside a step is a rejected move counted in
// Stats::n_divergent, never an exception.
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>

#include "ebm/energy/energy.h"

namespace ebm {

// Chain positions with cached E(x) and dE/dx (undefined until computed).
struct ChainState {
  explicit ChainState(torch::Tensor x0) : x(std::move(x0)) {}
  torch::Tensor x;       // [B, ...]
  torch::Tensor energy;  // [B] at x, or undefined
  torch::Tensor grad;    // like x, or undefined
  void invalidate() { energy = torch::Tensor(); grad = torch::Tensor(); }
};

// Fixed names (Stan's): averaged over the steps of a run.
struct Stats {
  double accept_rate = 1.0;
  double step_size = 0.0;
  int64_t n_divergent = 0;
  double energy_mean = 0.0;
};

class Sampler {
 public:
  virtual ~Sampler() = default;
  virtual Stats step(EnergyImpl& energy, ChainState& state, at::Generator& gen) = 0;
  // `steps` transitions; stats averaged (n_divergent summed).
  Stats run(EnergyImpl& energy, ChainState& state, int64_t steps, at::Generator& gen);
  virtual std::string name() const = 0;
};

// Unadjusted Langevin / SGLD (Welling & Teh 2011; IGEBM, Du & Mordatch 2019):
//   x' = clamp(x - step * clip(dE/dx) + noise * N(0, I)),
// with noise = sqrt(2 step) when exact_noise (the discretised Langevin
// diffusion) and free otherwise (the EBM-training habit of a small noise).
struct LangevinOptions {
  explicit LangevinOptions(double step_size) : step_size_(step_size) {}
  TORCH_ARG(double, step_size);          // eta > 0
  TORCH_ARG(double, noise) = 0.005;      // sigma >= 0; ignored when exact_noise
  TORCH_ARG(bool, exact_noise) = false;  // sigma = sqrt(2 eta)
  TORCH_ARG(double, grad_clip) = 0.0;    // clamp each gradient element to +-grad_clip; 0 = off
  TORCH_ARG(double, clamp_min) = -INFINITY;  // box on x; infinite = off
  TORCH_ARG(double, clamp_max) = INFINITY;
};

class LangevinSampler : public Sampler {
 public:
  explicit LangevinSampler(const LangevinOptions& options);
  Stats step(EnergyImpl& energy, ChainState& state, at::Generator& gen) override;
  std::string name() const override { return "langevin"; }
  const LangevinOptions& options() const { return options_; }
  double noise() const;

 private:
  LangevinOptions options_;
  torch::Tensor noise_buf_;
};

// Random-walk Metropolis-Hastings (Metropolis et al. 1953):
//   x* = x + step * N(0, I), accepted with probability min(1, exp(E(x) - E(x*))).
struct RandomWalkMHOptions {
  explicit RandomWalkMHOptions(double step_size) : step_size_(step_size) {}
  TORCH_ARG(double, step_size);  // proposal standard deviation > 0
};

class RandomWalkMH : public Sampler {
 public:
  explicit RandomWalkMH(const RandomWalkMHOptions& options);
  Stats step(EnergyImpl& energy, ChainState& state, at::Generator& gen) override;
  std::string name() const override { return "mh"; }

 private:
  RandomWalkMHOptions options_;
};

// Metropolis-adjusted Langevin (Roberts & Tweedie 1996):
//   x* = x - eps grad E(x) + sqrt(2 eps) xi, accepted with probability
//   min(1, exp(E(x) - E(x*) + log q(x | x*) - log q(x* | x))),
//   log q(b | a) = -|b - a + eps grad E(a)|^2 / (4 eps)  (squared norm, variance 2 eps).
struct MALAOptions {
  explicit MALAOptions(double step_size) : step_size_(step_size) {}
  TORCH_ARG(double, step_size);  // eps > 0
};

class MALASampler : public Sampler {
 public:
  explicit MALASampler(const MALAOptions& options);
  Stats step(EnergyImpl& energy, ChainState& state, at::Generator& gen) override;
  std::string name() const override { return "mala"; }

 private:
  MALAOptions options_;
};

// Leapfrog (Stormer-Verlet) for H(x, p) = E(x) + 1/2 p^T M^{-1} p, n steps of
// size eps (per chain when eps is [B]): p -= eps/2 grad; x += eps M^{-1} p;
// p -= eps/2 grad. `grad` holds dE/dx at x on entry and on exit; returns E at
// the final x. Time-reversible and volume-preserving.
torch::Tensor leapfrog(EnergyImpl& energy, torch::Tensor& x, torch::Tensor& p, torch::Tensor& grad,
                       const torch::Tensor& inv_mass, const torch::Tensor& eps, int64_t n_steps);

// Hamiltonian Monte Carlo (Duane et al. 1987; Neal 2011): p ~ N(0, M),
// leapfrog trajectory, accepted with probability min(1, exp(H - H*)). The
// step is jittered uniformly in eps * [1 - jitter, 1 + jitter] per chain and
// transition (Neal's advice against periodic trajectories). A non-finite
// energy or an energy error above 1000 is a divergence (rejected, counted).
struct HMCOptions {
  explicit HMCOptions(double step_size) : step_size_(step_size) {}
  TORCH_ARG(double, step_size);         // eps > 0
  TORCH_ARG(int64_t, n_leapfrog) = 10;  // leapfrog steps per transition >= 1
  TORCH_ARG(double, jitter) = 0.0;      // in [0, 1)
  TORCH_ARG(torch::Tensor, inv_mass) = {};  // diagonal M^{-1} [D]; undefined = identity
};

class HMCSampler : public Sampler {
 public:
  explicit HMCSampler(const HMCOptions& options);
  Stats step(EnergyImpl& energy, ChainState& state, at::Generator& gen) override;
  std::string name() const override { return "hmc"; }

 private:
  HMCOptions options_;
};

// "name:key=value,key=value" -> sampler. Names: langevin (keys step, noise,
// exact, clip, min, max), ula (= langevin with exact noise), mh (step),
// mala (step), hmc (step, leapfrog, jitter), annealed (eps, smax, smin,
// levels, steps, denoise; tempering.h), pt (step, temps, tmax; tempering.h).
// Unknown names or keys and bad values throw kBadConfig naming them.
std::shared_ptr<Sampler> make_sampler(const std::string& spec);
// Splits a spec string; values stay strings.
std::pair<std::string, std::map<std::string, std::string>> parse_spec(const std::string& spec);

// Parameters stop requiring grad for the lifetime of the guard, so sampling
// builds no graph over them (the flags are restored afterwards).
class FreezeParameters {
 public:
  explicit FreezeParameters(torch::nn::Module& module);
  ~FreezeParameters();
  FreezeParameters(const FreezeParameters&) = delete;
  FreezeParameters& operator=(const FreezeParameters&) = delete;

 private:
  std::vector<std::pair<torch::Tensor, bool>> saved_;
};

// Persistent chains (Tieleman 2008; IGEBM's replay buffer). Draws come from
// stored chains except that each one, with probability reinit_prob, restarts
// from the init distribution. Capacity 0 = short-run: every draw is fresh.
struct ReplayBufferOptions {
  explicit ReplayBufferOptions(int64_t capacity) : capacity_(capacity) {}
  TORCH_ARG(int64_t, capacity);             // stored chains; 0 = none
  TORCH_ARG(double, reinit_prob) = 0.05;    // in [0, 1]
  TORCH_ARG(std::string, init) = "uniform";  // uniform | gaussian
  TORCH_ARG(double, low) = -4.0;            // uniform box
  TORCH_ARG(double, high) = 4.0;
  TORCH_ARG(double, std) = 1.0;             // gaussian init standard deviation
};

class ReplayBuffer {
 public:
  ReplayBuffer(const ReplayBufferOptions& options, std::vector<int64_t> event_shape);
  // Fresh draws from the init distribution: [n, event...] float32.
  torch::Tensor init_samples(int64_t n, at::Generator& gen) const;
  // n chains and the slots they came from (-1 for fresh ones when short-run).
  std::pair<torch::Tensor, torch::Tensor> sample(int64_t n, at::Generator& gen);
  // Writes chains back to their slots (no-op for short-run).
  void push(const torch::Tensor& x, const torch::Tensor& slots);
  int64_t capacity() const { return options_.capacity(); }
  bool filled() const { return data_.defined(); }
  const torch::Tensor& data() const { return data_; }
  const ReplayBufferOptions& options() const { return options_; }
  void save(torch::serialize::OutputArchive& archive) const;
  void load(torch::serialize::InputArchive& archive);

 private:
  ReplayBufferOptions options_;
  std::vector<int64_t> event_shape_;
  torch::Tensor data_;  // [capacity, event...], filled on first use
};

}  // namespace ebm
