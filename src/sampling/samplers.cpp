#include <ATen/Dispatch.h>

#include "ebm/core/device.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/core/simd.h"
#include "ebm/core/spec.h"
#include "ebm/sampling/sampling.h"
#include "ebm/sampling/tempering.h"
#include "rows.h"


namespace ebm {

Stats Sampler::run(EnergyImpl& energy, ChainState& state, int64_t steps, at::Generator& gen) {
  Stats total;
  total.accept_rate = 0;
  if (steps <= 0) {
    total.accept_rate = 1.0;
    return total;
  }
  for (int64_t k = 0; k < steps; ++k) {
    Stats s = step(energy, state, gen);
    total.accept_rate += s.accept_rate;
    total.step_size += s.step_size;
    total.energy_mean += s.energy_mean;
    total.n_divergent += s.n_divergent;
    total.n_grad += s.n_grad;
  }
  total.accept_rate /= steps;
  total.step_size /= steps;
  total.energy_mean /= steps;
  return total;
}

void Sampler::set_step_size(double) {
  fail(ExitCode::kBadConfig, "sampler ", name(), " has no step size to adapt");
}

void Sampler::set_inv_mass(const torch::Tensor&) {
  fail(ExitCode::kBadConfig, "sampler ", name(), " has no mass matrix to adapt");
}

// ----- Langevin -------------------------------------------------------------
LangevinSampler::LangevinSampler(const LangevinOptions& o) : options_(o) {
  EBM_CHECK_CONFIG(o.step_size() > 0 && std::isfinite(o.step_size()),
                   "sampler.step_size must be > 0, got ", o.step_size());
  EBM_CHECK_CONFIG(o.noise() >= 0 && std::isfinite(o.noise()), "sampler.noise must be >= 0, got ",
                   o.noise());
  EBM_CHECK_CONFIG(o.grad_clip() >= 0, "sampler.grad_clip must be >= 0, got ", o.grad_clip());
  EBM_CHECK_CONFIG(!(o.clamp_min() >= o.clamp_max()), "sampler clamp box is empty: [",
                   o.clamp_min(), ", ", o.clamp_max(), "]");
}

double LangevinSampler::noise() const {
  return options_.exact_noise() ? std::sqrt(2 * options_.step_size()) : options_.noise();
}

namespace {
// x <- clamp(x - eta * clip(g) + sigma * n, lo, hi), one pass.
template <typename T>
EBM_MULTIVERSION void langevin_update(T* x, const T* g, const T* n, int64_t len, T eta, T sigma, T clip, T lo,
                     T hi) {
  const bool do_clip = clip > 0, do_box = std::isfinite(lo) || std::isfinite(hi);
  for (int64_t i = 0; i < len; ++i) {
    T gi = do_clip ? std::min(std::max(g[i], -clip), clip) : g[i];
    T v = x[i] - eta * gi + (n ? sigma * n[i] : T(0));
    x[i] = do_box ? std::min(std::max(v, lo), hi) : v;
  }
}
}  // namespace

Stats LangevinSampler::step(EnergyImpl& energy, ChainState& state, at::Generator& gen) {
  if (!state.x.is_contiguous()) state.x = state.x.contiguous();
  auto& x = state.x;
  auto [e, g] = energy.energy_and_grad(x);  // [B], like x
  e = e.contiguous();
  g = g.contiguous();
  Stats s;
  s.step_size = options_.step_size();
  s.accept_rate = 1.0;
  s.n_grad = 1;
  const double sigma = noise();
  if (sigma > 0) {
    if (!noise_buf_.defined() || !noise_buf_.sizes().equals(x.sizes()) ||
        noise_buf_.scalar_type() != x.scalar_type() || noise_buf_.device() != x.device())
      noise_buf_ = torch::empty_like(x);
    normal_fill_(noise_buf_, gen);
  }
  const auto held = rows::hold_non_finite(e, g, sigma > 0 ? &noise_buf_ : nullptr);
  s.n_divergent = held.count;
  s.energy_mean = held.energy_mean;
  const double clip = options_.grad_clip(), lo = options_.clamp_min(), hi = options_.clamp_max();
  if (cpu_fast_path(x)) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "langevin_update", [&] {
      langevin_update<scalar_t>(x.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(),
                                sigma > 0 ? noise_buf_.data_ptr<scalar_t>() : nullptr, x.numel(),
                                scalar_t(options_.step_size()), scalar_t(sigma), scalar_t(clip),
                                scalar_t(lo), scalar_t(hi));
    });
  } else {  // the same update in place, as tensor operations
    x.sub_(clip > 0 ? g.clamp(-clip, clip) : g, options_.step_size());
    if (sigma > 0) x.add_(noise_buf_, sigma);
    if (std::isfinite(lo) || std::isfinite(hi))
      x.clamp_(std::isfinite(lo) ? c10::optional<at::Scalar>(lo) : c10::nullopt,
               std::isfinite(hi) ? c10::optional<at::Scalar>(hi) : c10::nullopt);
  }
  state.invalidate();
  return s;
}

// ----- Random-walk MH -------------------------------------------------------
RandomWalkMH::RandomWalkMH(const RandomWalkMHOptions& o) : options_(o) {
  EBM_CHECK_CONFIG(o.step_size() > 0 && std::isfinite(o.step_size()),
                   "sampler.step_size must be > 0, got ", o.step_size());
}

Stats RandomWalkMH::step(EnergyImpl& energy, ChainState& state, at::Generator& gen) {
  torch::NoGradGuard ng;
  auto& x = state.x;
  if (!state.energy.defined()) state.energy = energy.energy(x).detach();
  auto prop = x + options_.step_size() * standard_normal(x.sizes(), gen, x.options());
  auto e_prop = energy.energy(prop).detach();
  auto finite = torch::isfinite(e_prop);
  auto log_u = at::rand({x.size(0)}, gen, state.energy.options()).log();
  auto accept = finite & (log_u < (state.energy - e_prop));
  Stats s;
  s.step_size = options_.step_size();
  s.n_grad = 1;  // one energy evaluation (MH needs no gradient)
  s.n_divergent = x.size(0) - finite.sum().item<int64_t>();
  s.accept_rate = accept.to(torch::kDouble).mean().item<double>();
  x = torch::where(rows::per_row(accept, x), prop, x);
  state.energy = torch::where(accept, e_prop, state.energy);
  state.grad = torch::Tensor();
  s.energy_mean = rows::finite_mean(state.energy);
  return s;
}

FreezeParameters::FreezeParameters(torch::nn::Module& module) {
  for (auto& p : module.parameters()) {
    saved_.emplace_back(p, p.requires_grad());
    p.requires_grad_(false);
  }
}

FreezeParameters::~FreezeParameters() {
  for (auto& [p, flag] : saved_) p.requires_grad_(flag);
}

}  // namespace ebm
