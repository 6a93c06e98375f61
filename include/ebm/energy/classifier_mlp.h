// A classifier MLP on vectors [B, D] with one output per class: E(x, y) =
// out(x)[y] (its logits are -E(x, y)), E(x) = -logsumexp_y(-E(x, y)) plus the
// optional Gaussian base term on every output. The class-conditional form of
// energy.name = "mlp" (energy.conditional = true) and the vector network of
// energy.name = "jem". ATen operations throughout (dE/dx by autograd): the
// hand-written kernels of MLPEnergy are for its one scalar output.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "ebm/energy/energy.h"
#include "ebm/energy/spectral_norm.h"

namespace ebm {

struct ClassifierMLPOptions {
  ClassifierMLPOptions(int64_t in_dim, std::vector<int64_t> hidden, int64_t classes)
      : in_dim_(in_dim), hidden_(std::move(hidden)), classes_(classes) {}
  TORCH_ARG(int64_t, in_dim);
  TORCH_ARG(std::vector<int64_t>, hidden);
  TORCH_ARG(int64_t, classes);                   // >= 1
  TORCH_ARG(std::string, activation) = "swish";  // swish | softplus | elu | leaky_relu
  TORCH_ARG(bool, spectral_norm) = false;
  TORCH_ARG(double, prior_std) = 0.0;  // std of the Gaussian base term; 0 = none
  // A base fitted to the data under the network's outputs (energy.base):
  //   "gaussian": one Gaussian for every output, E(x, y) = out(x)[y] +
  //     1/2 (x - m)^T C^-1 (x - m); p(y | x) is the network's alone.
  //   "classes": a Gaussian per class with one shared covariance and the
  //     classes' shares (linear discriminant analysis' model), E(x, y) =
  //     out(x)[y] + 1/2 (x - m_y)^T C^-1 (x - m_y) - log pi_y: p(x) is a
  //     mixture of them, p(y | x) starts as LDA's posterior and the network
  //     learns what it misses.
  //   "none": no base.
  // The fitted values are buffers (zero, so no term, until fit_base).
  TORCH_ARG(std::string, base) = "none";
};

class ClassifierMLPImpl : public EnergyImpl {
 public:
  explicit ClassifierMLPImpl(const ClassifierMLPOptions& options);
  torch::Tensor energy(const torch::Tensor& x) override;
  std::vector<int64_t> event_shape() const override { return {options_.in_dim()}; }
  int64_t num_classes() const override { return options_.classes(); }
  torch::Tensor class_energies(const torch::Tensor& x) override;  // [B, K]
  torch::Tensor features(const torch::Tensor& x) override;        // last hidden layer [B, H]
  const ClassifierMLPOptions& options() const { return options_; }
  // Fits the base to rows [N, D] (the model's units) with their labels [N]
  // (class indices; rows outside 0 .. K-1 and an undefined tensor count as
  // unlabelled): the mean and covariance, for "classes" the labelled rows'
  // class means, their pooled within-class covariance and the shares
  // (n_k + 1) / (n + K); plus a ridge of 1e-4 of the mean variance, for
  // constant columns; at most 20,000 evenly spaced rows. Fewer labelled rows
  // than K + 1: one Gaussian for all classes, equal shares. "classes" also
  // zeroes the last layer (unless spectral norm normalises it), so that the
  // model starts as the base. Not the covariance plus sigma^2 I that a
  // denoising term at noise sigma has as its optimum: on 48-d Gaussian
  // classes (JEM, p(x) by DSM at 0.1) that smoothed one-Gaussian base ranked
  // a shift along the low-variance directions at AUROC 0.844, this one at
  // 0.882 (test NLL 46.0 against 44.5, truth 43.0). kBadConfig without a base.
  // Returns the covariance's ridge, a multiple of each column's variance
  // (core/covariance.h; at least 1e-4). equal_shares: pi_y = 1 / K (a run
  // whose batches draw the classes equally often, data.balance).
  double fit_base(const torch::Tensor& rows, const torch::Tensor& labels = {}, bool equal_shares = false);

 private:
  torch::Tensor weight(size_t i);
  ClassifierMLPOptions options_;
  std::vector<torch::nn::Linear> layers_;
  std::vector<SpectralNorm> sn_;
  // base_mean [D] ("gaussian") or [K, D] ("classes"), base_w [D, D] with
  // W W^T = C^-1, base_logp [K] ("classes": log pi_y)
  torch::Tensor base_mean_, base_w_, base_logp_;
};
TORCH_MODULE(ClassifierMLP);

}  // namespace ebm
