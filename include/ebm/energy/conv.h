// Convolutional energy for images [B, C, H, W] -> [B] (IGEBM, Du & Mordatch
// 2019, their small conv net): E(x) = w . act(W_h ... act(flatten(conv_L(...
// act(conv_1(x))))) + b + |x|^2 / (2 prior_std^2). Each conv layer has its
// own channels, kernel, stride and padding; the defaults are BENCHMARKS.md's
// igebm-fmnist net (Conv 16 k5 s2 p4, 32 k3 s2 p1, 64 k3 s2 p1, 64 k3 s2 p1,
// Linear 64, Linear 1). dE/dx comes from autograd (EnergyImpl's default).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "ebm/energy/energy.h"
#include "ebm/energy/spectral_norm.h"

namespace ebm {

struct ConvEnergyOptions {
  explicit ConvEnergyOptions(std::vector<int64_t> event_shape) : event_shape_(std::move(event_shape)) {}
  TORCH_ARG(std::vector<int64_t>, event_shape);                  // [C, H, W]
  TORCH_ARG(std::vector<int64_t>, channels) = std::vector<int64_t>{16, 32, 64, 64};
  TORCH_ARG(std::vector<int64_t>, kernels) = std::vector<int64_t>{5, 3, 3, 3};
  TORCH_ARG(std::vector<int64_t>, strides) = std::vector<int64_t>{2, 2, 2, 2};
  TORCH_ARG(std::vector<int64_t>, paddings) = std::vector<int64_t>{4, 1, 1, 1};
  TORCH_ARG(std::vector<int64_t>, hidden) = std::vector<int64_t>{64};  // dense widths after the convs
  TORCH_ARG(std::string, activation) = "swish";  // swish | softplus | elu | leaky_relu
  TORCH_ARG(bool, spectral_norm) = false;        // every weight W / sigma_max(W) (power iteration
                                                 // per training forward, cached while parameters are frozen)
  TORCH_ARG(double, prior_std) = 0.0;            // Gaussian base term; 0 = none
  TORCH_ARG(int64_t, classes) = 0;               // > 0: one output per class, E(x, y) (conditional)
};

class ConvEnergyImpl : public EnergyImpl {
 public:
  explicit ConvEnergyImpl(const ConvEnergyOptions& options);
  torch::Tensor energy(const torch::Tensor& x) override;
  std::vector<int64_t> event_shape() const override { return options_.event_shape(); }
  int64_t num_classes() const override { return options_.classes(); }
  torch::Tensor class_energies(const torch::Tensor& x) override;
  torch::Tensor features(const torch::Tensor& x) override;
  const ConvEnergyOptions& options() const { return options_; }

 private:
  // Every output [B, max(1, classes)], base term included.
  torch::Tensor outputs(const torch::Tensor& x);
  // The activations before the last linear layer [B, F].
  torch::Tensor penultimate(const torch::Tensor& x);
  torch::Tensor act(const torch::Tensor& z) const;
  // Weight as used: spectrally normalised when enabled.
  torch::Tensor weight(size_t i, const torch::Tensor& w);
  ConvEnergyOptions options_;
  std::vector<torch::nn::Conv2d> convs_;
  std::vector<torch::nn::Linear> dense_;
  std::vector<SpectralNorm> sn_;  // convs then dense layers
};
TORCH_MODULE(ConvEnergy);

// Applies a named activation of mlp_activations() with ATen operations.
torch::Tensor apply_activation(const std::string& name, const torch::Tensor& z);
// conv2d(x, w, bias, stride, padding) for images of few channels (a first
// layer) as one im2col matrix product, with a hand-written backward for x,
// w and bias (src/energy/small_input_conv.cpp); first-order gradients only.
// Applies to float32 CPU inputs with at most 3 channels and square kernels,
// while the fast paths are on (core/device.h; EBM_FAST_PATHS=0 turns them off).
bool small_input_conv_applies(const torch::Tensor& x, const torch::Tensor& w);
torch::Tensor small_input_conv2d(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias,
                                 int64_t stride, int64_t padding);

// The energy of a network with `classes` outputs per row, out [B, max(1, K)]:
// the single output, or for K > 0 the marginal -logsumexp_y(-out[:, y]).
torch::Tensor marginal_energy(const torch::Tensor& out, int64_t classes);
// out [B, K] plus the Gaussian base term |x|^2 / (2 prior_std^2) of each row
// (none when prior_std = 0).
torch::Tensor with_base_term(const torch::Tensor& out, const torch::Tensor& x, double prior_std);

}  // namespace ebm
