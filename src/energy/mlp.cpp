// The MLP energy module: its layers and their spectral normalisation, E(x),
// and the analytic input gradient's entry points.
#include "ebm/core/device.h"
#include "ebm/core/error.h"
#include "ebm/energy/energy.h"
#include "mlp_internal.h"

namespace ebm {

using namespace detail;

MLPEnergyImpl::MLPEnergyImpl(const MLPEnergyOptions& options) : options_(options) {
  EBM_CHECK_CONFIG(options_.in_dim() > 0, "MLPEnergyOptions.in_dim must be > 0, got ",
                   options_.in_dim());
  EBM_CHECK_CONFIG(!options_.hidden().empty(), "energy.hidden must list at least one width");
  for (auto w : options_.hidden())
    EBM_CHECK_CONFIG(w > 0, "energy.hidden widths must be > 0, got ", w);
  EBM_CHECK_CONFIG(options_.prior_std() >= 0 && std::isfinite(options_.prior_std()),
                   "energy.prior_std must be >= 0, got ", options_.prior_std());
  act_ = static_cast<int>(parse_act(options_.activation()));
  int64_t in = options_.in_dim();
  std::vector<int64_t> outs = options_.hidden();
  outs.push_back(1);
  for (size_t i = 0; i < outs.size(); ++i) {
    layers_.push_back(register_module("fc" + std::to_string(i),
                                      torch::nn::Linear(in, outs[i])));
    if (options_.spectral_norm())  // (buffer names as in saved models)
      spectral_norm_.emplace_back(*this, "u" + std::to_string(i), outs[i]);
    in = outs[i];
  }
}

void MLPEnergyImpl::check_input(const torch::Tensor& x) const {
  EBM_CHECK_DATA(x.dim() == 2 && x.size(1) == options_.in_dim(), "MLP energy expects [B, ",
                 options_.in_dim(), "] input, got ", x.sizes());
}

torch::Tensor MLPEnergyImpl::weight(size_t i, bool update) {
  const auto& w = layers_[i]->weight;
  if (!options_.spectral_norm()) return w;
  return spectral_norm_[i].normalise(w, update);
}

std::vector<torch::Tensor> MLPEnergyImpl::layer_params(bool update) {
  std::vector<torch::Tensor> params;
  for (size_t i = 0; i < layers_.size(); ++i) {
    params.push_back(weight(i, update));
    params.push_back(layers_[i]->bias);
  }
  return params;
}

torch::Tensor MLPEnergyImpl::energy(const torch::Tensor& x) {
  check_input(x);
  bool update = is_training() && torch::GradMode::is_enabled();
  const auto params = layer_params(update);
  // The fast pass when no graph through x is wanted (a gradient in x, as score
  // matching or a learned sampler takes, goes through the ATen form).
  const bool fast = cpu_fast_path(x) && !x.requires_grad() &&
                    (x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kDouble);
  torch::Tensor e;
  if (!fast) {
    e = reference_energy(x, params, static_cast<Act>(act_));
  } else {
    bool graph = false;
    if (torch::GradMode::is_enabled())
      for (const auto& p : params) graph = graph || p.requires_grad();
    // Without a graph nothing is kept: large inputs go in chunks, so the
    // sweep's buffers (two [64k, width] a layer) stay bounded.
    constexpr int64_t kChunk = 1 << 16;
    const auto xc = x.contiguous();
    if (graph || xc.size(0) <= kChunk) {
      e = energy_function(xc, params);
    } else {
      e = torch::empty({xc.size(0)}, xc.options());
      for (int64_t s = 0; s < xc.size(0); s += kChunk) {
        const int64_t len = std::min(kChunk, xc.size(0) - s);
        e.narrow(0, s, len).copy_(energy_function(xc.narrow(0, s, len), params));
      }
    }
  }
  if (options_.prior_std() > 0)
    e = e + x.pow(2).sum(-1) / (2 * options_.prior_std() * options_.prior_std());
  return e;
}

void MLPEnergyImpl::add_prior(const torch::Tensor& x, bool want_energy) {
  if (options_.prior_std() > 0) {
    double inv = 1.0 / (options_.prior_std() * options_.prior_std());
    g_out_.add_(x, inv);
    if (want_energy) e_out_.add_(x.pow(2).sum(-1), 0.5 * inv);
  }
}

torch::Tensor MLPEnergyImpl::grad(const torch::Tensor& x) {
  check_input(x);
  if (!cpu_fast_path(x)) return EnergyImpl::grad(x);  // the fast pass is CPU code
  torch::NoGradGuard ng;
  fast_pass(x.contiguous(), false);
  return g_out_;
}

std::pair<torch::Tensor, torch::Tensor> MLPEnergyImpl::energy_and_grad(const torch::Tensor& x) {
  check_input(x);
  if (!cpu_fast_path(x)) return EnergyImpl::energy_and_grad(x);
  torch::NoGradGuard ng;
  fast_pass(x.contiguous(), true);
  return {e_out_, g_out_};
}

}  // namespace ebm
