// MCMC on a batch of chains (DESIGN.md "Sampler"). Rows of x are chains.
// A non-finite energy or position inside a step is a rejected move counted in
// Stats::n_divergent, never an exception.
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ebm/data/low_rank_gaussian.h"
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
// n_grad is the mean number of gradient evaluations per chain (summed over
// the steps of a run), the cost unit of ESS per gradient.
struct Stats {
  double accept_rate = 1.0;
  double step_size = 0.0;
  int64_t n_divergent = 0;
  double energy_mean = 0.0;
  double n_grad = 0.0;
};

// A proposal whose energy (or H) rises by more than this, in units of the
// (tempered) log density, is a divergence: rejected and counted (Stan's).
constexpr double kDivergence = 1000.0;

class Sampler {
 public:
  virtual ~Sampler() = default;
  virtual Stats step(EnergyImpl& energy, ChainState& state, at::Generator& gen) = 0;
  // `steps` transitions; stats averaged (n_divergent and n_grad summed).
  Stats run(EnergyImpl& energy, ChainState& state, int64_t steps, at::Generator& gen);
  virtual std::string name() const = 0;

  // Tuning hooks for warm-up adaptation (WarmupAdapter). A sampler that
  // adapts its step reports the acceptance it aims at (0 = not adaptable);
  // one with a diagonal mass matrix takes M^{-1} [D].
  virtual double target_accept() const { return 0.0; }
  virtual double step_size() const { return 0.0; }
  virtual void set_step_size(double eps);
  virtual bool has_mass() const { return false; }
  virtual void set_inv_mass(const torch::Tensor& inv_mass);

  // State kept between calls to step (parallel tempering's hot replicas), for
  // checkpoints; stateless samplers write and read nothing.
  virtual void save(torch::serialize::OutputArchive& archive) const {}
  virtual void load(torch::serialize::InputArchive& archive) {}
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
  // 0.234: the optimum of Roberts, Gelman & Gilks (1997) in high dimension.
  double target_accept() const override { return 0.234; }
  double step_size() const override { return options_.step_size(); }
  void set_step_size(double eps) override { options_.step_size(eps); }

 private:
  RandomWalkMHOptions options_;
};

// Metropolis-adjusted Langevin (Roberts & Tweedie 1996), preconditioned by a
// diagonal A = M^{-1} (identity by default):
//   x* = x - eps A grad E(x) + sqrt(2 eps) A^{1/2} xi, accepted with probability
//   min(1, exp(E(x) - E(x*) + log q(x | x*) - log q(x* | x))),
//   log q(b | a) = -(b - a + eps A g(a))^T A^{-1} (b - a + eps A g(a)) / (4 eps)
// (a squared norm; the proposal variance is 2 eps A).
struct MALAOptions {
  explicit MALAOptions(double step_size) : step_size_(step_size) {}
  TORCH_ARG(double, step_size);              // eps > 0
  TORCH_ARG(torch::Tensor, inv_mass) = {};   // diagonal A [D]; undefined = identity
};

// One MALA transition of every row of (x, e, g): chains [R, ...] with their
// energies [R] and gradients, replaced by the next state. Row r targets
// exp(-E / T_r): the proposal variance is 2 eps T_r A, log q is divided by
// T_r and the energy difference too (parallel tempering's local move).
// `temperature` [R] on x's device, undefined = 1 (plain MALA); `inv_mass` A
// [D], undefined = identity. A non-finite log acceptance or a tempered energy
// rise above kDivergence is a divergence. Draws: the noise, then one uniform
// per row.
struct MALAMove {
  torch::Tensor accept;     // [R] bool
  torch::Tensor divergent;  // [R] bool
};
MALAMove mala_transition(EnergyImpl& energy, torch::Tensor& x, torch::Tensor& e, torch::Tensor& g,
                         double eps, const torch::Tensor& inv_mass,
                         const torch::Tensor& temperature, at::Generator& gen);

