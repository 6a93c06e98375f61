// Metropolis-adjusted samplers: MALA, HMC (with leapfrog as a free function)
// and NUTS.
#include <ATen/Dispatch.h>

#include <cmath>
#include <cstring>

#include "ebm/core/device.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/core/simd.h"
#include "ebm/sampling/conditional.h"
#include "ebm/sampling/sampling.h"
#include "rows.h"

namespace ebm {
namespace {
void ensure_cache(EnergyImpl& energy, ChainState& s) {
  if (!s.energy.defined() || !s.grad.defined()) {
    auto [e, g] = energy.energy_and_grad(s.x);
    s.energy = e.detach();
    s.grad = g.detach();
  }
}

// Metropolis: the rows of (x, e, g) where log u < log_alpha and the move did
// not diverge take the proposal's. Returns those rows [B].
torch::Tensor metropolis(torch::Tensor& x, torch::Tensor& e, torch::Tensor& g,
                         const torch::Tensor& x_new, const torch::Tensor& e_new,
                         const torch::Tensor& g_new, const torch::Tensor& log_alpha,
                         const torch::Tensor& divergent, at::Generator& gen) {
  auto log_u = at::rand({x.size(0)}, gen, log_alpha.options()).log();
  auto accept = (~divergent) & (log_u < log_alpha);
  auto m = rows::per_row(accept, x);
  x = torch::where(m, x_new, x);
  e = torch::where(accept, e_new, e);
  g = torch::where(m, g_new, g);
  return accept;
}

Stats move_stats(const MALAMove& move, const ChainState& s, double step) {
  Stats st;
  st.step_size = step;
  st.accept_rate = move.accept.to(torch::kDouble).mean().item<double>();
  st.n_divergent = move.divergent.sum().item<int64_t>();
  st.energy_mean = s.energy.to(torch::kDouble).mean().item<double>();
  return st;
}

void check_inv_mass(const torch::Tensor& inv_mass) {
  if (inv_mass.defined())
    EBM_CHECK_CONFIG(inv_mass.dim() == 1 && (inv_mass > 0).all().item<bool>(),
                     "inverse mass must be a positive vector [D]");
}
}  // namespace

// ----- MALA -----------------------------------------------------------------

MALASampler::MALASampler(const MALAOptions& o) : options_(o) {
  EBM_CHECK_CONFIG(o.step_size() > 0 && std::isfinite(o.step_size()),
                   "sampler.step_size must be > 0, got ", o.step_size());
  check_inv_mass(o.inv_mass());
}

MALAMove mala_transition(EnergyImpl& energy, torch::Tensor& x, torch::Tensor& e, torch::Tensor& g,
                         double eps, const torch::Tensor& inv_mass,
                         const torch::Tensor& temperature, at::Generator& gen) {
  torch::NoGradGuard ng;
  // Per row, sqrt(2 eps T) and 4 eps T are formed in float64 and then cast,
  // as the plain numbers of T = 1 are: each row's arithmetic is the same
  // whether it is tempered or not.
  const bool tempered = temperature.defined();
  torch::Tensor t, sd, den;
  if (tempered) {
    const auto t64 = temperature.to(e.options().dtype(torch::kDouble));
    t = t64.to(e.options());
    sd = rows::per_row((t64 * (2 * eps)).sqrt().to(x.options()), x);
    den = (t64 * (4 * eps)).to(e.options());
  }
  const auto a = inv_mass.defined() ? inv_mass.to(x.options()) : torch::Tensor();
  auto precond = [&](const torch::Tensor& v) { return a.defined() ? a * v : v; };
  auto noise = standard_normal(x.sizes(), gen, x.options());
  if (a.defined()) noise = a.sqrt() * noise;
  auto x_new = x - eps * precond(g) + (tempered ? sd * noise : std::sqrt(2 * eps) * noise);
  auto [e_new, g_new] = energy.energy_and_grad(x_new);
  // log q(b|a) = -r^T A^{-1} r / (4 eps T) with r = b - a + eps A g(a).
  auto quad = [&](const torch::Tensor& r) {
    auto q = rows::sum(a.defined() ? r * r / a : r * r);
    return tempered ? q / den : q / (4 * eps);
  };
  auto fwd = quad(x_new - x + eps * precond(g));
  auto bwd = quad(x - x_new + eps * precond(g_new));
  auto drop = tempered ? (e - e_new) / t : e - e_new;  // tempered energy decrease
  auto log_alpha = drop - bwd + fwd;
  auto divergent = ~torch::isfinite(log_alpha) | (-drop > kDivergence);
  auto accept = metropolis(x, e, g, x_new, e_new, g_new, log_alpha, divergent, gen);
  return {accept, divergent};
}

Stats MALASampler::step(EnergyImpl& energy, ChainState& s, at::Generator& gen) {
  torch::NoGradGuard ng;
  ensure_cache(energy, s);
  const double eps = options_.step_size();
  auto move = mala_transition(energy, s.x, s.energy, s.grad, eps, options_.inv_mass(),
                              torch::Tensor(), gen);
  auto st = move_stats(move, s, eps);
  st.n_grad = 1;
  return st;
}

// ----- Leapfrog and HMC -----------------------------------------------------
namespace {
// Leapfrog on E = 1/2 sum_j prec_j (x_j - mu_j)^2 for one chain's row, in
// place: the same operations, in the same order, as the generic loop, with
// the row kept in L1 across its n_steps steps. Returns E at the end.
template <typename T>
inline __attribute__((always_inline)) T diagonal_trajectory(
    T* __restrict x, T* __restrict p, T* __restrict g, const T* __restrict mu,
    const T* __restrict prec, const T* __restrict inv_mass, T step, int64_t dim, int64_t n_steps) {
  const T half = T(0.5) * step;
  for (int64_t k = 0; k < n_steps; ++k) {
    for (int64_t j = 0; j < dim; ++j) {
      const T pj = p[j] - half * g[j];
      const T xj = x[j] + step * inv_mass[j] * pj;
      const T gj = prec[j] * (xj - mu[j]);
      p[j] = pj - half * gj;
      x[j] = xj;
      g[j] = gj;
    }
  }
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < dim; ++j) acc += (x[j] - mu[j]) * g[j];
  return T(0.5) * acc;
}

template <typename T>
inline __attribute__((always_inline)) T kinetic_row(const T* __restrict p,
                                                    const T* __restrict inv_mass, int64_t dim) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < dim; ++j) acc += inv_mass[j] * p[j] * p[j];
  return T(0.5) * acc;
}

