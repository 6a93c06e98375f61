#include "ebm/energy/classifier_mlp.h"

#include "ebm/core/error.h"
#include "ebm/energy/conv.h"

namespace ebm {

ClassifierMLPImpl::ClassifierMLPImpl(const ClassifierMLPOptions& o) : options_(o) {
  EBM_CHECK_CONFIG(o.in_dim() >= 1, "ClassifierMLP: in_dim must be >= 1, got ", o.in_dim());
  EBM_CHECK_CONFIG(o.classes() >= 1, "energy.classes must be >= 1, got ", o.classes());
  EBM_CHECK_CONFIG(!o.hidden().empty(), "energy.hidden must list at least one width");
  EBM_CHECK_CONFIG(o.prior_std() >= 0 && std::isfinite(o.prior_std()),
                   "energy.prior_std must be >= 0, got ", o.prior_std());
  apply_activation(o.activation(), torch::zeros({1}));  // refuses an unknown name now
  int64_t in = o.in_dim();
  for (size_t i = 0; i <= o.hidden().size(); ++i) {
    const int64_t out = i < o.hidden().size() ? o.hidden()[i] : o.classes();
    EBM_CHECK_CONFIG(out >= 1, "energy.hidden widths must be >= 1, got ", out);
    layers_.push_back(register_module("fc" + std::to_string(i), torch::nn::Linear(in, out)));
    if (o.spectral_norm()) sn_.emplace_back(*this, "u" + std::to_string(i), out);
    in = out;
  }
}

torch::Tensor ClassifierMLPImpl::weight(size_t i) {
  const auto& w = layers_[i]->weight;
  if (sn_.empty()) return w;
  const bool update = is_training() && torch::GradMode::is_enabled() && w.requires_grad();
  return sn_[i].normalise(w, update);
}

torch::Tensor ClassifierMLPImpl::features(const torch::Tensor& x) {
  EBM_CHECK_DATA(x.dim() == 2 && x.size(1) == options_.in_dim(), "classifier MLP expects [B, ",
                 options_.in_dim(), "] input, got ", x.sizes());
  auto h = x;
  for (size_t i = 0; i + 1 < layers_.size(); ++i)
    h = apply_activation(options_.activation(), torch::linear(h, weight(i), layers_[i]->bias));
  return h;
}

torch::Tensor ClassifierMLPImpl::class_energies(const torch::Tensor& x) {
  const size_t last = layers_.size() - 1;
  auto out = torch::linear(features(x), weight(last), layers_[last]->bias);
  return with_base_term(out, x, options_.prior_std());
}

torch::Tensor ClassifierMLPImpl::energy(const torch::Tensor& x) {
  return marginal_energy(class_energies(x), options_.classes());
}

}  // namespace ebm
