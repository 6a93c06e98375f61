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

 private:
  torch::Tensor weight(size_t i);
  ClassifierMLPOptions options_;
  std::vector<torch::nn::Linear> layers_;
  std::vector<SpectralNorm> sn_;
};
TORCH_MODULE(ClassifierMLP);

}  // namespace ebm
