// Metropolis-adjusted samplers: MALA and HMC (with leapfrog as a free function).
#include "ebm/core/error.h"
#include "ebm/sampling/sampling.h"
#include "rows.h"

namespace ebm {
namespace {
constexpr double kDivergence = 1000.0;  // energy error that counts as divergent (Stan's)

void ensure_cache(EnergyImpl& energy, ChainState& s) {
  if (!s.energy.defined() || !s.grad.defined()) {
    auto [e, g] = energy.energy_and_grad(s.x);
    s.energy = e.detach();
    s.grad = g.detach();
  }
}

// Accepts per chain where `accept` holds; counts divergences; fills stats.
Stats accept_reject(ChainState& s, const torch::Tensor& x_new, const torch::Tensor& e_new,
                    const torch::Tensor& g_new, const torch::Tensor& log_alpha,
                    const torch::Tensor& divergent, at::Generator& gen, double step) {
  auto log_u = at::rand({s.x.size(0)}, gen, log_alpha.scalar_type()).log();
  auto accept = (~divergent) & (log_u < log_alpha);
  auto m = rows::per_row(accept, s.x);
  s.x = torch::where(m, x_new, s.x);
  s.energy = torch::where(accept, e_new, s.energy);
  s.grad = torch::where(m, g_new, s.grad);
  Stats st;
  st.step_size = step;
  st.accept_rate = accept.to(torch::kDouble).mean().item<double>();
  st.n_divergent = divergent.sum().item<int64_t>();
  st.energy_mean = s.energy.to(torch::kDouble).mean().item<double>();
  return st;
}
}  // namespace

// ----- MALA -----------------------------------------------------------------
MALASampler::MALASampler(const MALAOptions& o) : options_(o) {
  EBM_CHECK_CONFIG(o.step_size() > 0 && std::isfinite(o.step_size()),
                   "sampler.step_size must be > 0, got ", o.step_size());
}

Stats MALASampler::step(EnergyImpl& energy, ChainState& s, at::Generator& gen) {
  torch::NoGradGuard ng;
  ensure_cache(energy, s);
  const double eps = options_.step_size();
  auto noise = at::normal(0.0, 1.0, s.x.sizes(), gen, s.x.scalar_type());
  auto x_new = s.x - eps * s.grad + std::sqrt(2 * eps) * noise;
  auto [e_new, g_new] = energy.energy_and_grad(x_new);
  // log q(x*|x) = -|x* - x + eps g(x)|^2 / (4 eps) = -|sqrt(2 eps) xi|^2 / (4 eps).
  auto fwd = rows::sum((x_new - s.x + eps * s.grad).pow(2)) / (4 * eps);
  auto bwd = rows::sum((s.x - x_new + eps * g_new).pow(2)) / (4 * eps);
  auto log_alpha = s.energy - e_new - bwd + fwd;
  auto divergent = ~torch::isfinite(log_alpha) | (e_new - s.energy > kDivergence);
  return accept_reject(s, x_new, e_new, g_new, log_alpha, divergent, gen, eps);
}

// ----- Leapfrog and HMC -----------------------------------------------------
torch::Tensor leapfrog(EnergyImpl& energy, torch::Tensor& x, torch::Tensor& p, torch::Tensor& grad,
                       const torch::Tensor& inv_mass, const torch::Tensor& eps, int64_t n_steps) {
  torch::NoGradGuard ng;
  auto e_col = rows::per_row(eps.to(x.scalar_type()), x);  // [B, 1, ...]
  auto half = 0.5 * e_col;
  torch::Tensor e;
  for (int64_t k = 0; k < n_steps; ++k) {
    p = p - half * grad;
    x = x + e_col * (inv_mass.defined() ? inv_mass * p : p);
    std::tie(e, grad) = energy.energy_and_grad(x);
    p = p - half * grad;
  }
  return e;
}

HMCSampler::HMCSampler(const HMCOptions& o) : options_(o) {
  EBM_CHECK_CONFIG(o.step_size() > 0 && std::isfinite(o.step_size()),
                   "sampler.step_size must be > 0, got ", o.step_size());
  EBM_CHECK_CONFIG(o.n_leapfrog() >= 1, "sampler.leapfrog must be >= 1, got ", o.n_leapfrog());
  EBM_CHECK_CONFIG(o.jitter() >= 0 && o.jitter() < 1, "sampler.jitter must be in [0, 1), got ",
                   o.jitter());
  if (o.inv_mass().defined())
    EBM_CHECK_CONFIG((o.inv_mass() > 0).all().item<bool>(), "HMC inverse mass must be > 0");
}

Stats HMCSampler::step(EnergyImpl& energy, ChainState& s, at::Generator& gen) {
  torch::NoGradGuard ng;
  ensure_cache(energy, s);
  const int64_t b = s.x.size(0);
  const auto dtype = s.x.scalar_type();
  auto inv_mass = options_.inv_mass().defined() ? options_.inv_mass().to(dtype) : torch::Tensor();
  // p ~ N(0, M): p = xi / sqrt(M^{-1}).
  auto p = at::normal(0.0, 1.0, s.x.sizes(), gen, dtype);
  if (inv_mass.defined()) p = p / inv_mass.sqrt();
  auto eps = torch::full({b}, options_.step_size(), torch::TensorOptions().dtype(dtype));
  if (options_.jitter() > 0)
    eps = eps * (1 + options_.jitter() * (2 * at::rand({b}, gen, dtype) - 1));
  auto kinetic = [&](const torch::Tensor& mom) {
    return 0.5 * rows::sum(inv_mass.defined() ? inv_mass * mom * mom : mom * mom);
  };
  const auto h0 = s.energy + kinetic(p);
  auto x = s.x.clone(), g = s.grad.clone();
  auto e_new = leapfrog(energy, x, p, g, inv_mass, eps, options_.n_leapfrog());
  const auto h1 = e_new + kinetic(p);
  auto log_alpha = h0 - h1;
  auto divergent = ~torch::isfinite(log_alpha) | (h1 - h0 > kDivergence);
  return accept_reject(s, x, e_new, g, log_alpha, divergent, gen, options_.step_size());
}

}  // namespace ebm
