// Partition functions of any energy: log Z of exp(-E) by annealed importance
// sampling (Neal 2001) along the geometric path from a normalised base
// density p0 = exp(-E0) to exp(-E):
//   E_b(x) = (1 - b) E0(x) + b E(x),  0 = b_0 < b_1 < ... < b_K = 1,
// x ~ p0, then for k = 1..K: log w += (b_k - b_{k-1}) (E0(x) - E(x)) and x
// moves by an MCMC kernel that leaves exp(-E_{b_k}) invariant (HMC or MALA of
// the sampling module). E[w] = Z, so log Z ~ log mean w (biased low by
// Jensen). Reverse AIS (Burda et al. 2015; Grosse et al. 2015) runs the path
// backwards from samples of exp(-E) / Z and estimates log Z from above in
// expectation when those samples are exact: with a sampler of the target both
// together bracket log Z (the bidirectional sandwich).
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "ebm/core/covariance.h"
#include "ebm/energy/energy.h"

namespace ebm {

// The base p0: a diagonal Gaussian N(mean, diag(std^2)), a mixture of K
// diagonal Gaussians (sum_k w_k N(mean_k, diag(std_k^2))), or the uniform
// density on the box [lo, hi] (E0 = +inf outside it, so every intermediate
// density and the target are restricted to the box: image models, whose
// pixels live in a range). E0 is normalised: log Z0 = 0.
class AisBase {
 public:
  AisBase() = default;
  static AisBase gaussian(torch::Tensor mean, torch::Tensor std);  // [D] each (float64)
  static AisBase uniform(torch::Tensor lo, torch::Tensor hi);      // [D] each
  // weights [K] (> 0, summing to 1), means and stds [K, D]
  static AisBase mixture(torch::Tensor weights, torch::Tensor means, torch::Tensor stds);
  // Fitted to rows x [N, ...]: their box widened by 10% (uniform); else in
  // the rows' principal axes scaled to unit spread (their covariance, its
  // ridge chosen on held-out rows; up to kMaxWhitened dimensions, above it
  // the coordinates as they are): one Gaussian (the covariance itself), or
  // (mixture) the k-means cells of the rows (cut in the axes),
  // K = min(8, N / 50), each with its share, mean and standard deviations
  // (floored at 1e-3 of the largest, and in the axes at the ridge's share of
  // the spread, all of it where the rows have none): a narrow mode of
  // 10% that one Gaussian's chains never found (20-d, log Z 0.3 nats low,
  // forward and reverse agreeing) starts 10% of the chains.
  static AisBase fit(const std::string& kind, const torch::Tensor& x);
  static constexpr int64_t kMaxWhitened = kMaxHeldOutRidgeDim;
  torch::Tensor energy(const torch::Tensor& x) const;  // [N]: -log p0(x)
  torch::Tensor grad(const torch::Tensor& x) const;    // dE0/dx (0 inside the box for uniform)
  torch::Tensor sample(int64_t n, const std::vector<int64_t>& event_shape, at::Generator& gen) const;
  const std::string& kind() const { return kind_; }
  int64_t dim() const { return a_.size(-1); }
  bool whitened() const { return rot_.defined(); }
  int64_t components() const { return kind_ == "mixture" ? a_.size(0) : 1; }

