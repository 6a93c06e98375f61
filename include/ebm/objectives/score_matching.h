// Score matching (DESIGN.md "Objective"): train E without sampling from it by
// matching the model score s(x) = -grad_x E(x) to the data's. Every loss here
// is a function of g = grad_x E and q = v^T (d^2E/dx^2) v per row, computed
// by score_terms(): by the energy's own hand-derived derivatives where it
// has them (EnergyImpl::score_terms; the MLPs, with one pass over the
// parameters in backward), for any other energy by autograd's double
// backward (create_graph).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "ebm/objectives/objective.h"
#include "ebm/sampling/jumps.h"

namespace ebm {

// g = dE/dx [N, D] and, when v [N, D] is defined, q = v^T H v [N] (else
// undefined); both differentiable w.r.t. the energy's parameters. sigma [N]
// gives each row's level for a NoiseConditionalEnergyImpl (ignored by
// others; required by them). analytic = false forces the generic autograd
// path even for MLP energies (the reference the fast path is tested against).
struct ScoreTerms {
  torch::Tensor g, q;
};
ScoreTerms score_terms(EnergyImpl& energy, const torch::Tensor& x, const torch::Tensor& v,
                       const torch::Tensor& sigma = {}, bool analytic = true);

// Per-row losses with the randomness passed in, so tests and golden values
// can fix it. Each returns [B]; the objective's loss is the mean.
//
// Exact (Hyvarinen 2005): 1/2 |g|^2 - tr(H), the trace by D extra passes.
torch::Tensor exact_sm_loss(EnergyImpl& energy, const torch::Tensor& x, bool analytic = true);
// Sliced (Song et al. 2019), v [B, M, D] projections:
//   1/M sum_m [ 1/2 (v_m . g)^2 - v_m^T H v_m ],
// variance-reduced (SSM-VR) replaces 1/2 (v.g)^2 by its Gaussian-v mean 1/2 |g|^2.
torch::Tensor sliced_sm_loss(EnergyImpl& energy, const torch::Tensor& x, const torch::Tensor& v,
                             bool variance_reduced, bool analytic = true);
// Denoising (Vincent 2011) at per-row levels sigma [B] and reference scales
// r [B]: x~ = x + sigma eps, loss 1/2 |r g(x~) - (sigma / r) eps|^2. With
// r = sigma it is DSM weighted by lambda(sigma) = sigma^2 (NCSN, Song & Ermon
// 2019); a constant r = sigma_0 is MDSM (Li et al. 2019). A noise-conditional
// energy is evaluated at sigma.
torch::Tensor denoising_sm_loss(EnergyImpl& energy, const torch::Tensor& x,
                                const torch::Tensor& eps, const torch::Tensor& sigma,
                                const torch::Tensor& r, bool analytic = true);

// Exact score matching refuses dimensions above this (D backward passes per step).
constexpr int64_t kExactScoreMatchingMaxDim = 100;

struct ExactScoreMatchingOptions {
  explicit ExactScoreMatchingOptions(int64_t dim) : dim_(dim) {}
  TORCH_ARG(int64_t, dim);             // data dimension D, 1..kExactScoreMatchingMaxDim
  TORCH_ARG(bool, analytic) = true;    // MLP fast path where the energy is an MLP
};

class ExactScoreMatching : public Objective {
 public:
  explicit ExactScoreMatching(const ExactScoreMatchingOptions& options);
  Output compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) override;

 private:
  ExactScoreMatchingOptions options_;
};

struct SlicedScoreMatchingOptions {
  SlicedScoreMatchingOptions() = default;
  TORCH_ARG(int64_t, projections) = 1;          // M projections per sample >= 1
  TORCH_ARG(std::string, projection) = "gaussian";  // gaussian | rademacher
  TORCH_ARG(bool, variance_reduced) = false;    // SSM-VR (needs gaussian projections)
  TORCH_ARG(bool, analytic) = true;
};

class SlicedScoreMatching : public Objective {
 public:
  explicit SlicedScoreMatching(const SlicedScoreMatchingOptions& options);
  Output compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) override;

 private:
  SlicedScoreMatchingOptions options_;
};

// The training rows' nearest-neighbour spacing per dimension: the median,
// over up to 1,000 evenly spaced query rows, of the distance to the nearest
// other row (among up to 20,000 evenly spaced rows; exact duplicates
// skipped), over sqrt(D). Noise of that std moves a row by about one
// neighbour distance. 0 when there are fewer than two distinct rows.
double nn_spacing(const torch::Tensor& rows);

