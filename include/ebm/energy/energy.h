// Energies (DESIGN.md "Core abstractions"). Contract: rows are samples,
// energy(x): [B, ...] -> [B], grad(x) = dE/dx with the shape of x.
// p(x) = exp(-E(x)) / Z.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "ebm/energy/spectral_norm.h"

namespace ebm {

class NoiseConditionalEnergyImpl;

class EnergyImpl : public torch::nn::Module {
 public:
  // E(x) for each row; differentiable w.r.t. parameters and x.
  virtual torch::Tensor energy(const torch::Tensor& x) = 0;
  // dE/dx, detached. Autograd by default; subclasses override it with an
  // analytic form that builds no graph.
  virtual torch::Tensor grad(const torch::Tensor& x);
  // E(x) and dE/dx together (both detached); samplers call this.
  virtual std::pair<torch::Tensor, torch::Tensor> energy_and_grad(const torch::Tensor& x);
  // Event shape of one sample ({D} for vectors).
  virtual std::vector<int64_t> event_shape() const = 0;
  // An energy that is exactly E(x) = 1/2 sum_j prec_j (x_j - mean_j)^2 returns
  // {mean, prec} ([D], in `dtype`) so samplers can fuse whole trajectories into
  // one pass over memory; every other energy returns undefined tensors.
  virtual std::pair<torch::Tensor, torch::Tensor> diagonal_quadratic(torch::ScalarType dtype) const {
    return {};
  }

  // Hooks through which an energy offers the objectives a faster form of
  // what they compute. Each returns undefined tensors (nullptr) by default:
  // the caller then takes the general autograd form, so a new energy needs
  // nothing here to be trained.
  //
  // The noise-conditional interface, where the energy has one.
  virtual NoiseConditionalEnergyImpl* noise_conditional() { return nullptr; }
  // g = dE/dx [N, D] and, when v [N, D] is defined, q = v^T (d^2E/dx^2) v [N]
  // (else q is unspecified), both differentiable w.r.t. the parameters (not x
  // or v). sigma [N]: each row's level for a noise-conditional energy
  // (undefined: its current level); others ignore it.
  virtual std::pair<torch::Tensor, torch::Tensor> score_terms(const torch::Tensor& x,
                                                              const torch::Tensor& v,
                                                              const torch::Tensor& sigma) {
    return {};
  }
  // The mean denoising score matching loss with its parameter gradient
  // (x, eps [N, D]; sigma, r [N]; the loss as denoising_sm_loss states it).
  virtual torch::Tensor denoising_loss(const torch::Tensor& x, const torch::Tensor& eps,
                                       const torch::Tensor& sigma, const torch::Tensor& r) {
    return {};
  }
  // The mean sliced score matching loss with its parameter gradient, one
  // projection per row (x, v [N, D]; as sliced_sm_loss states it).
  virtual torch::Tensor sliced_loss(const torch::Tensor& x, const torch::Tensor& v) {
    return {};
  }

  // Class-conditional energies (IGEBM's conditional model; a classifier's
  // logits are -E(x, y)): num_classes() > 0 and class_energies(x) [B, K] =
  // E(x, y) for every class y, while energy(x) is the marginal
  // -logsumexp_y(-E(x, y)). Unconditional energies: 0 and undefined.
  virtual int64_t num_classes() const { return 0; }
  virtual torch::Tensor class_energies(const torch::Tensor& x) { return {}; }
  // The network's penultimate features [B, F] (Frechet distances are taken
  // between them); undefined where the energy has none.
  virtual torch::Tensor features(const torch::Tensor& x) { return {}; }
};
using Energy = std::shared_ptr<EnergyImpl>;

// E(x, y) of a class-conditional energy as an energy of x alone, y fixed per
// row, so that every sampler draws from p(x | y): set_labels(y) with y [B]
// (one label per chain) or [1] (the same label for all).
class LabelledEnergyImpl;
// `energy` at labels y ([B] or [1]) when y is defined, else `energy` itself;
// neither view owns `energy`, which must outlive it.
Energy at_labels(EnergyImpl& energy, const torch::Tensor& y);

class LabelledEnergyImpl : public EnergyImpl {
 public:
  explicit LabelledEnergyImpl(Energy inner);
  void set_labels(torch::Tensor y);
  const torch::Tensor& labels() const { return labels_; }
  torch::Tensor energy(const torch::Tensor& x) override;
  std::vector<int64_t> event_shape() const override { return inner_->event_shape(); }
  EnergyImpl& inner() { return *inner_; }

