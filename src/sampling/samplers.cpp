#include "ebm/core/error.h"
#include "ebm/sampling/sampling.h"

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

namespace {
// Rows of `t` ([B, ...]) whose entries are all finite: [B] bool.
torch::Tensor finite_rows(const torch::Tensor& t) {
  return torch::isfinite(t).flatten(1).all(1);
}

double finite_mean(const torch::Tensor& e) {
  auto ok = torch::isfinite(e);
  auto n = ok.sum().item<int64_t>();
  return n ? torch::where(ok, e, torch::zeros_like(e)).sum().item<double>() / n : NAN;
}

torch::Tensor row_mask(const torch::Tensor& mask, const torch::Tensor& like) {
  std::vector<int64_t> shape(like.dim(), 1);
  shape[0] = like.size(0);
  return mask.view(shape);
}
}  // namespace

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

Stats LangevinSampler::step(EnergyImpl& energy, ChainState& state, at::Generator& gen) {
  auto [e, g] = energy.energy_and_grad(state.x);  // [B], like x
  Stats s;
  s.step_size = options_.step_size();
  if (options_.grad_clip() > 0) g.clamp_(-options_.grad_clip(), options_.grad_clip());
  double sigma = noise();
  if (!noise_buf_.defined() || !noise_buf_.sizes().equals(state.x.sizes()) ||
      noise_buf_.scalar_type() != state.x.scalar_type())
    noise_buf_ = torch::empty_like(state.x);
  if (sigma > 0) noise_buf_.normal_(0.0, 1.0, gen);
  auto ok = torch::isfinite(e) & finite_rows(g);
  int64_t n_ok = ok.sum().item<int64_t>();
  s.n_divergent = state.x.size(0) - n_ok;
  if (s.n_divergent > 0) {  // those chains stay where they are
    auto bad = row_mask(~ok, g);
    g.masked_fill_(bad, 0.0);
    if (sigma > 0) noise_buf_.masked_fill_(bad, 0.0);
  }
  s.energy_mean = finite_mean(e);
  auto& x = state.x;
  x.add_(g, -options_.step_size());
  if (sigma > 0) x.add_(noise_buf_, sigma);
  if (std::isfinite(options_.clamp_min()) || std::isfinite(options_.clamp_max()))
    x.clamp_(options_.clamp_min(), options_.clamp_max());
  s.accept_rate = 1.0;
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
  x = torch::where(row_mask(accept, x), prop, x);
  state.energy = torch::where(accept, e_prop, state.energy);
  state.grad = torch::Tensor();
  s.energy_mean = finite_mean(state.energy);
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
  } else {
    fail(ExitCode::kBadConfig, "unknown sampler '", name, "' (known: langevin, ula, mh)");
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
