// Temperature scaling of class probabilities and its maximum-likelihood fit.
#include "ebm/model/temperature.h"
#include "ebm/model/cross_fit.h"

#include <algorithm>
#include <cmath>

namespace ebm {

torch::Tensor temperature_scale(const torch::Tensor& probs, double t) {
  TORCH_CHECK(t > 0 && std::isfinite(t), "temperature_scale: T must be > 0, got ", t);
  auto p = probs.detach().to(torch::kDouble);
  return torch::softmax(p.clamp_min(1e-300).log() / t, 1);
}

torch::Tensor scale_by_model_temperature(const torch::Tensor& probs, const std::optional<double>& temperature) {
  return temperature ? temperature_scale(probs, *temperature) : probs;
}

double fit_temperature(const torch::Tensor& probs, const torch::Tensor& labels, const torch::Tensor& weights) {
  auto lp = probs.detach().to(torch::kCPU, torch::kDouble).clamp_min(1e-300).log();
  auto y = labels.to(torch::kCPU, torch::kLong).reshape({-1, 1});
  // (a N(0, 1) prior on log T, a MAP fit: on a few rows with no error the
  // NLL falls as T -> 0 without a minimum, and such a T would wreck the
  // other rows' errors; on thousands of rows the prior moves T by < 1e-3)
  const double prior = 0.5 / double(std::max<int64_t>(1, lp.size(0)));
  const auto w = weights.defined() ? weights.to(torch::kCPU, torch::kDouble).reshape({-1}) : torch::Tensor();
  auto nll = [&](double log_t) {
    auto z = lp / std::exp(log_t);
    auto rows = torch::logsumexp(z, 1) - z.gather(1, y).squeeze(1);
    if (w.defined()) rows = rows * w;
    return rows.mean().item<double>() + prior * log_t * log_t;
  };
  double a = -4.0, b = 4.0;
  const double g = (std::sqrt(5.0) - 1) / 2;
  double c = b - g * (b - a), d = a + g * (b - a), fc = nll(c), fd = nll(d);
  for (int i = 0; i < 60; ++i) {  // (a bracket 8 x 0.618^60 ~ 2e-12 wide)
    if (fc < fd) {
      b = d, d = c, fd = fc;
      c = b - g * (b - a), fc = nll(c);
    } else {
      a = c, c = d, fc = fd;
      d = a + g * (b - a), fd = nll(d);
    }
  }
  return std::exp((a + b) / 2);
}

torch::Tensor softmax_class_probabilities(EnergyImpl& energy, const torch::Tensor& x, int64_t batch,
                                          c10::Device device) {
  const bool was_training = energy.is_training();
  energy.eval();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts;
  for (int64_t i = 0; i < x.size(0); i += batch) {
    auto b = x.narrow(0, i, std::min(batch, x.size(0) - i)).to(device, torch::kFloat);
    parts.push_back(torch::softmax((-energy.class_energies(b)).to(torch::kDouble), 1).cpu());
  }
  energy.train(was_training);
  return parts.empty() ? torch::empty({0, energy.num_classes()}, torch::kDouble) : torch::cat(parts);
}

torch::Tensor cross_fitted_scale(const torch::Tensor& probs, const torch::Tensor& labels,
                                 std::pair<double, double>* temperatures, const torch::Tensor& weights) {
  const int64_t n = probs.size(0);
  const auto even = torch::arange(0, n, 2, torch::kLong), odd = torch::arange(1, n, 2, torch::kLong);
  const auto p = probs.to(torch::kCPU), y = labels.to(torch::kCPU, torch::kLong).reshape({-1});
  const auto w = weights.defined() ? weights.to(torch::kCPU, torch::kDouble).reshape({-1}) : torch::Tensor();
  auto part = [&](const torch::Tensor& rows) { return w.defined() ? w.index_select(0, rows) : torch::Tensor(); };
  const double t_even = fit_temperature(p.index_select(0, even), y.index_select(0, even), part(even));
  const double t_odd = fit_temperature(p.index_select(0, odd), y.index_select(0, odd), part(odd));
  auto scaled = p.clone();
  scaled.index_copy_(0, odd, temperature_scale(p.index_select(0, odd), t_even));
  scaled.index_copy_(0, even, temperature_scale(p.index_select(0, even), t_odd));
  if (temperatures) *temperatures = {t_even, t_odd};
  return scaled;
}

}  // namespace ebm