 private:
  Energy inner_;
  torch::Tensor labels_;  // [B] or [1], int64, on the energy's device
};

// Energies conditioned on a noise level sigma (NCSN, Song & Ermon 2019):
// energy_at(x, sigma) takes one level per row; energy(x) evaluates every row
// at the level last set by set_noise_level (annealed samplers set it per level).
class NoiseConditionalEnergyImpl : public EnergyImpl {
 public:
  virtual torch::Tensor energy_at(const torch::Tensor& x, const torch::Tensor& sigma) = 0;
  torch::Tensor energy(const torch::Tensor& x) override {
    return energy_at(x, torch::full({x.size(0)}, noise_level_, x.options()));
  }
  void set_noise_level(double sigma) { noise_level_ = sigma; }
  double noise_level() const { return noise_level_; }
  NoiseConditionalEnergyImpl* noise_conditional() override { return this; }

 protected:
  double noise_level_ = 1.0;
};

// Any energy f made noise-conditional by NCSNv2's scaling (Song & Ermon
// 2020): E(x, sigma) = f(x) / sigma, so sigma grad E = grad f, the network
// reading the level off the noisy input itself (conv and resnet energies with
// energy.noise_conditional = true). Its parameters are f's, under "inner.".
class NoiseScaledEnergyImpl : public NoiseConditionalEnergyImpl {
 public:
  NoiseScaledEnergyImpl(Energy inner, double noise_level);
  torch::Tensor energy_at(const torch::Tensor& x, const torch::Tensor& sigma) override;
  std::vector<int64_t> event_shape() const override { return inner_->event_shape(); }
  torch::Tensor features(const torch::Tensor& x) override { return inner_->features(x); }
  EnergyImpl& inner() { return *inner_; }

 private:
  Energy inner_;
};

// ---------------------------------------------------------------------------
// MLP energy: E(x) = w_L . h_{L-1} + b_L + |x|^2 / (2 prior_std^2),
// h_i = act(W_i h_{i-1} + b_i). The optional Gaussian base term keeps exp(-E)
// integrable whatever the network learns far from the data (off when 0).
struct MLPEnergyOptions {
  MLPEnergyOptions(int64_t in_dim, std::vector<int64_t> hidden)
      : in_dim_(in_dim), hidden_(std::move(hidden)) {}
  TORCH_ARG(int64_t, in_dim);                   // input dimension D
  TORCH_ARG(std::vector<int64_t>, hidden);      // hidden widths, e.g. {128, 128}
  TORCH_ARG(std::string, activation) = "swish";  // swish | softplus | elu | leaky_relu
  TORCH_ARG(bool, spectral_norm) = false;       // W / sigma_max(W), one power iteration per training forward
  TORCH_ARG(double, prior_std) = 0.0;           // std of the Gaussian base term; 0 = none
};

// Activation names accepted by MLPEnergyOptions::activation.
const std::vector<std::string>& mlp_activations();

class MLPEnergyImpl : public EnergyImpl {
 public:
  explicit MLPEnergyImpl(const MLPEnergyOptions& options);
  torch::Tensor energy(const torch::Tensor& x) override;
  // Analytic input gradient, no autograd graph: for float swish on AVX-512
  // CPUs one cache-blocked sweep (mlp_blocked.h), else one forward pass
  // storing act'(z) and one backward pass of matrix products; buffers reused
  // across calls.
  torch::Tensor grad(const torch::Tensor& x) override;
  std::pair<torch::Tensor, torch::Tensor> energy_and_grad(const torch::Tensor& x) override;
  std::vector<int64_t> event_shape() const override { return {options_.in_dim()}; }
  const MLPEnergyOptions& options() const { return options_; }
  // Score-matching terms with hand-derived derivatives: g = dE/dx [N, D] and,
  // when v [N, D] is defined, q = v^T (d^2E/dx^2) v [N] (else q is zeros).
  // Both are differentiable w.r.t. the parameters (not x or v): backward is
  // one hand-written pass of forward-mode tangents and their reverse sweep,
  // instead of autograd's double backward. Used by the score matching objectives.
  std::pair<torch::Tensor, torch::Tensor> score_terms(const torch::Tensor& x, const torch::Tensor& v);
  std::pair<torch::Tensor, torch::Tensor> score_terms(const torch::Tensor& x, const torch::Tensor& v,
                                                      const torch::Tensor& sigma) override {
    return score_terms(x, v);  // (one level: no sigma)
  }
  // The mean denoising score matching loss, 1/N sum_n 1/2 |r_n g_n - (sigma_n / r_n) eps_n|^2
  // with g_n = dE/dx at x_n + sigma_n eps_n (x, eps [N, D]; sigma, r [N]), differentiable
  // w.r.t. the parameters: one cache-blocked pass computes it with its gradient (float
  // swish networks on AVX-512 CPUs, D <= 8, hidden widths but the last multiples of 16).
  // Undefined where that pass does not apply: the caller takes the general form.
  torch::Tensor denoising_loss(const torch::Tensor& x, const torch::Tensor& eps,
                               const torch::Tensor& sigma, const torch::Tensor& r) override;
  // The mean sliced score matching loss, 1/N sum_n 1/2 (v_n . g_n)^2 - v_n^T H_n v_n
  // (x, v [N, D]; g = dE/dx, H its Jacobian), differentiable w.r.t. the parameters, from
  // one cache-blocked pass as denoising_loss; undefined where that does not apply.
  torch::Tensor sliced_loss(const torch::Tensor& x, const torch::Tensor& v) override;