template <typename T>
struct DiagonalArgs {
  const T *mu, *prec, *inv_mass;
  int64_t rows, dim, n_steps;
};

template <typename T>
inline __attribute__((always_inline)) void diagonal_leapfrog_rows(const DiagonalArgs<T>& a, T* x,
                                                                  T* p, T* g, T* e,
                                                                  const T* eps) {
  for (int64_t b = 0; b < a.rows; ++b)
    e[b] = diagonal_trajectory(x + b * a.dim, p + b * a.dim, g + b * a.dim, a.mu, a.prec,
                               a.inv_mass, eps[b], a.dim, a.n_steps);
}

EBM_MULTIVERSION
void diagonal_leapfrog(const DiagonalArgs<float>& a, float* x, float* p, float* g, float* e,
                       const float* eps) {
  diagonal_leapfrog_rows(a, x, p, g, e, eps);
}

EBM_MULTIVERSION
void diagonal_leapfrog(const DiagonalArgs<double>& a, double* x, double* p, double* g, double* e,
                       const double* eps) {
  diagonal_leapfrog_rows(a, x, p, g, e, eps);
}

// One whole HMC transition per chain. In: the state (x0, g0, e0), standard
// normal draws xi (overwritten), log-uniforms and step sizes per chain. Out:
// the next state (x1, g1, e1). Returns the number of accepted proposals and
// counts divergences (energy error > kDivergence or non-finite).
template <typename T>
inline __attribute__((always_inline)) int64_t diagonal_hmc_rows(
    const DiagonalArgs<T>& a, const T* x0, const T* g0, const T* e0, T* xi,
    const T* __restrict sqrt_mass, const T* log_u, const T* eps, T* x1, T* g1, T* e1,
    int64_t* n_divergent) {
  int64_t accepted = 0;
  const int64_t d = a.dim;
  for (int64_t b = 0; b < a.rows; ++b) {
    T* __restrict xr = x1 + b * d;
    T* __restrict gr = g1 + b * d;
    T* __restrict pr = xi + b * d;
    std::memcpy(xr, x0 + b * d, sizeof(T) * d);
    std::memcpy(gr, g0 + b * d, sizeof(T) * d);
    for (int64_t j = 0; j < d; ++j) pr[j] *= sqrt_mass[j];  // p ~ N(0, M)
    const T h0 = e0[b] + kinetic_row(pr, a.inv_mass, d);
    const T e = diagonal_trajectory(xr, pr, gr, a.mu, a.prec, a.inv_mass, eps[b], d, a.n_steps);
    const T h1 = e + kinetic_row(pr, a.inv_mass, d);
    const T log_alpha = h0 - h1;
    const bool divergent = !std::isfinite(log_alpha) || h1 - h0 > T(kDivergence);
    if (!divergent && log_u[b] < log_alpha) {
      e1[b] = e;
      ++accepted;
    } else {
      std::memcpy(xr, x0 + b * d, sizeof(T) * d);
      std::memcpy(gr, g0 + b * d, sizeof(T) * d);
      e1[b] = e0[b];
    }
    *n_divergent += divergent;
  }
  return accepted;
}

