#include "ebm/energy/generator.h"

#include <cmath>

#include "ebm/core/error.h"
#include "ebm/energy/conv.h"

namespace ebm {

GeneratorImpl::GeneratorImpl(GeneratorOptions o) : options_(std::move(o)) {
  EBM_CHECK_CONFIG(options_.latent_dim() >= 1, "generator.latent_dim must be >= 1, got ", options_.latent_dim());
  EBM_CHECK_CONFIG(options_.init_sigma() > 0 && std::isfinite(options_.init_sigma()),
                   "generator.init_sigma must be > 0, got ", options_.init_sigma());
  if (options_.activation() != "relu") apply_activation(options_.activation(), torch::zeros({1}));
  log_sigma_ = register_parameter("log_sigma", torch::full({1}, std::log(options_.init_sigma())));
}

torch::Tensor GeneratorImpl::latent(int64_t n, at::Generator& gen) const {
  return at::normal(0.0, 1.0, {n, options_.latent_dim()}, gen, log_sigma_.options().requires_grad(false));
}

torch::Tensor GeneratorImpl::act(const torch::Tensor& z) const {
  return options_.activation() == "relu" ? torch::relu(z) : apply_activation(options_.activation(), z);
}

torch::Tensor GeneratorImpl::draw(const torch::Tensor& z, at::Generator& gen) {
  torch::NoGradGuard ng;
  auto mu = mean(z);
  return mu + sigma() * at::normal(0.0, 1.0, mu.sizes(), gen, mu.options());
}

MLPGeneratorImpl::MLPGeneratorImpl(GeneratorOptions o) : GeneratorImpl(std::move(o)) {
  const auto& shape = options_.event_shape();
  EBM_CHECK_CONFIG(shape.size() == 1 && shape[0] >= 1, "generator.name = \"mlp\" draws vectors [D]; the data have "
                   "event shape ", c10::IntArrayRef(shape), " (images: generator.name = \"deconv\")");
  EBM_CHECK_CONFIG(!options_.hidden().empty(), "generator.hidden must list at least one width");
  int64_t in = options_.latent_dim();
  for (size_t i = 0; i <= options_.hidden().size(); ++i) {
    const int64_t out = i < options_.hidden().size() ? options_.hidden()[i] : shape[0];
    EBM_CHECK_CONFIG(out >= 1, "generator.hidden widths must be >= 1, got ", out);
    layers_.push_back(register_module("fc" + std::to_string(i), torch::nn::Linear(in, out)));
    if (options_.batch_norm() && i < options_.hidden().size())
      norms_.push_back(register_module("bn" + std::to_string(i), torch::nn::BatchNorm1d(out)));
    in = out;
  }
}

torch::Tensor MLPGeneratorImpl::mean(const torch::Tensor& z) {
  auto h = z;
  for (size_t i = 0; i + 1 < layers_.size(); ++i) {
    h = layers_[i]->forward(h);
    if (!norms_.empty()) h = norms_[i]->forward(h);
    h = act(h);
  }
  return layers_.back()->forward(h);
}

std::vector<torch::Tensor> MLPGeneratorImpl::batch_norm_scales() const {
  std::vector<torch::Tensor> s;
  for (const auto& n : norms_) s.push_back(n->weight);
  return s;
}

DeconvGeneratorImpl::DeconvGeneratorImpl(GeneratorOptions o) : GeneratorImpl(std::move(o)) {
  const auto& shape = options_.event_shape();
  EBM_CHECK_CONFIG(shape.size() == 3 && shape[1] >= 1 && shape[2] >= 1,
                   "generator.name = \"deconv\" draws images [C, H, W]; the data have event shape ",
                   c10::IntArrayRef(shape));
  EBM_CHECK_CONFIG(options_.channels().size() == 2 && options_.channels()[0] >= 1 && options_.channels()[1] >= 1,
                   "generator.channels must give two widths >= 1 (the 1/4 and 1/2 resolution layers)");
  EBM_CHECK_CONFIG(options_.hi() > options_.lo(), "the generator's output range must be increasing");
  const int64_t c0 = options_.channels()[0], c1 = options_.channels()[1];
  // (sides that are not multiples of 4 are drawn at the next multiple and
  // cropped to the centre: 30 x 30 images from 32 x 32 draws)
  const int64_t h4 = (shape[1] + 3) / 4, w4 = (shape[2] + 3) / 4;
  fc_ = register_module("fc", torch::nn::Linear(options_.latent_dim(), c0 * h4 * w4));
  up1_ = register_module("up1", torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(c0, c1, 4).stride(2).padding(1)));
  up2_ = register_module("up2",
                         torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(c1, shape[0], 4).stride(2).padding(1)));
  if (options_.batch_norm()) {
    bn0_ = register_module("bn0", torch::nn::BatchNorm1d(c0 * h4 * w4));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(c1));
  }
}