 private:
  // Weight of layer i as used (spectrally normalised when enabled).
  torch::Tensor weight(size_t i, bool update_power_iteration);
  // W_0, b_0, ..., W_n, b_n as used.
  std::vector<torch::Tensor> layer_params(bool update_power_iteration);
  // Graph-free forward sweep from params = W_0, b_0, ..., W_n, b_n into
  // [B, H_i] workspaces: z[i] <- h_i = act(z_i), deriv[i] <- act'(z_i), the
  // last hidden layer's times the output weights (= dE/dz there). With e,
  // also the energy (no base term) into *e; without keep_last_h, z[n-1] may
  // then not hold h (the output layer folded into the last pass). Returns
  // W_0^T [D, H_0] when the first layer was hand-written (small float input).
  torch::Tensor forward_sweep(const torch::Tensor& x, torch::TensorList params,
                              std::vector<torch::Tensor>& z, std::vector<torch::Tensor>& deriv,
                              torch::Tensor* e = nullptr, bool keep_last_h = true);
  void fast_pass(const torch::Tensor& x, bool want_energy);
  void add_prior(const torch::Tensor& x, bool want_energy);  // the base term, into g_out_, e_out_
  // energy() of the network part with a hand-written parameter gradient
  // (EnergyFunction, mlp_energy_function.cpp), x contiguous on the fast path.
  torch::Tensor energy_function(const torch::Tensor& x, torch::TensorList params);
  struct EnergyFunction;
  // denoising_loss() and sliced_loss(): kind and the per-row inputs.
  static constexpr int64_t kDenoising = 0, kSliced = 1;
  torch::Tensor blocked_loss(int64_t kind, const std::vector<torch::Tensor>& rows);
  struct BlockedLossFunction;  // (mlp_blocked_loss.cpp)
  void check_input(const torch::Tensor& x) const;

