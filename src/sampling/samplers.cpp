#include <ATen/Dispatch.h>

#include "ebm/core/error.h"
#include "ebm/core/simd.h"
#include "ebm/sampling/sampling.h"
#include "ebm/sampling/tempering.h"
#include "rows.h"

#include <sstream>

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
  }
  total.accept_rate /= steps;
  total.step_size /= steps;
  total.energy_mean /= steps;
  return total;
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
// True when every energy and gradient entry is finite; `sum` gets sum(e).
template <typename T>
EBM_MULTIVERSION bool all_finite(const T* e, int64_t ne, const T* g, int64_t ng, double* sum) {
  double acc = 0;
  for (int64_t i = 0; i < ne; ++i) acc += double(e[i]);
  T probe = 0;  // NaN or inf anywhere makes the product-sum non-finite
  for (int64_t i = 0; i < ng; ++i) probe += g[i] * T(0);
  *sum = acc;
  return std::isfinite(acc) && std::isfinite(double(probe));
}

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
  const double sigma = noise();
  if (sigma > 0) {
    if (!noise_buf_.defined() || !noise_buf_.sizes().equals(x.sizes()) ||
        noise_buf_.scalar_type() != x.scalar_type())
      noise_buf_ = torch::empty_like(x);
    noise_buf_.normal_(0.0, 1.0, gen);
  }
  bool finite = false;
  double esum = 0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "langevin_check", [&] {
    finite = all_finite<scalar_t>(e.data_ptr<scalar_t>(), e.numel(), g.data_ptr<scalar_t>(),
                                  g.numel(), &esum);
  });
  if (finite) {
    s.energy_mean = esum / double(e.numel());
  } else {  // chains with a non-finite energy or gradient stay where they are
    auto ok = torch::isfinite(e) & rows::finite(g);
    s.n_divergent = x.size(0) - ok.sum().item<int64_t>();
    auto bad = rows::per_row(~ok, g);
    g.masked_fill_(bad, 0.0);
    if (sigma > 0) noise_buf_.masked_fill_(bad, 0.0);
    s.energy_mean = rows::finite_mean(e);
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "langevin_update", [&] {
    langevin_update<scalar_t>(x.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(),
                              sigma > 0 ? noise_buf_.data_ptr<scalar_t>() : nullptr, x.numel(),
                              scalar_t(options_.step_size()), scalar_t(sigma),
                              scalar_t(options_.grad_clip()), scalar_t(options_.clamp_min()),
                              scalar_t(options_.clamp_max()));
  });
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
  auto prop = x + options_.step_size() * at::normal(0.0, 1.0, x.sizes(), gen,
                                                     x.scalar_type());
  auto e_prop = energy.energy(prop).detach();
  auto finite = torch::isfinite(e_prop);
  auto log_u = at::rand({x.size(0)}, gen, state.energy.scalar_type()).log();
  auto accept = finite & (log_u < (state.energy - e_prop));
  Stats s;
  s.step_size = options_.step_size();
  s.n_divergent = x.size(0) - finite.sum().item<int64_t>();
  s.accept_rate = accept.to(torch::kDouble).mean().item<double>();
  x = torch::where(rows::per_row(accept, x), prop, x);
  state.energy = torch::where(accept, e_prop, state.energy);
  state.grad = torch::Tensor();
  s.energy_mean = rows::finite_mean(state.energy);
  return s;
}

