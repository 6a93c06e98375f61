// IGEBM's residual energy for images (Du & Mordatch 2019, their ResNet
// energies): a 3x3 stem convolution, stages of residual blocks with average
// pooling between stages, the activation, a sum over positions and a linear
// read-out: E(x) = w . sum_{i,j} act(h_L)[:, i, j] + b (+ the base term).
//   Block(a, b): x -> skip(x) + conv3x3_b(act(conv3x3_a(act(x)))),
//   skip = conv1x1 when a != b, else the identity.
// Every weight spectrally normalised by default (Miyato et al. 2018). The
// defaults are BENCHMARKS.md's resnet-fmnist net: channels {16, 32, 32}, one
// block per stage.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "ebm/energy/energy.h"
#include "ebm/energy/spectral_norm.h"

namespace ebm {

struct ResNetEnergyOptions {
  explicit ResNetEnergyOptions(std::vector<int64_t> event_shape) : event_shape_(std::move(event_shape)) {}
  TORCH_ARG(std::vector<int64_t>, event_shape);                  // [C, H, W]
  TORCH_ARG(std::vector<int64_t>, channels) = std::vector<int64_t>{16, 32, 32};  // per stage
  TORCH_ARG(std::vector<int64_t>, blocks) = std::vector<int64_t>{1, 1, 1};       // per stage
  TORCH_ARG(std::string, activation) = "swish";  // swish | softplus | elu | leaky_relu
  TORCH_ARG(bool, spectral_norm) = true;
  TORCH_ARG(double, prior_std) = 0.0;            // Gaussian base term; 0 = none
  TORCH_ARG(int64_t, classes) = 0;               // > 0: one output per class (conditional)
};

class ResNetEnergyImpl : public EnergyImpl {
 public:
  explicit ResNetEnergyImpl(const ResNetEnergyOptions& options);
  torch::Tensor energy(const torch::Tensor& x) override;
  std::vector<int64_t> event_shape() const override { return options_.event_shape(); }
  int64_t num_classes() const override { return options_.classes(); }
  torch::Tensor class_energies(const torch::Tensor& x) override;
  torch::Tensor features(const torch::Tensor& x) override;  // the summed features [B, channels.back()]
  const ResNetEnergyOptions& options() const { return options_; }

 private:
  torch::Tensor outputs(const torch::Tensor& x);  // [B, max(1, classes)]
  torch::nn::Conv2d add_conv(const std::string& name, int64_t in, int64_t out, int64_t k);
  torch::Tensor conv(size_t i, const torch::Tensor& h);  // convs_[i] with its normalised weight
  torch::Tensor weight(size_t i, const torch::Tensor& w);
  torch::Tensor act(const torch::Tensor& z) const;

  struct Block {
    size_t c1, c2;
    int64_t skip = -1;  // index into convs_, -1 = identity
    bool pool_after = false;
  };
  ResNetEnergyOptions options_;
  std::vector<torch::nn::Conv2d> convs_;  // stem first
  std::vector<Block> blocks_;
  torch::nn::Linear head_{nullptr};
  std::vector<SpectralNorm> sn_;  // one per conv, then the head's
};
TORCH_MODULE(ResNetEnergy);

}  // namespace ebm