 private:
  AisBase(std::string kind, torch::Tensor a, torch::Tensor b, torch::Tensor log_w = {});
  // the mixture's log density of each row under each component, plus its
  // log weight: [N, K]
  torch::Tensor joint(const torch::Tensor& flat) const;
  // (fit's, on given axes: rows f, k-means cells cut on the rows cells_of,
  // standard deviations floored at floor [D])
  static AisBase fit_axes(const std::string& kind, const torch::Tensor& f, const torch::Tensor& cells_of,
                          const torch::Tensor& floor);
  torch::Tensor to_axes(const torch::Tensor& x) const;       // [N, D] in the base's axes
  torch::Tensor axes_energy(const torch::Tensor& f) const;   // -log p0 there, without the Jacobian
  std::string kind_;  // gaussian | mixture | uniform
  torch::Tensor a_, b_;  // mean, std ([K, D] for a mixture) | lo, hi
  torch::Tensor log_w_;  // mixture: [K]
  // principal axes (fit): z = (x - shift) rot / scale, log_jac = sum log scale
  torch::Tensor shift_, rot_, scale_;
  double log_jac_ = 0;
};

// The K + 1 inverse temperatures b_0 = 0 .. b_K = 1 of a schedule: linear,
// geometric (b_1 = 1e-4 .. 1 log-spaced after 0) or sigmoid (Grosse et al.
// 2015: sigma(delta (2k / K - 1)) rescaled to [0, 1], delta = 4).
std::vector<double> ais_schedule(const std::string& kind, int64_t temps);

// log mean exp of the weights [N] (float64) and its delta-method standard
// error sd(w) / (sqrt(N) mean(w)); the effective sample size (sum w)^2 / sum w^2.
double log_mean_exp(const torch::Tensor& log_w);
double log_mean_exp_se(const torch::Tensor& log_w);
double effective_sample_size(const torch::Tensor& log_w);

struct AisOptions {
  TORCH_ARG(int64_t, temps) = 1000;              // K >= 1
  TORCH_ARG(std::string, schedule) = "sigmoid";  // linear | geometric | sigmoid
  TORCH_ARG(int64_t, chains) = 100;              // independent runs >= 1
  TORCH_ARG(std::string, transition) = "hmc";    // hmc | mala
  TORCH_ARG(int64_t, moves) = 1;                 // transitions per temperature >= 1
  TORCH_ARG(int64_t, leapfrog) = 10;             // HMC's leapfrog steps
  TORCH_ARG(double, step) = 0.05;                // the first step size, adapted per temperature
  // HMC only: each chain's step in each transition is the adapted step times
  // exp(U(-spread, spread)), drawn independently of the state (so every
  // transition still leaves its temperature's distribution invariant): a
  // spread of a few units serves targets whose scale varies across the
  // space (a funnel's neck and mouth). 0: the HMC sampler with +-20% jitter.
  TORCH_ARG(double, spread) = 1.0;
  TORCH_ARG(int64_t, bootstrap) = 200;           // resamples of the weights for the bootstrap SE
};

struct PartitionEstimate {
  double log_z = 0;         // the estimate
  double se = 0;            // its delta-method standard error
  double se_bootstrap = 0;  // the bootstrap's, as a check
  double ess = 0;           // effective sample size of the weights
  double accept = 0;        // mean acceptance of the transitions
  double final_step = 0;    // the step size at b = 1 (reverse: at b = 0)
  torch::Tensor log_w;      // [chains]
  torch::Tensor x;          // the chains' final states
};

// Independent estimates (blocks of chains, run apart or on several ranks)
// as one: their weights and final states concatenated in order, acceptance
// and final step chain-weighted, log Z, SE, ESS and the bootstrap recomputed
// over all weights (`reverse`: the estimate is -log mean exp of log w_rev).
PartitionEstimate merge_estimates(const std::vector<PartitionEstimate>& parts, bool reverse, int64_t bootstrap,
                                  at::Generator& gen);

// An estimator of log Z of any energy.
class PartitionEstimator {
 public:
  virtual ~PartitionEstimator() = default;
  virtual PartitionEstimate estimate(EnergyImpl& energy, at::Generator& gen) = 0;
};

// progress(k, K, b_k) is called after each temperature (may be empty).
using AisProgress = std::function<void(int64_t, int64_t, double)>;

class AnnealedImportanceSampling : public PartitionEstimator {
 public:
  AnnealedImportanceSampling(AisBase base, AisOptions options, AisProgress progress = {});
  PartitionEstimate estimate(EnergyImpl& energy, at::Generator& gen) override;
  // Reverse AIS from samples x [chains, ...] of exp(-E) / Z: each runs the
  // path from b = 1 to 0, log w_rev += (b_k - b_{k-1}) (E(x) - E0(x)); the
  // estimate is -log mean exp(log w_rev) (its log_w field holds log w_rev).
  PartitionEstimate reverse(EnergyImpl& energy, const torch::Tensor& x, at::Generator& gen);

 private:
  AisBase base_;
  AisOptions options_;
  AisProgress progress_;
};

}  // namespace ebm