  MLPEnergyOptions options_;
  int act_ = 0;  // the parsed activation, so the hot path compares no strings
  std::vector<torch::nn::Linear> layers_;
  std::vector<SpectralNorm> spectral_norm_;  // per layer when enabled (buffers u0, u1, ...)
  // Workspace of the analytic pass, reused while the batch shape is unchanged.
  std::vector<torch::Tensor> z_, deriv_, back_;
  torch::Tensor e_out_, g_out_, ones_, zeros_, w0t_;
  std::vector<std::vector<float>> blocked_ws_;  // the blocked passes', one per parallel chunk
};
TORCH_MODULE(MLPEnergy);

// Noise-conditional MLP for multi-scale score matching:
//   E(x, sigma) = f([x, log sigma]) / sigma + |x|^2 / (2 prior_std^2),
// f an MLP on D + 1 inputs. Conditioning on log sigma lets one network fit
// every level (NCSN, Song & Ermon 2019); the 1/sigma factor is NCSN-v2's
// observation (Song & Ermon 2020) that the noisy score scales as 1/sigma, so
// with the sigma^2 weighting sigma * grad E = grad f has unit scale at every
// level and f need not span two orders of magnitude. energy(x) evaluates at
// noise_level (set from options, stored in model.pt): by default sigma_min,
// the least-smoothed density.
struct NoiseConditionalMLPOptions {
  NoiseConditionalMLPOptions(int64_t in_dim, std::vector<int64_t> hidden)
      : in_dim_(in_dim), hidden_(std::move(hidden)) {}
  TORCH_ARG(int64_t, in_dim);                   // input dimension D (f takes D + 1)
  TORCH_ARG(std::vector<int64_t>, hidden);      // hidden widths of f
  TORCH_ARG(std::string, activation) = "swish";  // as MLPEnergyOptions
  TORCH_ARG(bool, spectral_norm) = false;
  TORCH_ARG(double, prior_std) = 0.0;           // Gaussian base term; 0 = none
  TORCH_ARG(double, noise_level) = 0.01;        // sigma used by energy(x) > 0
};

class NoiseConditionalMLPImpl : public NoiseConditionalEnergyImpl {
 public:
  explicit NoiseConditionalMLPImpl(const NoiseConditionalMLPOptions& options);
  torch::Tensor energy_at(const torch::Tensor& x, const torch::Tensor& sigma) override;
  std::vector<int64_t> event_shape() const override { return {options_.in_dim()}; }
  // As MLPEnergyImpl::score_terms, at one noise level per row (sigma [N];
  // undefined: noise_level() for every row).
  std::pair<torch::Tensor, torch::Tensor> score_terms(const torch::Tensor& x, const torch::Tensor& v,
                                                      const torch::Tensor& sigma) override;
  const NoiseConditionalMLPOptions& options() const { return options_; }

 private:
  torch::Tensor with_level(const torch::Tensor& x, const torch::Tensor& sigma) const;
  NoiseConditionalMLPOptions options_;
  MLPEnergy f_{nullptr};
};
TORCH_MODULE(NoiseConditionalMLP);

// ---------------------------------------------------------------------------
// Analytic targets: known moments, log Z and an exact sampler. Every
// statistical test stands on these. energy() is normalised so that
// log Z = log_z() (the log of the integral of exp(-E)).
class AnalyticEnergyImpl : public EnergyImpl {
 public:
  virtual torch::Tensor mean() const = 0;        // [D] float64
  virtual torch::Tensor covariance() const = 0;  // [D, D] float64
  virtual double log_z() const = 0;
  virtual torch::Tensor sample(int64_t n, at::Generator& gen) const = 0;  // [n, D]
  std::vector<int64_t> event_shape() const override { return {dim()}; }
  virtual int64_t dim() const = 0;
};
using AnalyticEnergy = std::shared_ptr<AnalyticEnergyImpl>;

// N(mu, Sigma), E = 1/2 (x-mu)^T Sigma^{-1} (x-mu).
class GaussianEnergyImpl : public AnalyticEnergyImpl {
 public:
  GaussianEnergyImpl(torch::Tensor mean, torch::Tensor cov);
  torch::Tensor energy(const torch::Tensor& x) override;
  torch::Tensor grad(const torch::Tensor& x) override;
  std::pair<torch::Tensor, torch::Tensor> energy_and_grad(const torch::Tensor& x) override;
  torch::Tensor mean() const override { return mean_; }
  torch::Tensor covariance() const override { return cov_; }
  double log_z() const override { return log_z_; }
  torch::Tensor sample(int64_t n, at::Generator& gen) const override;
  int64_t dim() const override { return mean_.size(0); }
  std::pair<torch::Tensor, torch::Tensor> diagonal_quadratic(torch::ScalarType dtype) const override;