EBM_MULTIVERSION
int64_t diagonal_hmc(const DiagonalArgs<float>& a, const float* x0, const float* g0,
                     const float* e0, float* xi, const float* sqrt_mass, const float* log_u,
                     const float* eps, float* x1, float* g1, float* e1, int64_t* n_divergent) {
  return diagonal_hmc_rows(a, x0, g0, e0, xi, sqrt_mass, log_u, eps, x1, g1, e1, n_divergent);
}

EBM_MULTIVERSION
int64_t diagonal_hmc(const DiagonalArgs<double>& a, const double* x0, const double* g0,
                     const double* e0, double* xi, const double* sqrt_mass, const double* log_u,
                     const double* eps, double* x1, double* g1, double* e1,
                     int64_t* n_divergent) {
  return diagonal_hmc_rows(a, x0, g0, e0, xi, sqrt_mass, log_u, eps, x1, g1, e1, n_divergent);
}
// {mean, prec} when the fused diagonal kernels apply to chains x: CPU, [B, D],
// float or double, an energy with a diagonal quadratic form of length D and
// a mass of length D (or none); undefined tensors otherwise.
std::pair<torch::Tensor, torch::Tensor> fusable_diagonal(const EnergyImpl& energy,
                                                         const torch::Tensor& x,
                                                         const torch::Tensor& inv_mass) {
  const auto dtype = x.scalar_type();
  if (x.dim() != 2 || !cpu_fast_path(x) || (dtype != torch::kFloat && dtype != torch::kDouble))
    return {};
  auto q = energy.diagonal_quadratic(dtype);
  const int64_t d = x.size(1);
  if (!q.second.defined() || q.first.numel() != d || q.second.numel() != d ||
      (inv_mass.defined() && inv_mass.numel() != d))
    return {};
  return {q.first.contiguous(), q.second.contiguous()};
}
}  // namespace

