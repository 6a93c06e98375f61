// Generators q(x) for the learned-sampler objectives (Kim & Bengio 2016,
// MEG, VERA): x = g(z) (+ sigma eps, VERA's Gaussian decoder), z ~ N(0, I)
// of `latent_dim` dimensions. `mlp` maps to vectors [D]; `deconv` maps to
// images [C, H, W] by a dense layer to [C0, H/4, W/4] and two stride-2
// transposed convolutions, squashed into the pixel range by tanh (sides not
// multiples of 4: drawn at the next multiple, cropped to the centre). Batch
// normalisation (optional) sits before each hidden activation; its scales
// are what Kim & Bengio's entropy estimate reads.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "ebm/core/registry.h"

namespace ebm {

struct GeneratorOptions {
  explicit GeneratorOptions(std::vector<int64_t> event_shape) : event_shape_(std::move(event_shape)) {}
  TORCH_ARG(std::vector<int64_t>, event_shape);
  TORCH_ARG(int64_t, latent_dim) = 2;
  TORCH_ARG(std::vector<int64_t>, hidden) = std::vector<int64_t>{128, 128};  // mlp widths
  TORCH_ARG(std::vector<int64_t>, channels) = std::vector<int64_t>{64, 32};  // deconv: C0 and the middle layer
  TORCH_ARG(std::string, activation) = "relu";  // relu | swish | softplus | elu | leaky_relu
  TORCH_ARG(bool, batch_norm) = false;
  TORCH_ARG(double, init_sigma) = 0.01;  // the decoder noise std sigma at the start (VERA)
  TORCH_ARG(double, lo) = -1.0;          // deconv: the output range (tanh squashed)
  TORCH_ARG(double, hi) = 1.0;
};

class GeneratorImpl : public torch::nn::Module {
 public:
  explicit GeneratorImpl(GeneratorOptions options);
  // g(z) [B, ...event] for z [B, latent_dim].
  virtual torch::Tensor mean(const torch::Tensor& z) = 0;
  // z ~ N(0, I) [n, latent_dim].
  torch::Tensor latent(int64_t n, at::Generator& gen) const;
  // sigma (differentiable), clamped where the objective keeps it.
  torch::Tensor sigma() const { return log_sigma_.exp(); }
  // Draws g(z) + sigma eps, eps ~ N(0, I) from `gen` (no gradient taken).
  torch::Tensor draw(const torch::Tensor& z, at::Generator& gen);
  torch::Tensor& log_sigma() { return log_sigma_; }
  // The batch-norm scales gamma of every normalised layer (Kim & Bengio).
  virtual std::vector<torch::Tensor> batch_norm_scales() const = 0;
  const GeneratorOptions& options() const { return options_; }
  std::vector<int64_t> event_shape() const { return options_.event_shape(); }
  int64_t latent_dim() const { return options_.latent_dim(); }

 protected:
  torch::Tensor act(const torch::Tensor& z) const;
  GeneratorOptions options_;
  torch::Tensor log_sigma_;
};
using Generator = std::shared_ptr<GeneratorImpl>;

class MLPGeneratorImpl : public GeneratorImpl {
 public:
  explicit MLPGeneratorImpl(GeneratorOptions options);
  torch::Tensor mean(const torch::Tensor& z) override;
  std::vector<torch::Tensor> batch_norm_scales() const override;

 private:
  std::vector<torch::nn::Linear> layers_;
  std::vector<torch::nn::BatchNorm1d> norms_;
};

class DeconvGeneratorImpl : public GeneratorImpl {
 public:
  explicit DeconvGeneratorImpl(GeneratorOptions options);
  torch::Tensor mean(const torch::Tensor& z) override;
  std::vector<torch::Tensor> batch_norm_scales() const override;

 private:
  torch::nn::Linear fc_{nullptr};
  torch::nn::ConvTranspose2d up1_{nullptr}, up2_{nullptr};
  torch::nn::BatchNorm1d bn0_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
};

// The [generator] section: generator.name (none | mlp | deconv) and keys.
using GeneratorRegistry = ComponentRegistry<Generator, const std::vector<int64_t>&>;
const GeneratorRegistry& generator_registry();
Section generator_section();
// The generator cfg names for samples of `event_shape`; null for "none".
Generator build_generator(const Config& cfg, const std::vector<int64_t>& event_shape);

}  // namespace ebm
