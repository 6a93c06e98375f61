// Samplers over a ladder of noise levels or temperatures: annealed Langevin
// (NCSN) and parallel tempering (replica exchange).
#pragma once

#include <torch/torch.h>

#include <limits>
#include <vector>

#include "ebm/sampling/sampling.h"

namespace ebm {

// Geometric ladder of n values from `first` to `last` (both included):
// v_i = first * (last / first)^(i / (n - 1)), i = 0..n-1; {first} when n = 1.
std::vector<double> geometric_ladder(double first, double last, int64_t n);

// Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1): levels
// s_1 = sigma_max > ... > s_L = sigma_min (geometric), T steps at each, with
//   eta_i = eps * s_i^2 / s_L^2,   x <- x - eta_i * grad E_i(x) + sqrt(2 eta_i) xi.
// E_i is E(x, s_i) when the energy is a NoiseConditionalEnergyImpl (the level
// is set with set_noise_level and restored to its previous value when the
// sweep ends), and E(x) / s_i otherwise (level i is a temperature: the target
// exp(-E / s_i); use sigma_min = 1 to end on exp(-E)). A temperature's step
// is eta_i = eps * s_i / s_L instead, proportional to the target's variance
// as the noise levels' is: the drift eps grad E / s_L is the same at every
// level and the noise grows as sqrt(s_i) (s_i^2 would make the hot levels'
// steps s_i / s_L times too long for their curvature). Song & Ermon write
// the step as alpha_i / 2 with alpha_i = epsilon * s_i^2 / s_L^2: our eps is
// their epsilon / 2.
// One step() is one whole sweep (L * T Langevin updates), so
// `ebm sample --sampler annealed --steps 1` gives one annealed sample per chain.
// Stats: step_size = eta_L = eps, accept_rate = 1, n_divergent = chains with a
// non-finite energy or gradient in some update of the sweep (held in place for
// that update, as LangevinSampler does), energy_mean = mean E(x, s_L) (or
// E(x)) at the end.
struct AnnealedLangevinOptions {
  explicit AnnealedLangevinOptions(double step_size) : step_size_(step_size) {}
  TORCH_ARG(double, step_size);              // eps > 0: the step at the last level (spec key eps)
  TORCH_ARG(double, sigma_max) = 1.0;        // s_1 >= sigma_min (smax)
  TORCH_ARG(double, sigma_min) = 0.01;       // s_L > 0 (smin)
  TORCH_ARG(int64_t, n_levels) = 10;         // L >= 1; L = 1 needs sigma_max == sigma_min (levels)
  TORCH_ARG(int64_t, steps_per_level) = 100;  // T >= 1 (steps)
  // NCSNv2's final denoising step (Song & Ermon 2020, Tweedie):
  // x <- x + s_L^2 * score = x - s_L^2 * grad E(x, s_L). Noise-conditional
  // energies only (a config error otherwise). Default off (denoise).
  TORCH_ARG(bool, denoise) = false;
  // The box the chains stay in (clamped after every update, as
  // LangevinSampler's): images' pixel range; +-inf = none (min, max).
  TORCH_ARG(double, clamp_min) = -std::numeric_limits<double>::infinity();
  TORCH_ARG(double, clamp_max) = std::numeric_limits<double>::infinity();
};

class AnnealedLangevinSampler : public Sampler {
 public:
  explicit AnnealedLangevinSampler(const AnnealedLangevinOptions& options);
  Stats step(EnergyImpl& energy, ChainState& state, at::Generator& gen) override;
  std::string name() const override { return "annealed"; }
  const AnnealedLangevinOptions& options() const { return options_; }
  // s_1 .. s_L and eta_1 .. eta_L (noise levels; temperature_step_sizes for
  // a plain energy's temperatures).
  const std::vector<double>& levels() const { return levels_; }
  const std::vector<double>& step_sizes() const { return steps_; }
  const std::vector<double>& temperature_step_sizes() const { return temperature_steps_; }

 private:
  AnnealedLangevinOptions options_;
  std::vector<double> levels_, steps_, temperature_steps_;
};

// Parallel tempering / replica exchange (Swendsen & Wang 1986; Geyer 1991;
// Earl & Deem 2005). Temperatures 1 = T_1 < ... < T_K = t_max (geometric).
// Each chain of the ChainState is the cold replica of K; the sampler owns the
// hotter ones ([K, B, ...], created as copies of the cold chains on first use
// or when the batch shape or dtype changes; the cold row is re-synced from
// ChainState::x every step). One step:
//  1. MALA on exp(-E / T_k) in every replica, step eps_k = eps * T_k:
//       x* = x - eps grad E(x) + sqrt(2 eps T_k) xi, accepted with probability
//       min(1, exp((E(x) - E(x*)) / T_k + log q(x | x*) - log q(x* | x))),
//       log q(b | a) = -|b - a + eps grad E(a)|^2 / (4 eps T_k);
//     all K * B replicas in one batched energy_and_grad call.
//  2. Swaps of adjacent pairs, deterministic even/odd (DEO) scheme: pairs
//     (1,2), (3,4), ... on even steps and (2,3), (4,5), ... on odd ones, per
//     chain, accepted with probability min(1, exp((1/T_k - 1/T_{k+1}) (E_k - E_{k+1}))).
// K = 1 is plain MALA (bit for bit, t_max unused). Stats: accept_rate and
// energy_mean of the cold replicas; n_divergent counts rejected local moves
// with a non-finite (or exploding: (E* - E) / T_k > kDivergence) energy in any replica.
struct ParallelTemperingOptions {
  explicit ParallelTemperingOptions(double step_size) : step_size_(step_size) {}
  TORCH_ARG(double, step_size);    // eps > 0: the MALA step at T = 1 (spec key step)
  TORCH_ARG(int64_t, n_temps) = 8;  // K >= 1 (temps)
  TORCH_ARG(double, t_max) = 10.0;  // T_K >= 1, finite (tmax)
};

class ParallelTempering : public Sampler {
 public:
  explicit ParallelTempering(const ParallelTemperingOptions& options);
  Stats step(EnergyImpl& energy, ChainState& state, at::Generator& gen) override;
  std::string name() const override { return "pt"; }
  const ParallelTemperingOptions& options() const { return options_; }
  const std::vector<double>& temperatures() const { return temps_; }
  // Accepted / attempted swaps of pair (T_k, T_{k+1}), k = 0..K-2, since
  // construction or reset_swap_counts(); NaN for a pair not attempted yet.
  std::vector<double> swap_rates() const;
  void reset_swap_counts();
  // Every replica [K, B, ...] (row 0 = the cold chains); undefined before the first step.
  const torch::Tensor& replicas() const { return x_; }
  // The hot replicas, the swap counters and the swap parity.
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

 private:
  ParallelTemperingOptions options_;
  std::vector<double> temps_;
  std::vector<int64_t> swap_accepted_, swap_attempted_;
  int64_t n_steps_ = 0;            // parity of the even/odd swap scheme
  torch::Tensor x_, e_, g_;        // [K, B, ...], [K, B], [K, B, ...]
};

}  // namespace ebm