torch::Tensor leapfrog(EnergyImpl& energy, torch::Tensor& x, torch::Tensor& p, torch::Tensor& grad,
                       const torch::Tensor& inv_mass, const torch::Tensor& eps, int64_t n_steps) {
  torch::NoGradGuard ng;
  const auto dtype = x.scalar_type();
  {
    const auto diag = fusable_diagonal(energy, x, inv_mass);
    const auto &mu = diag.first, &prec = diag.second;
    if (prec.defined()) {
      // Fresh contiguous copies: x, p and grad may alias the caller's chain state.
      x = x.contiguous().clone();
      p = p.contiguous().clone();
      grad = grad.contiguous().clone();
      auto im = inv_mass.defined() ? inv_mass.to(dtype).contiguous() : torch::ones_like(mu);
      auto ev = eps.to(dtype).expand({x.size(0)}).contiguous();
      auto e = torch::empty({x.size(0)}, x.options());
      AT_DISPATCH_FLOATING_TYPES(dtype, "diagonal_leapfrog", [&] {
        const DiagonalArgs<scalar_t> args{mu.data_ptr<scalar_t>(), prec.data_ptr<scalar_t>(),
                                          im.data_ptr<scalar_t>(), x.size(0), x.size(1), n_steps};
        diagonal_leapfrog(args, x.data_ptr<scalar_t>(), p.data_ptr<scalar_t>(),
                          grad.data_ptr<scalar_t>(), e.data_ptr<scalar_t>(),
                          ev.data_ptr<scalar_t>());
      });
      return e;
    }
  }
  auto e_col = rows::per_row(eps.to(x.options()), x);  // [B, 1, ...]
  auto half = 0.5 * e_col;
  auto step_x = inv_mass.defined() ? e_col * inv_mass.to(x.options()) : e_col;
  torch::Tensor e;
  // In place on fresh copies: x and p may alias the caller's chain state.
  x = x.clone();
  p = p.clone();
  for (int64_t k = 0; k < n_steps; ++k) {
    p.addcmul_(half, grad, -1);
    x.addcmul_(step_x, p);
    // The energy is only needed at the end of the trajectory.
    if (k + 1 < n_steps)
      grad = energy.grad(x);
    else
      std::tie(e, grad) = energy.energy_and_grad(x);
    p.addcmul_(half, grad, -1);
  }
  return e;
}

HMCSampler::HMCSampler(const HMCOptions& o) : options_(o) {
  EBM_CHECK_CONFIG(o.step_size() > 0 && std::isfinite(o.step_size()),
                   "sampler.step_size must be > 0, got ", o.step_size());
  EBM_CHECK_CONFIG(o.n_leapfrog() >= 1, "sampler.leapfrog must be >= 1, got ", o.n_leapfrog());
  EBM_CHECK_CONFIG(o.jitter() >= 0 && o.jitter() < 1, "sampler.jitter must be in [0, 1), got ",
                   o.jitter());
  EBM_CHECK_CONFIG(o.log_spread() >= 0 && std::isfinite(o.log_spread()), "HMC log step spread must be >= 0, got ",
                   o.log_spread());
  check_inv_mass(o.inv_mass());
}