class MALASampler : public Sampler {
 public:
  explicit MALASampler(const MALAOptions& options);
  Stats step(EnergyImpl& energy, ChainState& state, at::Generator& gen) override;
  std::string name() const override { return "mala"; }
  double target_accept() const override { return 0.57; }  // Roberts & Rosenthal (1998)
  double step_size() const override { return options_.step_size(); }
  void set_step_size(double eps) override { options_.step_size(eps); }
  bool has_mass() const override { return true; }
  void set_inv_mass(const torch::Tensor& inv_mass) override { options_.inv_mass(inv_mass); }

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
// transition (Neal's advice against periodic trajectories); with log_spread
// = s > 0 it is eps * exp(U(-s, s)) instead, drawn independently of the
// state (so each transition keeps its target invariant), for targets whose
// scale varies across the space (a funnel's neck and mouth). A non-finite
// energy or an energy error above kDivergence is a divergence (rejected, counted).
struct HMCOptions {
  explicit HMCOptions(double step_size) : step_size_(step_size) {}
  TORCH_ARG(double, step_size);         // eps > 0
  TORCH_ARG(int64_t, n_leapfrog) = 10;  // leapfrog steps per transition >= 1
  TORCH_ARG(double, jitter) = 0.0;      // in [0, 1)
  TORCH_ARG(double, log_spread) = 0.0;  // >= 0; > 0 replaces jitter
  TORCH_ARG(torch::Tensor, inv_mass) = {};  // diagonal M^{-1} [D]; undefined = identity
};

class HMCSampler : public Sampler {
 public:
  explicit HMCSampler(const HMCOptions& options);
  Stats step(EnergyImpl& energy, ChainState& state, at::Generator& gen) override;
  std::string name() const override { return "hmc"; }
  double target_accept() const override { return 0.65; }  // Beskos et al. (2013)
  double step_size() const override { return options_.step_size(); }
  void set_step_size(double eps) override { options_.step_size(eps); }
  bool has_mass() const override { return true; }
  void set_inv_mass(const torch::Tensor& inv_mass) override { options_.inv_mass(inv_mass); }

 private:
  HMCOptions options_;
};

// The No-U-Turn Sampler (Hoffman & Gelman 2014) with multinomial sampling of
// the trajectory (Betancourt 2017), as Stan and BlackJAX run it: the
// trajectory doubles in a random direction until the generalised U-turn
// criterion (with rho, the sum of momenta) fails on the whole trajectory or
// on any power-of-two sub-trajectory of the newest half, the energy error
// exceeds 1000 (a divergence) or max_depth doublings are done. The new
// half's draw is chosen progressively in proportion to exp(-H) and replaces
// the current one with probability min(1, w_new / w_old) (biased progressive
// sampling). Chains are batched: each has its own direction, tree and stop
// mask, and only running chains are evaluated. Stats::accept_rate is Stan's
// accept_stat (mean over the new leaves of min(1, exp(H0 - H))), which
// dual averaging drives to its target.
struct NUTSOptions {
  explicit NUTSOptions(double step_size) : step_size_(step_size) {}
  TORCH_ARG(double, step_size);              // eps > 0
  TORCH_ARG(int64_t, max_depth) = 10;        // at most 2^max_depth - 1 leapfrog steps
  TORCH_ARG(double, max_energy_error) = kDivergence;  // divergence threshold on H - H0
  TORCH_ARG(torch::Tensor, inv_mass) = {};   // diagonal M^{-1} [D]; undefined = identity
};

class NUTSSampler : public Sampler {
 public:
  explicit NUTSSampler(const NUTSOptions& options);
  Stats step(EnergyImpl& energy, ChainState& state, at::Generator& gen) override;
  std::string name() const override { return "nuts"; }
  double target_accept() const override { return 0.8; }
  double step_size() const override { return options_.step_size(); }
  void set_step_size(double eps) override { options_.step_size(eps); }
  bool has_mass() const override { return true; }
  void set_inv_mass(const torch::Tensor& inv_mass) override { options_.inv_mass(inv_mass); }
  // Mean tree depth of the chains in the last step.
  double last_depth() const { return last_depth_; }
  const NUTSOptions& options() const { return options_; }

 private:
  NUTSOptions options_;
  double last_depth_ = 0;
};

// Dual averaging of log step size (Nesterov 2009; Hoffman & Gelman 2014,
// Algorithm 5) with Stan's constants. update() takes the acceptance
// statistic of one transition and returns the next step size; final() is the
// averaged iterate exp(x_bar) that sampling keeps after warm-up.
struct DualAveragingOptions {
  explicit DualAveragingOptions(double target) : target_(target) {}
  TORCH_ARG(double, target);         // acceptance statistic to reach, in (0, 1)
  TORCH_ARG(double, gamma) = 0.05;
  TORCH_ARG(double, kappa) = 0.75;
  TORCH_ARG(double, t0) = 10.0;
};

class DualAveraging {
 public:
  DualAveraging(const DualAveragingOptions& options, double initial_step);
  // Starts over, shrinking towards log(10 eps) (Stan, after each mass update).
  void restart(double step);
  double update(double accept_stat);
  double final() const { return std::exp(x_bar_); }

