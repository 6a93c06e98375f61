#include "ebm/energy/classifier_mlp.h"

#include <algorithm>
#include <cmath>

#include "ebm/core/covariance.h"
#include "ebm/core/error.h"
#include "ebm/core/subsample.h"
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
  const std::string& base = o.base();
  EBM_CHECK_CONFIG(base == "none" || base == "gaussian" || base == "classes",
                   "energy.base must be gaussian, classes or none, got '", base, "'");
  if (base != "none") {
    base_mean_ = register_buffer("base_mean", base == "classes" ? torch::zeros({o.classes(), o.in_dim()})
                                                                : torch::zeros({o.in_dim()}));
    base_w_ = register_buffer("base_w", torch::zeros({o.in_dim(), o.in_dim()}));
    if (base == "classes") base_logp_ = register_buffer("base_logp", torch::zeros({o.classes()}));
  }
}

double ClassifierMLPImpl::fit_base(const torch::Tensor& rows, const torch::Tensor& labels, bool equal_shares) {
  EBM_CHECK_CONFIG(options_.base() != "none", "fit_base: the network has no base (energy.base)");
  const int64_t k = options_.classes();
  EBM_CHECK_DATA(rows.dim() == 2 && rows.size(1) == options_.in_dim() && rows.size(0) >= 2,
                 "energy.base = ", options_.base(), ": needs at least 2 training rows of ", options_.in_dim(),
                 " values");
  torch::NoGradGuard ng;
  auto x = rows.detach().to(torch::kCPU, torch::kDouble);
  const int64_t n = x.size(0), d = x.size(1);
  // (-1: unlabelled)
  auto y = labels.defined() && labels.numel() == n ? labels.detach().to(torch::kCPU, torch::kLong).flatten()
                                                   : torch::full({n}, int64_t(-1), torch::kLong);
  y = torch::where((y >= 0) & (y < k), y, torch::full_like(y, -1));
  if (n > 20000) {  // (evenly spaced rows: the covariance of 20,000 is as good)
    const auto pick = evenly_spaced(n, 20000);
    x = x.index_select(0, pick);
    y = y.index_select(0, pick);
  }
  const auto mean = x.mean(0);
  auto xc = x - mean;
  const bool classes = options_.base() == "classes";
  const auto labelled = y >= 0;
  const int64_t n_lab = labelled.sum().item<int64_t>();
  const bool by_class = classes && n_lab >= k + 1;
  torch::Tensor means = mean.unsqueeze(0).expand({k, d}).clone();
  torch::Tensor logp = torch::full({k}, -std::log(double(k)), torch::kDouble);
  int64_t dof = x.size(0) - 1;
  if (by_class) {
    const auto xl = x.index({labelled}), yl = y.index({labelled});
    const auto counts = torch::bincount(yl, {}, k).to(torch::kDouble);
    const auto sums = torch::zeros({k, d}, torch::kDouble).index_add_(0, yl, xl);
    // (a class without labelled rows sits at the rows' mean)
    means = torch::where(counts.unsqueeze(1) > 0, sums / counts.clamp_min(1).unsqueeze(1), means);
    if (!equal_shares) logp = ((counts + 1) / double(n_lab + k)).log();
    xc = xl - means.index_select(0, yl);
    dof = n_lab - (counts > 0).sum().item<int64_t>();
  }
  auto cov = xc.t().mm(xc) / double(std::max<int64_t>(dof, 1));
  // (a column of one value has no spread to fit: a ridge of
  // the mean variance's 1e-4 gave it a precision of 2,500 in the model's
  // units and a probe's 16 all-zero ReLU columns a DSM loss of 8,680 against
  // 128; such columns get the other columns' mean variance, uncorrelated)
  const auto var = cov.diagonal().clone();
  const auto flat = var <= 1e-8 * std::max(var.max().item<double>(), 1e-300);
  const auto spread = ~flat;
  const double mean_var = spread.any().item<bool>() ? var.index({spread}).mean().item<double>() : 1.0;
  if (flat.any().item<bool>()) {
    const auto idx = flat.nonzero().squeeze(1);
    cov.index_fill_(0, idx, 0.0);
    cov.index_fill_(1, idx, 0.0);
    cov.diagonal().index_fill_(0, idx, mean_var);
  }
  // (the ridge the rows choose, core/covariance.h, but no finer than 1e-4
  // of each column's variance (earlier: 1e-4 of the mean variance, for every
  // column): a denoising p(x) sees no detail finer than its noise, and a
  // sharper base is one its network must undo)
  const auto target = cov.diagonal().clamp_min(1e-12 * std::max(mean_var, 1e-300));
  const double a = std::max(held_out_ridge(xc, target), 1e-4);
  cov = cov + torch::diag(a * target);
  auto [values, vectors] = torch::linalg_eigh(cov);
  const double floor = a * target.min().item<double>();
  const auto w = vectors * values.clamp_min(floor).rsqrt().unsqueeze(0);  // (x - m) W: whitened
  base_mean_.copy_((classes ? means : mean).to(base_mean_.options()));
  base_w_.copy_(w.to(base_w_.options()));
  if (classes) {
    base_logp_.copy_(logp.to(base_logp_.options()));
    // (the model starts as the base: LDA's posterior, the mixture's density)
    if (!options_.spectral_norm()) {
      layers_.back()->weight.zero_();
      layers_.back()->bias.zero_();
    }
  }
  return a;
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
  if (options_.base() == "gaussian") {
    out = out + 0.5 * (x - base_mean_).mm(base_w_).square().sum(1, true);
  } else if (options_.base() == "classes") {
    // (whitened x against each whitened class mean: [B, K, D] without
    // cancellation while that is small, else |z|^2 - 2 z.m + |m|^2)
    const auto z = x.mm(base_w_), mz = base_mean_.mm(base_w_);
    const auto q = z.size(0) * mz.size(0) * z.size(1) <= (int64_t(1) << 24)
                       ? (z.unsqueeze(1) - mz.unsqueeze(0)).square().sum(-1)
                       : (z.square().sum(1, true) - 2 * z.mm(mz.t()) + mz.square().sum(1).unsqueeze(0)).clamp_min(0);
    out = out + 0.5 * q - base_logp_;
  }
  return with_base_term(out, x, options_.prior_std());
}

torch::Tensor ClassifierMLPImpl::energy(const torch::Tensor& x) {
  return marginal_energy(class_energies(x), options_.classes());
}

}  // namespace ebm