Stats HMCSampler::step(EnergyImpl& energy, ChainState& s, at::Generator& gen) {
  torch::NoGradGuard ng;
  ensure_cache(energy, s);
  const int64_t b = s.x.size(0);
  const auto dtype = s.x.scalar_type();
  const auto opts = s.x.options();
  auto inv_mass = options_.inv_mass().defined() ? options_.inv_mass().to(opts) : torch::Tensor();
  // p ~ N(0, M): p = xi / sqrt(M^{-1}).
  auto p = standard_normal(s.x.sizes(), gen, opts);
  auto eps = torch::full({b}, options_.step_size(), opts);
  if (options_.log_spread() > 0)
    eps = eps * (options_.log_spread() * (2 * at::rand({b}, gen, opts) - 1)).exp();
  else if (options_.jitter() > 0)
    eps = eps * (1 + options_.jitter() * (2 * at::rand({b}, gen, opts) - 1));
  const auto diag = fusable_diagonal(energy, s.x, inv_mass);
  const auto &mu = diag.first, &prec = diag.second;
  if (prec.defined()) {
    // The whole transition fused per chain (momentum, trajectory, Metropolis).
    auto im = inv_mass.defined() ? inv_mass.contiguous() : torch::ones_like(mu);
    auto sqrt_mass = im.rsqrt();
    auto log_u = at::rand({b}, gen, opts).log_();
    auto x0 = s.x.contiguous(), g0 = s.grad.contiguous(), e0 = s.energy.contiguous();
    auto x1 = torch::empty_like(x0), g1 = torch::empty_like(x0), e1 = torch::empty_like(e0);
    int64_t accepted = 0, divergent = 0;
    AT_DISPATCH_FLOATING_TYPES(dtype, "diagonal_hmc", [&] {
      const DiagonalArgs<scalar_t> args{mu.data_ptr<scalar_t>(), prec.data_ptr<scalar_t>(),
                                        im.data_ptr<scalar_t>(), b, s.x.size(1),
                                        options_.n_leapfrog()};
      accepted = diagonal_hmc(args, x0.data_ptr<scalar_t>(), g0.data_ptr<scalar_t>(),
                              e0.data_ptr<scalar_t>(), p.data_ptr<scalar_t>(),
                              sqrt_mass.data_ptr<scalar_t>(), log_u.data_ptr<scalar_t>(),
                              eps.data_ptr<scalar_t>(), x1.data_ptr<scalar_t>(),
                              g1.data_ptr<scalar_t>(), e1.data_ptr<scalar_t>(), &divergent);
    });
    s.x = x1;
    s.grad = g1;
    s.energy = e1;
    Stats st;
    st.step_size = options_.step_size();
    st.accept_rate = double(accepted) / double(b);
    st.n_divergent = divergent;
    st.energy_mean = e1.to(torch::kDouble).mean().item<double>();
    st.n_grad = double(options_.n_leapfrog());
    return st;
  }
  if (inv_mass.defined()) p = p / inv_mass.sqrt();
  auto kinetic = [&](const torch::Tensor& mom) {
    return 0.5 * rows::sum(inv_mass.defined() ? inv_mass * mom * mom : mom * mom);
  };
  const auto h0 = s.energy + kinetic(p);
  auto x = s.x, g = s.grad;
  auto e_new = leapfrog(energy, x, p, g, inv_mass, eps, options_.n_leapfrog());
  const auto h1 = e_new + kinetic(p);
  auto log_alpha = h0 - h1;
  auto divergent = ~torch::isfinite(log_alpha) | (h1 - h0 > kDivergence);
  auto accept = metropolis(s.x, s.energy, s.grad, x, e_new, g, log_alpha, divergent, gen);
  auto st = move_stats({accept, divergent}, s, options_.step_size());
  st.n_grad = double(options_.n_leapfrog());
  return st;
}

// ----- NUTS -----------------------------------------------------------------
NUTSSampler::NUTSSampler(const NUTSOptions& o) : options_(o) {
  EBM_CHECK_CONFIG(o.step_size() > 0 && std::isfinite(o.step_size()),
                   "sampler.step_size must be > 0, got ", o.step_size());
  EBM_CHECK_CONFIG(o.max_depth() >= 1 && o.max_depth() <= 20, "NUTS max depth must be in [1, 20], got ",
                   o.max_depth());
  EBM_CHECK_CONFIG(o.max_energy_error() > 0, "NUTS max energy error must be > 0");
  check_inv_mass(o.inv_mass());
}

namespace {
// Per-row select: where(mask [B], a, b) for a, b [B, ...].
torch::Tensor pick(const torch::Tensor& mask, const torch::Tensor& a, const torch::Tensor& b) {
  return torch::where(rows::per_row(mask, a), a, b);
}
}  // namespace

