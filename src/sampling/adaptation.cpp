// Warm-up adaptation: dual averaging of the step size and windowed
// estimation of a diagonal mass matrix (Stan's schedule).
#include "ebm/core/error.h"
#include "ebm/sampling/sampling.h"

namespace ebm {

DualAveraging::DualAveraging(const DualAveragingOptions& o, double initial_step) : options_(o) {
  EBM_CHECK_CONFIG(o.target() > 0 && o.target() < 1, "target acceptance must be in (0, 1), got ",
                   o.target());
  EBM_CHECK_CONFIG(o.gamma() > 0 && o.t0() >= 0 && o.kappa() > 0 && o.kappa() <= 1,
                   "dual averaging needs gamma > 0, t0 >= 0 and kappa in (0, 1]");
  restart(initial_step);
}

void DualAveraging::restart(double step) {
  EBM_CHECK_CONFIG(step > 0 && std::isfinite(step), "step size must be > 0, got ", step);
  mu_ = std::log(10 * step);
  x_bar_ = std::log(step);
  h_bar_ = 0;
  t_ = 0;
}

double DualAveraging::update(double accept_stat) {
  if (!std::isfinite(accept_stat)) accept_stat = 0;  // every proposal failed
  ++t_;
  const double t = double(t_);
  const double w = 1.0 / (t + options_.t0());
  h_bar_ = (1 - w) * h_bar_ + w * (options_.target() - accept_stat);
  const double x = mu_ - std::sqrt(t) / options_.gamma() * h_bar_;
  const double eta = std::pow(t, -options_.kappa());
  x_bar_ = eta * x + (1 - eta) * x_bar_;
  return std::exp(x);
}

namespace {
double target_of(const Sampler& s, const WarmupOptions& o) {
  const double target = o.target_accept() > 0 ? o.target_accept() : s.target_accept();
  EBM_CHECK_CONFIG(target > 0, "sampler ", s.name(),
                   " does not adapt (warm-up adaptation needs mh, mala, hmc or nuts)");
  return target;
}
}  // namespace

WarmupAdapter::WarmupAdapter(Sampler& sampler, const WarmupOptions& o)
    : sampler_(sampler),
      options_(o),
      averager_(DualAveragingOptions(target_of(sampler, o)), sampler.step_size()) {
  EBM_CHECK_CONFIG(o.steps() >= 0, "warm-up steps must be >= 0, got ", o.steps());
  EBM_CHECK_CONFIG(o.init_buffer() >= 0 && o.base_window() >= 1 && o.term_buffer() >= 0,
                   "warm-up windows need init_buffer >= 0, base_window >= 1, term_buffer >= 0");
  // Stan estimates no metric from fewer than 20 warm-up draws.
  if (!(o.adapt_mass() && sampler.has_mass() && o.steps() >= 20)) return;
  int64_t init = o.init_buffer(), base = o.base_window(), term = o.term_buffer();
  const int64_t n = o.steps();
  if (init + base + term > n) {  // Stan's proportional fallback: 15% / 75% / 10%
    init = int64_t(0.15 * n);
    term = int64_t(0.1 * n);
    base = n - init - term;
  }
  const int64_t last = n - term;
  for (int64_t start = init, size = base; start < last; start += size, size *= 2) {
    int64_t end = start + size;
    // A window too short to double again absorbs the rest up to the buffer.
    if (end + 2 * size > last) end = last;
    windows_.emplace_back(start, end);
    if (end == last) break;
  }
}

Stats WarmupAdapter::step(EnergyImpl& energy, ChainState& state, at::Generator& gen) {
  EBM_CHECK_USAGE(!done(), "warm-up already finished");
  Stats st = sampler_.step(energy, state, gen);
  sampler_.set_step_size(averager_.update(st.accept_rate));
  if (window_ < windows_.size() && t_ >= windows_[window_].first) {
    // (the samplers' mass is one entry per coordinate of vector chains)
    EBM_CHECK_USAGE(state.x.dim() == 2, "warm-up: a diagonal mass matrix takes vector chains [B, D], got ",
                    state.x.sizes(), "; warm up without it (--no-adapt-mass)");
    torch::NoGradGuard ng;
    auto x = state.x.detach().flatten(1).to(torch::kDouble);
    if (!sum_.defined()) {
      sum_ = torch::zeros({x.size(1)}, x.options());
      sum_sq_ = torch::zeros({x.size(1)}, x.options());
    }
    sum_ += x.sum(0);
    sum_sq_ += (x * x).sum(0);
    count_ += x.size(0);
    if (t_ + 1 == windows_[window_].second) {
      const double n = double(count_);
      auto mean = sum_ / n;
      auto var = ((sum_sq_ - n * mean * mean) / (n - 1)).clamp_min(0);
      var = (n / (n + 5)) * var + 1e-3 * (5 / (n + 5));
      sampler_.set_inv_mass(var.to(state.x.scalar_type()));
      averager_.restart(sampler_.step_size());
      sum_ = torch::Tensor();
      count_ = 0;
      ++window_;
    }
  }
  ++t_;
  if (done()) sampler_.set_step_size(averager_.final());
  st.step_size = sampler_.step_size();
  return st;
}

}  // namespace ebm