 private:
  torch::Tensor centred(const torch::Tensor& x) const;
  torch::Tensor mean_, cov_, precision_, chol_;
  torch::Tensor diag_precision_;    // [D] when the covariance is diagonal, else undefined
  torch::Tensor diag_precision_f_;  // its float32 copy
  torch::Tensor mean_f_;            // float32 copy of the mean
  bool zero_mean_ = false;
  double log_z_;
};

// Mixture sum_k w_k N(mu_k, s_k^2 I); normalised (log Z = 0).
class MixtureEnergyImpl : public AnalyticEnergyImpl {
 public:
  MixtureEnergyImpl(torch::Tensor weights, torch::Tensor means, torch::Tensor stds);
  torch::Tensor energy(const torch::Tensor& x) override;
  torch::Tensor mean() const override;
  torch::Tensor covariance() const override;
  double log_z() const override { return 0.0; }
  torch::Tensor sample(int64_t n, at::Generator& gen) const override;
  int64_t dim() const override { return means_.size(1); }

 private:
  torch::Tensor weights_, means_, stds_;  // [K], [K, D], [K]
};

// Neal's funnel: y ~ N(0, 3^2), x_i | y ~ N(0, exp(y)), i = 1..D-1.
class FunnelEnergyImpl : public AnalyticEnergyImpl {
 public:
  explicit FunnelEnergyImpl(int64_t dim);
  torch::Tensor energy(const torch::Tensor& x) override;
  torch::Tensor mean() const override;
  torch::Tensor covariance() const override;
  double log_z() const override;
  torch::Tensor sample(int64_t n, at::Generator& gen) const override;
  int64_t dim() const override { return dim_; }

 private:
  int64_t dim_;
};

// Banana (Haario et al. 1999, a twisted Gaussian): x1 ~ N(0, s1^2),
// x2 | x1 ~ N(b x1^2, s2^2). Normalised: log Z = log(2 pi s1 s2).
class BananaEnergyImpl : public AnalyticEnergyImpl {
 public:
  BananaEnergyImpl(double s1 = 1.0, double s2 = 0.5, double b = 0.5);
  torch::Tensor energy(const torch::Tensor& x) override;
  torch::Tensor mean() const override;
  torch::Tensor covariance() const override;
  double log_z() const override;
  torch::Tensor sample(int64_t n, at::Generator& gen) const override;
  int64_t dim() const override { return 2; }

 private:
  double s1_, s2_, b_;
};

// Double well along x1, standard Gaussian in the other coordinates:
// E = a (x1^2 - 1)^2 + 1/2 sum_{i>1} x_i^2. Moments of x1 and log Z by
// high-order quadrature; exact sampler by rejection from a Gaussian envelope.
class DoubleWellEnergyImpl : public AnalyticEnergyImpl {
 public:
  explicit DoubleWellEnergyImpl(int64_t dim = 2, double barrier = 2.0);
  torch::Tensor energy(const torch::Tensor& x) override;
  torch::Tensor mean() const override;
  torch::Tensor covariance() const override;
  double log_z() const override;
  torch::Tensor sample(int64_t n, at::Generator& gen) const override;
  int64_t dim() const override { return dim_; }

 private:
  int64_t dim_;
  double a_;
  double log_z1_, var1_;  // of the x1 marginal
};

// Re-draws every Linear / Conv weight and bias from U(-1/sqrt(fan_in),
// 1/sqrt(fan_in)) -- LibTorch's default distribution -- using `gen`, so
// initial weights depend on the run's seed only.
void reset_parameters(torch::nn::Module& module, at::Generator& gen);

// Builds a target from a spec "name[:key=value,...]":
//   gaussian    dim, cond (diagonal, variances log-spaced 1/cond..1) or rho
//               (default: correlated, cov_ij = rho^|i-j|, rho = 0.5)
//   neal100     Neal's 100-d Gaussian, standard deviations 0.01, 0.02, ..., 1.00
//   funnel      dim (default 10)      mixture  dim (default 2)
//   banana      b (curvature)         double_well  dim, barrier
// `default_dim` > 0 applies when the spec has no dim (0 = the target's own default).
AnalyticEnergy make_target(const std::string& spec, int64_t default_dim = 0);
const std::vector<std::string>& target_names();

}  // namespace ebm
