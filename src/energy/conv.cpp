#include "ebm/energy/conv.h"

#include "ebm/core/error.h"

namespace ebm {

torch::Tensor apply_activation(const std::string& name, const torch::Tensor& z) {
  if (name == "swish" || name == "silu") return torch::silu(z);
  if (name == "softplus") return torch::softplus(z);
  if (name == "elu") return torch::elu(z);
  if (name == "leaky_relu") return torch::leaky_relu(z, 0.2);
  fail(ExitCode::kBadConfig, "energy.activation must be one of swish, softplus, elu, leaky_relu; got '",
       name, "'");
}

ConvEnergyImpl::ConvEnergyImpl(const ConvEnergyOptions& o) : options_(o) {
  const auto& shape = o.event_shape();
  auto list = [](const std::vector<int64_t>& v) { return c10::IntArrayRef(v); };
  EBM_CHECK_CONFIG(shape.size() == 3 && shape[0] >= 1 && shape[1] >= 1 && shape[2] >= 1,
                   "energy.name = \"conv\" takes images [C, H, W]; the data have event shape ",
                   list(shape), " (vectors: energy.name = \"mlp\")");
  const size_t n = o.channels().size();
  EBM_CHECK_CONFIG(n >= 1, "energy.channels must list at least one conv layer");
  EBM_CHECK_CONFIG(o.kernels().size() == n && o.strides().size() == n && o.paddings().size() == n,
                   "energy.kernels, energy.strides and energy.paddings must have one entry per "
                   "energy.channels entry (", n, "), got ", o.kernels().size(), ", ",
                   o.strides().size(), ", ", o.paddings().size());
  apply_activation(o.activation(), torch::zeros({1}));  // refuses an unknown name now
  EBM_CHECK_CONFIG(o.classes() >= 0, "energy.classes must be >= 0, got ", o.classes());
  EBM_CHECK_CONFIG(o.prior_std() >= 0 && std::isfinite(o.prior_std()),
                   "energy.prior_std must be >= 0, got ", o.prior_std());
  int64_t c = shape[0], h = shape[1], w = shape[2];
  for (size_t i = 0; i < n; ++i) {
    const int64_t out = o.channels()[i], k = o.kernels()[i], s = o.strides()[i], p = o.paddings()[i];
    EBM_CHECK_CONFIG(out >= 1 && k >= 1 && s >= 1 && p >= 0, "energy conv layer ", i,
                     ": channels, kernel and stride must be >= 1 and padding >= 0, got ", out, ", ",
                     k, ", ", s, ", ", p);
    h = (h + 2 * p - k) / s + 1;
    w = (w + 2 * p - k) / s + 1;
    EBM_CHECK_CONFIG(h >= 1 && w >= 1, "energy conv layer ", i, " (kernel ", k, ", stride ", s,
                     ", padding ", p, ") leaves no pixels of the ", list(shape), " input");
    convs_.push_back(register_module("conv" + std::to_string(i),
                                     torch::nn::Conv2d(torch::nn::Conv2dOptions(c, out, k).stride(s).padding(p))));
    c = out;
  }
  int64_t width = c * h * w;
  for (size_t i = 0; i <= o.hidden().size(); ++i) {
    const int64_t out = i < o.hidden().size() ? o.hidden()[i] : std::max<int64_t>(1, o.classes());
    EBM_CHECK_CONFIG(out >= 1, "energy.hidden widths must be >= 1, got ", out);
    dense_.push_back(register_module("dense" + std::to_string(i), torch::nn::Linear(width, out)));
    width = out;
  }
  if (o.spectral_norm()) {
    for (size_t i = 0; i < convs_.size(); ++i)
      sn_.emplace_back(*this, "u_conv" + std::to_string(i), o.channels()[i]);
    for (size_t i = 0; i < dense_.size(); ++i)
      sn_.emplace_back(*this, "u_dense" + std::to_string(i), dense_[i]->weight.size(0));
  }
}

torch::Tensor ConvEnergyImpl::weight(size_t i, const torch::Tensor& w) {
  if (sn_.empty()) return w;
  // (one power iteration per training forward; sampling freezes the
  // parameters, so the normalisation is reused across its steps)
  const bool update = is_training() && torch::GradMode::is_enabled() && w.requires_grad();
  return sn_[i].normalise(w, update);
}

torch::Tensor ConvEnergyImpl::act(const torch::Tensor& z) const {
  return apply_activation(options_.activation(), z);
}

torch::Tensor marginal_energy(const torch::Tensor& out, int64_t classes) {
  return classes > 0 ? -torch::logsumexp(-out, 1) : out.squeeze(1);
}

torch::Tensor with_base_term(const torch::Tensor& out, const torch::Tensor& x, double prior_std) {
  if (prior_std <= 0) return out;
  return out + (x.flatten(1).pow(2).sum(1) / (2 * prior_std * prior_std)).unsqueeze(1);
}

torch::Tensor ConvEnergyImpl::penultimate(const torch::Tensor& x) {
  const auto& shape = options_.event_shape();
  TORCH_CHECK(x.dim() == 4 && x.sizes().slice(1).vec() == shape, "ConvEnergy: want [B, ",
              c10::IntArrayRef(shape), "] input, got ", x.sizes());
  auto h = x;
  const size_t nc = convs_.size();
  for (size_t i = 0; i < nc; ++i) {
    const int64_t s = options_.strides()[i], p = options_.paddings()[i];
    const auto w = weight(i, convs_[i]->weight);
    h = act(small_input_conv_applies(h, w) ? small_input_conv2d(h, w, convs_[i]->bias, s, p)
                                           : torch::conv2d(h, w, convs_[i]->bias, {s, s}, {p, p}));
  }
  h = h.flatten(1);
  for (size_t i = 0; i + 1 < dense_.size(); ++i)
    h = act(torch::linear(h, weight(nc + i, dense_[i]->weight), dense_[i]->bias));
  return h;
}

torch::Tensor ConvEnergyImpl::outputs(const torch::Tensor& x) {
  const size_t last = dense_.size() - 1;
  auto out = torch::linear(penultimate(x), weight(convs_.size() + last, dense_[last]->weight), dense_[last]->bias);
  return with_base_term(out, x, options_.prior_std());  // [B, max(1, K)]
}

torch::Tensor ConvEnergyImpl::energy(const torch::Tensor& x) { return marginal_energy(outputs(x), options_.classes()); }

torch::Tensor ConvEnergyImpl::class_energies(const torch::Tensor& x) {
  return options_.classes() > 0 ? outputs(x) : torch::Tensor();
}

torch::Tensor ConvEnergyImpl::features(const torch::Tensor& x) { return penultimate(x); }

}  // namespace ebm