// ----- Factory --------------------------------------------------------------
std::pair<std::string, std::map<std::string, std::string>> parse_spec(const std::string& spec) {
  auto colon = spec.find(':');
  std::string name = spec.substr(0, colon);
  std::map<std::string, std::string> kv;
  if (colon == std::string::npos) return {name, kv};
  std::stringstream ss(spec.substr(colon + 1));
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    auto eq = item.find('=');
    EBM_CHECK_CONFIG(eq != std::string::npos && eq > 0, "sampler spec '", spec, "': item '",
                     item, "' is not key=value");
    kv[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return {name, kv};
}

namespace {
double spec_number(const std::string& spec, const std::string& key, const std::string& v) {
  size_t used = 0;
  double d = 0;
  try {
    d = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  EBM_CHECK_CONFIG(used == v.size() && !v.empty(), "sampler spec '", spec, "': ", key, "='", v,
                   "' is not a number");
  return d;
}

int64_t spec_int(const std::string& spec, const std::string& key, const std::string& v) {
  double d = spec_number(spec, key, v);
  EBM_CHECK_CONFIG(d == std::floor(d) && std::abs(d) < 1e15, "sampler spec '", spec, "': ", key,
                   "='", v, "' is not an integer");
  return int64_t(d);
}

bool spec_bool(const std::string& spec, const std::string& key, const std::string& v) {
  if (v == "true" || v == "1") return true;
  if (v == "false" || v == "0") return false;
  fail(ExitCode::kBadConfig, "sampler spec '", spec, "': ", key, "='", v,
       "' is not true or false");
}
}  // namespace

std::shared_ptr<Sampler> make_sampler(const std::string& spec) {
  auto [name, kv] = parse_spec(spec);
  auto take = [&, &kv = kv](const std::string& key) -> std::optional<std::string> {
    auto it = kv.find(key);
    if (it == kv.end()) return std::nullopt;
    std::string v = it->second;
    kv.erase(it);
    return v;
  };
  std::shared_ptr<Sampler> out;
  if (name == "langevin" || name == "ula" || name == "sgld") {
    LangevinOptions o(0.01);
    o.exact_noise(name == "ula");
    if (auto v = take("step")) o.step_size(spec_number(spec, "step", *v));
    if (auto v = take("noise")) o.noise(spec_number(spec, "noise", *v));
    if (auto v = take("exact")) o.exact_noise(spec_bool(spec, "exact", *v));
    if (auto v = take("clip")) o.grad_clip(spec_number(spec, "clip", *v));
    if (auto v = take("min")) o.clamp_min(spec_number(spec, "min", *v));
    if (auto v = take("max")) o.clamp_max(spec_number(spec, "max", *v));
    out = std::make_shared<LangevinSampler>(o);
  } else if (name == "mh" || name == "rwmh") {
    RandomWalkMHOptions o(0.1);
    if (auto v = take("step")) o.step_size(spec_number(spec, "step", *v));
    out = std::make_shared<RandomWalkMH>(o);
  } else if (name == "mala") {
    MALAOptions o(0.01);
    if (auto v = take("step")) o.step_size(spec_number(spec, "step", *v));
    out = std::make_shared<MALASampler>(o);
  } else if (name == "hmc") {
    HMCOptions o(0.05);
    if (auto v = take("step")) o.step_size(spec_number(spec, "step", *v));
    if (auto v = take("leapfrog")) {
      double n = spec_number(spec, "leapfrog", *v);
      EBM_CHECK_CONFIG(n == std::floor(n), "sampler spec '", spec, "': leapfrog='", *v,
                       "' is not an integer");
      o.n_leapfrog(int64_t(n));
    }
    if (auto v = take("jitter")) o.jitter(spec_number(spec, "jitter", *v));
    out = std::make_shared<HMCSampler>(o);
  } else if (name == "annealed") {
    AnnealedLangevinOptions o(2e-5);
    if (auto v = take("eps")) o.step_size(spec_number(spec, "eps", *v));
    if (auto v = take("smax")) o.sigma_max(spec_number(spec, "smax", *v));
    if (auto v = take("smin")) o.sigma_min(spec_number(spec, "smin", *v));
    if (auto v = take("levels")) o.n_levels(spec_int(spec, "levels", *v));
    if (auto v = take("steps")) o.steps_per_level(spec_int(spec, "steps", *v));
    if (auto v = take("denoise")) o.denoise(spec_bool(spec, "denoise", *v));
    out = std::make_shared<AnnealedLangevinSampler>(o);
  } else if (name == "pt") {
    ParallelTemperingOptions o(0.05);
    if (auto v = take("step")) o.step_size(spec_number(spec, "step", *v));
    if (auto v = take("temps")) o.n_temps(spec_int(spec, "temps", *v));
    if (auto v = take("tmax")) o.t_max(spec_number(spec, "tmax", *v));
    out = std::make_shared<ParallelTempering>(o);
  } else {
    fail(ExitCode::kBadConfig, "unknown sampler '", name,
         "' (known: langevin, ula, mh, mala, hmc, annealed, pt)");
  }
  EBM_CHECK_CONFIG(kv.empty(), "sampler spec '", spec, "': unknown key '",
                   kv.empty() ? "" : kv.begin()->first, "' for ", name);
  return out;
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