torch::Tensor DeconvGeneratorImpl::mean(const torch::Tensor& z) {
  const auto& shape = options_.event_shape();
  auto h = fc_->forward(z);
  if (bn0_) h = bn0_->forward(h);
  const int64_t h4 = (shape[1] + 3) / 4, w4 = (shape[2] + 3) / 4;
  h = act(h).view({z.size(0), options_.channels()[0], h4, w4});
  h = up1_->forward(h);
  if (bn1_) h = bn1_->forward(h);
  h = up2_->forward(act(h));
  if (4 * h4 != shape[1] || 4 * w4 != shape[2])
    h = h.narrow(2, (4 * h4 - shape[1]) / 2, shape[1]).narrow(3, (4 * w4 - shape[2]) / 2, shape[2]);
  return options_.lo() + (options_.hi() - options_.lo()) * (torch::tanh(h) + 1) / 2;
}

std::vector<torch::Tensor> DeconvGeneratorImpl::batch_norm_scales() const {
  if (!bn0_) return {};
  return {bn0_->weight, bn1_->weight};
}

namespace {
GeneratorOptions common_options(const Config& c, const std::vector<int64_t>& shape) {
  return GeneratorOptions(shape)
      .latent_dim(c.get_int("generator.latent_dim"))
      .activation(c.get_string("generator.activation"))
      .batch_norm(c.get_bool("generator.batch_norm"))
      .init_sigma(c.get_float("generator.init_sigma"));
}
}  // namespace

const GeneratorRegistry& generator_registry() {
  static const GeneratorRegistry reg = [] {
    GeneratorRegistry r("generator", "generator", "name", "none",
                        "the learned sampler's network: none, mlp (vectors), deconv (images)");
    r.add({"none", "no generator (MCMC or score-matching objectives)", {}},
          [](const Config&, const std::vector<int64_t>&) -> Generator { return nullptr; });
    r.add({"mlp", "an MLP from z to vectors [D]",
           {{"hidden", std::vector<int64_t>{128, 128}, "hidden widths"}}},
          [](const Config& c, const std::vector<int64_t>& shape) -> Generator {
            return std::make_shared<MLPGeneratorImpl>(common_options(c, shape).hidden(c.get_int_list("generator.hidden")));
          });
    r.add({"deconv", "a dense layer and two stride-2 transposed convolutions from z to images [C, H, W]",
           {{"channels", std::vector<int64_t>{64, 32}, "widths at 1/4 and 1/2 resolution"}}},
          [](const Config& c, const std::vector<int64_t>& shape) -> Generator {
            return std::make_shared<DeconvGeneratorImpl>(
                common_options(c, shape).channels(c.get_int_list("generator.channels")));
          });
    return r;
  }();
  return reg;
}

Section generator_section() {
  return {"generator",
          {{"latent_dim", int64_t(2), "dimensions of z ~ N(0, I)"},
           {"activation", std::string("relu"), "relu | swish | softplus | elu | leaky_relu"},
           {"batch_norm", false, "batch normalisation before each hidden activation"},
           {"init_sigma", 0.01, "the Gaussian decoder's noise std at the start (vera)"},
           {"lr", 0.0, "the generator's learning rate; 0 = train.lr"},
           {"beta1", -1.0, "its Adam beta1; < 0 = train.beta1"},
           {"beta2", -1.0, "its Adam beta2; < 0 = train.beta2"}},
          {generator_registry().group()}};
}

Generator build_generator(const Config& cfg, const std::vector<int64_t>& event_shape) {
  return generator_registry().make(cfg, event_shape);
}

}  // namespace ebm