Stats NUTSSampler::step(EnergyImpl& energy, ChainState& s, at::Generator& gen) {
  torch::NoGradGuard ng;
  ensure_cache(energy, s);
  const int64_t b = s.x.size(0);
  const auto opts = s.x.options();
  const auto bools = opts.dtype(torch::kBool);
  const auto inv_mass = options_.inv_mass().defined() ? options_.inv_mass().to(opts) : torch::Tensor();
  auto sharp = [&](const torch::Tensor& p) { return inv_mass.defined() ? inv_mass * p : p; };
  auto dot = [](const torch::Tensor& u, const torch::Tensor& v) { return rows::sum(u * v); };
  auto kinetic = [&](const torch::Tensor& p) { return 0.5 * dot(p, sharp(p)); };
  auto log_uniform = [&]() { return at::rand({b}, gen, opts).log(); };
  const double eps = options_.step_size();
  // Conditional completion (inpaint, denoise, predict): the energy holds one
  // row of known values per chain, so it is never evaluated on a subset.
  const bool bound_to_rows = dynamic_cast<const ClampedEnergyImpl*>(&energy) != nullptr;

  auto p0 = standard_normal(s.x.sizes(), gen, opts);
  if (inv_mass.defined()) p0 = p0 / inv_mass.sqrt();
  const auto h0 = s.energy + kinetic(p0);
  // The trajectory: its two ends, the sum of its momenta, the log of its
  // total weight sum exp(H0 - H) and its current draw.
  auto xl = s.x, pl = p0, gl = s.grad, xr = s.x, pr = p0, gr = s.grad;
  auto rho = p0.clone();
  auto log_w = torch::zeros({b}, opts);
  auto x_draw = s.x, e_draw = s.energy, g_draw = s.grad;
  auto done = torch::zeros({b}, bools);
  auto divergent = torch::zeros({b}, bools);
  auto sum_accept = torch::zeros({b}, opts);
  auto n_leaf = torch::zeros({b}, opts);
  auto depth = torch::zeros({b}, opts);

  for (int64_t j = 0; j < options_.max_depth() && !done.all().item<bool>(); ++j) {
    const auto forward = at::rand({b}, gen, opts) < 0.5;
    const auto dir = torch::where(forward, torch::ones({b}, opts), -torch::ones({b}, opts));
    // The new half starts from the end it extends.
    auto xf = pick(forward, xr, xl), pf = pick(forward, pr, pl), gf = pick(forward, gr, gl);
    auto ef = torch::zeros({b}, opts);
    auto building = ~done;
    auto sub_log_w = torch::full({b}, -INFINITY, opts);
    auto sub_rho = torch::zeros_like(p0);
    auto sub_x = xf, sub_e = ef, sub_g = gf;
    // Checkpoints for the U-turn test of each power-of-two block of the new
    // half: momentum (sharp) at the block's first leaf and the running sum of
    // momenta just before it. Slot k holds the open block of 2^k leaves.
    std::vector<torch::Tensor> ck_sharp(j + 1), ck_rho(j + 1);
    const int64_t leaves = int64_t(1) << j;
    for (int64_t n = 0; n < leaves; ++n) {
      // One leapfrog step for the chains still building, in their direction
      // (the others are not evaluated).
      const int64_t n_building = building.sum().item<int64_t>();
      if (n_building == 0) break;
      if (n_building == b) {
        ef = leapfrog(energy, xf, pf, gf, inv_mass, eps * dir, 1);
      } else if (bound_to_rows) {
        // (an energy of each row's own known values takes every row: the
        // step is kept for the chains still building)
        auto xa = xf, pa = pf, ga = gf;
        auto ea = leapfrog(energy, xa, pa, ga, inv_mass, eps * dir, 1);
        xf = pick(building, xa, xf);
        pf = pick(building, pa, pf);
        gf = pick(building, ga, gf);
        ef = torch::where(building, ea, ef);
      } else {
        auto idx = building.nonzero().squeeze(1);
        auto xa = xf.index_select(0, idx), pa = pf.index_select(0, idx), ga = gf.index_select(0, idx);
        auto ea = leapfrog(energy, xa, pa, ga, inv_mass, eps * dir.index_select(0, idx), 1);
        xf = xf.index_copy(0, idx, xa);
        pf = pf.index_copy(0, idx, pa);
        gf = gf.index_copy(0, idx, ga);
        ef = ef.index_copy(0, idx, ea);
      }
      auto leaf_w = h0 - (ef + kinetic(pf));  // log weight of the new leaf
      leaf_w = torch::where(building, leaf_w, torch::full_like(leaf_w, -INFINITY));
      auto finite = torch::isfinite(leaf_w);
      auto div = building & (~finite | (-leaf_w > options_.max_energy_error()));
      sum_accept += torch::where(building & finite, leaf_w.clamp_max(0).exp(), torch::zeros_like(leaf_w));
      n_leaf += building.to(s.x.scalar_type());
      auto ok = building & ~div;
      // Progressive multinomial draw inside the new half.
      auto new_sub = torch::logaddexp(sub_log_w, torch::where(ok, leaf_w, torch::full_like(leaf_w, -INFINITY)));
      auto take = ok & (log_uniform() < leaf_w - new_sub);
      sub_x = pick(take, xf, sub_x);
      sub_g = pick(take, gf, sub_g);
      sub_e = torch::where(take, ef, sub_e);
      sub_log_w = torch::where(ok, new_sub, sub_log_w);
      auto before = sub_rho;
      sub_rho = sub_rho + pick(ok, pf, torch::zeros_like(pf));
      auto turned = torch::zeros({b}, bools);
      const auto p_sharp = sharp(pf);
      for (int64_t k = 1; k <= j; ++k) {
        const int64_t size = int64_t(1) << k;
        if (n % size == 0) {  // this leaf opens a block of 2^k leaves
          ck_sharp[k] = p_sharp;
          ck_rho[k] = before;
        }
        if ((n + 1) % size == 0) {  // and this one closes it
          auto r = sub_rho - ck_rho[k];
          turned = turned | (dot(ck_sharp[k], r) <= 0) | (dot(p_sharp, r) <= 0);
        }
      }
      divergent = divergent | div;
      auto stop = div | (ok & turned);
      done = done | stop;
      building = building & ~stop;
    }
    // A new half that finished without a U-turn or divergence joins the
    // trajectory; its draw replaces the current one w.p. min(1, w_new/w_old).
    auto merge = building;
    auto take = merge & (log_uniform() < sub_log_w - log_w);
    x_draw = pick(take, sub_x, x_draw);
    g_draw = pick(take, sub_g, g_draw);
    e_draw = torch::where(take, sub_e, e_draw);
    log_w = torch::where(merge, torch::logaddexp(log_w, sub_log_w), log_w);
    rho = rho + pick(merge, sub_rho, torch::zeros_like(sub_rho));
    auto right = merge & forward, left = merge & ~forward;
    xr = pick(right, xf, xr), pr = pick(right, pf, pr), gr = pick(right, gf, gr);
    xl = pick(left, xf, xl), pl = pick(left, pf, pl), gl = pick(left, gf, gl);
    auto turned = (dot(sharp(pl), rho) <= 0) | (dot(sharp(pr), rho) <= 0);
    done = done | (merge & turned);
    depth = torch::where(merge, torch::full_like(depth, double(j + 1)), depth);
  }
  s.x = x_draw;
  s.energy = e_draw;
  s.grad = g_draw;
  Stats st;
  st.step_size = eps;
  st.accept_rate = (sum_accept / n_leaf.clamp_min(1)).to(torch::kDouble).mean().item<double>();
  st.n_divergent = divergent.sum().item<int64_t>();
  st.n_grad = n_leaf.to(torch::kDouble).mean().item<double>();
  st.energy_mean = s.energy.to(torch::kDouble).mean().item<double>();
  last_depth_ = depth.to(torch::kDouble).mean().item<double>();
  return st;
}

}  // namespace ebm
