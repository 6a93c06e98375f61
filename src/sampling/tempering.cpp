// Annealed Langevin (NCSN) and parallel tempering; see tempering.h.
#include "ebm/sampling/tempering.h"

#include <cmath>

#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "rows.h"

namespace ebm {
namespace {
bool finite_positive(double v) { return v > 0 && std::isfinite(v); }

// Restores a noise-conditional energy's level when a sweep ends (or throws).
class RestoreNoiseLevel {
 public:
  explicit RestoreNoiseLevel(NoiseConditionalEnergyImpl* e) : e_(e), level_(e ? e->noise_level() : 0) {}
  ~RestoreNoiseLevel() {
    if (e_) e_->set_noise_level(level_);
  }
  RestoreNoiseLevel(const RestoreNoiseLevel&) = delete;
  RestoreNoiseLevel& operator=(const RestoreNoiseLevel&) = delete;

 private:
  NoiseConditionalEnergyImpl* e_;
  double level_;
};

// [n] double values as a tensor with the dtype and device of `like`.
torch::Tensor values_like(const std::vector<double>& v, const torch::Tensor& like) {
  return torch::tensor(v, torch::kDouble).to(like.options());
}
}  // namespace

std::vector<double> geometric_ladder(double first, double last, int64_t n) {
  TORCH_INTERNAL_ASSERT(n >= 1 && first > 0 && last > 0);
  std::vector<double> v(n, first);
  for (int64_t i = 1; i < n; ++i) v[i] = first * std::pow(last / first, double(i) / double(n - 1));
  if (n > 1) v.back() = last;  // exact, whatever pow rounds to
  return v;
}

// ----- Annealed Langevin ----------------------------------------------------
AnnealedLangevinSampler::AnnealedLangevinSampler(const AnnealedLangevinOptions& o) : options_(o) {
  EBM_CHECK_CONFIG(finite_positive(o.step_size()), "sampler.eps must be > 0, got ", o.step_size());
  EBM_CHECK_CONFIG(finite_positive(o.sigma_min()), "sampler.smin must be > 0, got ", o.sigma_min());
  EBM_CHECK_CONFIG(std::isfinite(o.sigma_max()) && o.sigma_max() >= o.sigma_min(),
                   "sampler.smax must be finite and >= smin = ", o.sigma_min(), ", got ",
                   o.sigma_max());
  EBM_CHECK_CONFIG(o.n_levels() >= 1, "sampler.levels must be >= 1, got ", o.n_levels());
  EBM_CHECK_CONFIG(o.n_levels() > 1 || o.sigma_max() == o.sigma_min(),
                   "sampler.levels = 1 needs smax == smin, got smax = ", o.sigma_max(),
                   ", smin = ", o.sigma_min());
  EBM_CHECK_CONFIG(o.steps_per_level() >= 1, "sampler.steps must be >= 1, got ",
                   o.steps_per_level());
  EBM_CHECK_CONFIG(!(o.clamp_min() >= o.clamp_max()), "sampler clamp box is empty: [", o.clamp_min(), ", ",
                   o.clamp_max(), "]");
  levels_ = geometric_ladder(o.sigma_max(), o.sigma_min(), o.n_levels());
  const double last = levels_.back();
  for (double s : levels_) {
    steps_.push_back(o.step_size() * (s * s) / (last * last));
    temperature_steps_.push_back(o.step_size() * s / last);
  }
}

Stats AnnealedLangevinSampler::step(EnergyImpl& energy, ChainState& state, at::Generator& gen) {
  torch::NoGradGuard ng;
  auto* nc = dynamic_cast<NoiseConditionalEnergyImpl*>(&energy);
  EBM_CHECK_CONFIG(!options_.denoise() || nc,
                   "sampler denoise=true needs a noise-conditional energy (the score at s_L)");
  RestoreNoiseLevel restore(nc);
  auto x = state.x;
  auto diverged = torch::zeros({x.size(0)}, x.options().dtype(torch::kBool));  // [B]
  auto hold_bad = [&](const torch::Tensor& e, torch::Tensor& g, torch::Tensor* xi) {
    const auto held = rows::hold_non_finite(e, g, xi);
    if (held.count > 0) diverged |= held.rows;
  };
  const bool clamped = std::isfinite(options_.clamp_min()) || std::isfinite(options_.clamp_max());
  for (size_t i = 0; i < levels_.size(); ++i) {
    const double s = levels_[i], eta = nc ? steps_[i] : temperature_steps_[i], sd = std::sqrt(2 * eta);
    if (nc) nc->set_noise_level(s);
    const double drift = nc ? eta : eta / s;  // grad of E(x, s) or of E(x) / s
    for (int64_t t = 0; t < options_.steps_per_level(); ++t) {
      auto [e, g] = energy.energy_and_grad(x);  // [B], like x
      auto xi = standard_normal(x.sizes(), gen, x.options());
      hold_bad(e, g, &xi);
      x = x.add(g, -drift).add_(xi, sd);
      if (clamped) x.clamp_(options_.clamp_min(), options_.clamp_max());
    }
  }
  const double last = levels_.back();
  if (options_.denoise()) {
    auto [e, g] = energy.energy_and_grad(x);
    hold_bad(e, g, nullptr);
    x = x - (last * last) * g;
    if (clamped) x.clamp_(options_.clamp_min(), options_.clamp_max());
  }
  state.x = x;
  state.invalidate();
  Stats st;
  st.step_size = steps_.back();
  st.accept_rate = 1.0;
  // One gradient per update of the sweep (plus the denoising step).
  st.n_grad = double(options_.n_levels() * options_.steps_per_level() + (options_.denoise() ? 1 : 0));
  st.n_divergent = diverged.sum().item<int64_t>();
  st.energy_mean = rows::finite_mean(energy.energy(x).detach());
  return st;
}

// ----- Parallel tempering ---------------------------------------------------
ParallelTempering::ParallelTempering(const ParallelTemperingOptions& o) : options_(o) {
  EBM_CHECK_CONFIG(finite_positive(o.step_size()), "sampler.step must be > 0, got ", o.step_size());
  EBM_CHECK_CONFIG(o.n_temps() >= 1, "sampler.temps must be >= 1, got ", o.n_temps());
  EBM_CHECK_CONFIG(std::isfinite(o.t_max()) && o.t_max() >= 1, "sampler.tmax must be >= 1, got ",
                   o.t_max());
  temps_ = geometric_ladder(1.0, o.t_max(), o.n_temps());
  reset_swap_counts();
}

void ParallelTempering::reset_swap_counts() {
  swap_accepted_.assign(temps_.size() - 1, 0);
  swap_attempted_.assign(temps_.size() - 1, 0);
}

void ParallelTempering::save(torch::serialize::OutputArchive& archive) const {
  archive.write("n_steps", torch::tensor(n_steps_));
  archive.write("swap_accepted", torch::tensor(swap_accepted_, torch::kLong));
  archive.write("swap_attempted", torch::tensor(swap_attempted_, torch::kLong));
  if (x_.defined()) archive.write("replicas", x_.cpu());  // loadable on any machine
}

void ParallelTempering::load(torch::serialize::InputArchive& archive) {
  torch::Tensor n, acc, att, x;
  if (!archive.try_read("n_steps", n)) return;  // written by another sampler: start fresh
  archive.read("swap_accepted", acc);
  archive.read("swap_attempted", att);
  EBM_CHECK_DATA(acc.numel() == int64_t(temps_.size()) - 1 && att.numel() == acc.numel(),
                 "checkpoint: parallel tempering state has ", acc.numel() + 1,
                 " temperatures, the config ", temps_.size());
  n_steps_ = n.item<int64_t>();
  swap_accepted_.assign(acc.data_ptr<int64_t>(), acc.data_ptr<int64_t>() + acc.numel());
  swap_attempted_.assign(att.data_ptr<int64_t>(), att.data_ptr<int64_t>() + att.numel());
  x_ = archive.try_read("replicas", x) ? x : torch::Tensor();
  e_ = g_ = torch::Tensor();  // recomputed on the next step
}

std::vector<double> ParallelTempering::swap_rates() const {
  std::vector<double> r;
  for (size_t k = 0; k < swap_accepted_.size(); ++k)
    r.push_back(swap_attempted_[k] ? double(swap_accepted_[k]) / double(swap_attempted_[k]) : NAN);
  return r;
}

Stats ParallelTempering::step(EnergyImpl& energy, ChainState& state, at::Generator& gen) {
  torch::NoGradGuard ng;
  const int64_t n_t = int64_t(temps_.size()), b = state.x.size(0);
  auto shape = state.x.sizes().vec();  // [K, B, ...]
  shape.insert(shape.begin(), n_t);
  if (x_.defined() && x_.device() != state.x.device()) {  // e.g. replicas from a checkpoint
    x_ = x_.to(state.x.device());
    e_ = g_ = torch::Tensor();
  }
  const bool fresh = !x_.defined() || !x_.sizes().equals(shape) ||
                     x_.scalar_type() != state.x.scalar_type();
  // The cold row: the ChainState's chains, with its cache when it has one.
  // Clones: energy_and_grad does not promise tensors its next call leaves alone.
  // A caller that hands over chains without a cache may have changed the
  // energy since the last call (training does, every iteration), so the hot
  // replicas' cached energies and gradients are recomputed too.
  const bool stale = !state.energy.defined() || !state.grad.defined() || !e_.defined();
  if (!state.energy.defined() || !state.grad.defined()) {
    auto [e, g] = energy.energy_and_grad(state.x);
    state.energy = e.clone();
    state.grad = g.clone();
  }
  if (!fresh && stale) {
    auto hot = x_.narrow(0, 1, n_t - 1);
    e_ = state.energy.unsqueeze(0);
    g_ = state.grad.unsqueeze(0);
    if (n_t > 1) {
      auto [e, g] = energy.energy_and_grad(hot.flatten(0, 1));
      e_ = torch::cat({e_, e.reshape({n_t - 1, b})});
      g_ = torch::cat({g_, g.reshape(hot.sizes())});
    }
  }
  if (fresh) {
    x_ = state.x.unsqueeze(0).expand(shape).clone();
    e_ = state.energy.unsqueeze(0).expand({n_t, b}).clone();
    g_ = state.grad.unsqueeze(0).expand(shape).clone();
  } else {
    x_ = torch::cat({state.x.unsqueeze(0), x_.narrow(0, 1, n_t - 1)});
    e_ = torch::cat({state.energy.unsqueeze(0), e_.narrow(0, 1, n_t - 1)});
    g_ = torch::cat({state.grad.unsqueeze(0), g_.narrow(0, 1, n_t - 1)});
  }

  // 1. MALA in every replica at once: rows [K * B, ...], temperature-major.
  const double eps = options_.step_size();
  std::vector<double> t_rows;
  for (double t : temps_) t_rows.insert(t_rows.end(), b, t);
  auto x = x_.flatten(0, 1), e = e_.flatten(), g = g_.flatten(0, 1);
  const auto temp = torch::tensor(t_rows, torch::kDouble).to(e.device());  // [K * B]
  const auto move = mala_transition(energy, x, e, g, eps, torch::Tensor(), temp, gen);
  x_ = x.view(shape);
  e_ = e.view({n_t, b});
  g_ = g.view(shape);
  Stats st;
  st.step_size = eps;
  st.n_grad = double(n_t);  // one gradient per replica and chain
  st.accept_rate = move.accept.narrow(0, 0, b).to(torch::kDouble).mean().item<double>();
  st.n_divergent = move.divergent.sum().item<int64_t>();

  // 2. Swaps of the pairs (k, k+1), k = parity, parity + 2, ... (0-based).
  std::vector<int64_t> lo;
  for (int64_t k = n_steps_ % 2; k + 1 < n_t; k += 2) lo.push_back(k);
  ++n_steps_;
  if (!lo.empty()) {
    const int64_t n_p = int64_t(lo.size());
    auto idx_opts = torch::TensorOptions().dtype(torch::kLong).device(x_.device());
    auto lo_t = torch::tensor(lo, torch::kLong).to(idx_opts.device()), hi_t = lo_t + 1;
    std::vector<double> dbeta;
    for (int64_t k : lo) dbeta.push_back(1.0 / temps_[k] - 1.0 / temps_[k + 1]);
    auto log_a = values_like(dbeta, e_).unsqueeze(1) *
                 (e_.index_select(0, lo_t) - e_.index_select(0, hi_t));  // [P, B]
    auto u = at::rand({n_p, b}, gen, log_a.options()).log();
    auto swap = torch::isfinite(log_a) & (u < log_a);  // [P, B]
    // Rung k of chain j takes the replica that was at rung idx[k, j].
    auto idx = torch::arange(n_t, idx_opts).unsqueeze(1).expand({n_t, b}).clone();
    auto lo_rows = lo_t.unsqueeze(1).expand({n_p, b}), hi_rows = hi_t.unsqueeze(1).expand({n_p, b});
    idx.index_put_({lo_t}, torch::where(swap, hi_rows, lo_rows));
    idx.index_put_({hi_t}, torch::where(swap, lo_rows, hi_rows));
    std::vector<int64_t> idx_shape(shape.size(), 1);  // [K, B, 1, ...]
    idx_shape[0] = n_t;
    idx_shape[1] = b;
    auto idx_x = idx.view(idx_shape).expand(shape);
    x_ = x_.gather(0, idx_x);
    g_ = g_.gather(0, idx_x);
    e_ = e_.gather(0, idx);
    auto counts = swap.sum(1).cpu();
    for (int64_t p = 0; p < n_p; ++p) {
      swap_accepted_[lo[p]] += counts[p].item<int64_t>();
      swap_attempted_[lo[p]] += b;
    }
  }
  state.x = x_[0].clone();
  state.energy = e_[0].clone();
  state.grad = g_[0].clone();
  st.energy_mean = state.energy.to(torch::kDouble).mean().item<double>();
  return st;
}

}  // namespace ebm