struct DenoisingScoreMatchingOptions {
  explicit DenoisingScoreMatchingOptions(double sigma) : sigma_(sigma) {}
  TORCH_ARG(double, sigma);             // noise std > 0
  TORCH_ARG(bool, analytic) = true;
  // Raise sigma to the training rows' nn_spacing (fit_data) when it is below
  // it, so that the noise reaches neighbouring rows and the energy is trained
  // between them too: the 2D recipe's 0.03 is 9 times below the spacing of
  // 20,000 rows of 128-d features, where its energy ranked OOD rows poorly.
  // Off by default: on a 10-d mixture it cost 10 nats of test likelihood.
  TORCH_ARG(bool, spacing_floor) = false;
};

class DenoisingScoreMatching : public Objective {
 public:
  explicit DenoisingScoreMatching(const DenoisingScoreMatchingOptions& options);
  Output compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) override;
  void fit_data(const torch::Tensor& train) override;
  double sigma() const { return sigma_; }  // the std in use (after the floor)

 private:
  DenoisingScoreMatchingOptions options_;
  double sigma_;
  bool announce_ = false;  // say on stderr that the floor raised sigma
};

// Multi-scale DSM: each sample draws a level uniformly from the geometric
// ladder. form "ncsn": a noise-conditional energy E(x, sigma), weight sigma^2
// (Song & Ermon 2019). form "li": one energy E(x) for every level, reference
// scale sigma_ref (Li et al. 2019): loss |x - x~ + sigma_ref^2 grad E(x~)|^2 / (2 sigma_ref^2).
struct MultiscaleScoreMatchingOptions {
  MultiscaleScoreMatchingOptions() = default;
  TORCH_ARG(double, sigma_max) = 1.0;      // largest level > sigma_min
  TORCH_ARG(double, sigma_min) = 0.01;     // smallest level > 0
  TORCH_ARG(int64_t, levels) = 10;         // L >= 2
  TORCH_ARG(std::string, form) = "ncsn";   // ncsn | li
  TORCH_ARG(double, sigma_ref) = 0.1;      // li: reference scale sigma_0 > 0
  TORCH_ARG(bool, analytic) = true;
};

class MultiscaleScoreMatching : public Objective {
 public:
  explicit MultiscaleScoreMatching(const MultiscaleScoreMatchingOptions& options);
  Output compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) override;
  const torch::Tensor& ladder() const { return ladder_; }
  double smallest_noise_level() const override { return options_.sigma_min(); }

 private:
  MultiscaleScoreMatchingOptions options_;
  torch::Tensor ladder_;  // [L] float64, decreasing
};


}  // namespace ebm

namespace ebm {

// A score-matching objective plus a likelihood term for what score matching
// cannot see: the relative mass of separated modes (the score of a mixture of
// separated components does not depend on their weights, so a model fitted
// to it may put its mass anywhere among them). The term is the negative
// log-likelihood with log Z by self-normalised importance sampling from a
// fixed proposal q fitted to the data (the kernel density of sampling/jumps.h):
//   weight * ( mean E(x+) + log (1/S sum_i exp(-E(x_i)) / q(x_i)) ),  x_i ~ q,
// whose gradient is maximum likelihood's, with the negative phase weighted
// instead of sampled by MCMC: one energy pass over S proposals per step.
struct MassTermOptions {
  TORCH_ARG(double, weight) = 0.0;     // > 0 turns the term on
  TORCH_ARG(int64_t, samples) = 512;   // proposals per step (S)
  // A step whose importance weights have fewer effective samples than this
  // skips the term (metric mass_term 0): with a handful of weights the log Z
  // estimate is far below log Z and the model learns to exploit it (in 10
  // dimensions the kernel density stops covering the model and the term
  // drove the energy down without bound). Higher floors (10, 25) starve the
  // 2D unbalanced sets of the term they need (7 to 19 nats off at 25).
  TORCH_ARG(double, min_ess) = 3.0;
  TORCH_ARG(DataProposalOptions, proposal) = DataProposalOptions().centers(128);
};

class WithMassTerm : public Objective {
 public:
  WithMassTerm(std::shared_ptr<Objective> inner, const MassTermOptions& options);
  Output compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) override;
  void fit_data(const torch::Tensor& train) override;
  double smallest_noise_level() const override { return inner_->smallest_noise_level(); }
  // (the wrapped objective's networks, state and sampler, unchanged)
  std::vector<LearnedModule> learned_modules() override { return inner_->learned_modules(); }
  void save(torch::serialize::OutputArchive& a) const override { inner_->save(a); }
  void load(torch::serialize::InputArchive& a) override { inner_->load(a); }
  double adapted_step() const override { return inner_->adapted_step(); }
  bool runs_sampler() const override { return inner_->runs_sampler(); }

 private:
  std::shared_ptr<Objective> inner_;
  MassTermOptions options_;
  std::unique_ptr<DataProposal> proposal_;
  bool warned_ = false;
  int64_t window_steps_ = 0, window_skips_ = 0;  // (the skip warning's window of steps)
};

}  // namespace ebm