 private:
  DualAveragingOptions options_;
  double mu_ = 0, x_bar_ = 0, h_bar_ = 0;
  int64_t t_ = 0;
};

// Stan's warm-up: dual averaging of the step size throughout; a diagonal mass
// matrix estimated from the draws of doubling windows (init buffer 75, first
// window 25, terminal buffer 50, scaled down proportionally when warm-up is
// shorter than 150 steps), regularised as (n/(n+5)) var + 1e-3 (5/(n+5)),
// with dual averaging restarted after each update. Batched chains pool their
// draws in each window and share one step size.
struct WarmupOptions {
  explicit WarmupOptions(int64_t steps) : steps_(steps) {}
  TORCH_ARG(int64_t, steps);               // warm-up transitions >= 0
  TORCH_ARG(double, target_accept) = 0.0;  // 0 = the sampler's default
  TORCH_ARG(bool, adapt_mass) = true;      // only where the sampler has one
  TORCH_ARG(int64_t, init_buffer) = 75;
  TORCH_ARG(int64_t, base_window) = 25;
  TORCH_ARG(int64_t, term_buffer) = 50;
};

class WarmupAdapter {
 public:
  WarmupAdapter(Sampler& sampler, const WarmupOptions& options);
  // One warm-up transition with adaptation; after the last one the sampler
  // holds its final step size (and mass matrix).
  Stats step(EnergyImpl& energy, ChainState& state, at::Generator& gen);
  bool done() const { return t_ >= options_.steps(); }
  // Windows [start, end) of mass-matrix estimation (for tests and logs).
  const std::vector<std::pair<int64_t, int64_t>>& windows() const { return windows_; }

 private:
  Sampler& sampler_;
  WarmupOptions options_;
  DualAveraging averager_;
  std::vector<std::pair<int64_t, int64_t>> windows_;
  int64_t t_ = 0;
  size_t window_ = 0;
  torch::Tensor sum_, sum_sq_;  // running moments of the current window, [D] float64
  int64_t count_ = 0;
};

// "name:key=value,key=value" -> sampler. Names: langevin (keys step, noise,
// exact, clip, min, max), ula (= langevin with exact noise), mh (step),
// mala (step), hmc (step, leapfrog, jitter), nuts (step, depth), annealed
// (eps, smax, smin, levels, steps, denoise; tempering.h), pt (step, temps,
// tmax; tempering.h).
// Unknown names or keys and bad values throw kBadConfig naming them.
std::shared_ptr<Sampler> make_sampler(const std::string& spec);

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
// The chains live on options.device; the generator passed to sample and
// init_samples must be that device's (make_generator). Checkpoints hold them
// on the CPU, so a buffer saved on one device loads on another.
struct ReplayBufferOptions {
  explicit ReplayBufferOptions(int64_t capacity) : capacity_(capacity) {}
  TORCH_ARG(int64_t, capacity);             // stored chains; 0 = none
  TORCH_ARG(double, reinit_prob) = 0.05;    // in [0, 1]
  // uniform | gaussian | data (uniform on the data's box) | fit (the data's
  // LowRankGaussian: mean and leading principal components) | mixed (fit,
  // a share mixed_noise from uniform) | auto (mixed for images [C, H, W],
  // uniform for vectors; the buffer's options() say which)
  TORCH_ARG(std::string, init) = "uniform";
  TORCH_ARG(double, mixed_noise) = 0.2;     // in [0, 1]
  TORCH_ARG(double, low) = -4.0;            // uniform box
  TORCH_ARG(double, high) = 4.0;
  TORCH_ARG(double, std) = 1.0;             // gaussian init standard deviation
  TORCH_ARG(torch::Device, device) = torch::kCPU;  // where chains are stored and drawn
  // > 0: one pool per class of a conditional energy, slot s holding chains of
  // class s % classes (IGEBM's per-class buffers; capacity / classes each).
  TORCH_ARG(int64_t, classes) = 0;
};

class ReplayBuffer {
 public:
  ReplayBuffer(const ReplayBufferOptions& options, std::vector<int64_t> event_shape);
  // Fresh draws from the init distribution: [n, event...] float32, on options.device.
  torch::Tensor init_samples(int64_t n, at::Generator& gen) const;
  // With init = data: the box the fresh draws are uniform on, each
  // coordinate's range over the rows x [N, event...] widened by 10% of it on
  // either side; with fit or mixed: the rows' LowRankGaussian (other inits
  // ignore it). Needed before the first draw.
  void fit_data(const torch::Tensor& x);
  // init = fit, mixed: the Gaussian fresh chains are drawn from (undefined before fit_data).
  const LowRankGaussian& fitted() const { return fit_; }
  // The uniform box [event...] each (init = uniform, mixed or data; undefined before fit_data).
  std::pair<torch::Tensor, torch::Tensor> box() const;
  // n chains and the slots they came from (-1 for fresh ones when short-run).
  // With classes > 0, `labels` [n] (int64) picks each chain's pool.
  std::pair<torch::Tensor, torch::Tensor> sample(int64_t n, at::Generator& gen,
                                                 const torch::Tensor& labels = {});
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
  torch::Tensor box_lo_, box_hi_;  // init = data: [event...] on options.device
  LowRankGaussian fit_;            // init = fit, on options.device
};

}  // namespace ebm
