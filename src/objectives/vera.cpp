#include <cmath>

#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/energy/generator.h"
#include "ebm/objectives/learned.h"

namespace ebm {
namespace {
// log N(x; mu, sigma^2 I) summed over a row's coordinates, for x, mu [N, ...].
torch::Tensor gaussian_log_density(const torch::Tensor& x, const torch::Tensor& mu, const torch::Tensor& sigma) {
  const double d = double(x[0].numel());
  return -0.5 * (x - mu).flatten(1).pow(2).sum(1) / sigma.pow(2) - d * (sigma.log() + 0.5 * std::log(2 * M_PI));
}
torch::Tensor standard_log_density(const torch::Tensor& z) {
  return -0.5 * z.pow(2).sum(1) - 0.5 * double(z.size(1)) * std::log(2 * M_PI);
}
}  // namespace

Vera::Vera(const VeraOptions& o, std::shared_ptr<GeneratorImpl> generator)
    : options_(o), generator_(std::move(generator)) {
  EBM_CHECK_CONFIG(generator_ != nullptr, "objective.name = \"vera\" needs a generator (generator.name = mlp or deconv)");
  EBM_CHECK_CONFIG(o.entropy_weight() >= 0, "objective.entropy_weight must be >= 0, got ", o.entropy_weight());
  EBM_CHECK_CONFIG(o.ce_weight() >= 0, "objective.ce_weight must be >= 0, got ", o.ce_weight());
  EBM_CHECK_CONFIG(o.posterior_samples() >= 1, "objective.posterior_samples must be >= 1, got ", o.posterior_samples());
  EBM_CHECK_CONFIG(o.sigma_min() > 0 && o.sigma_max() >= o.sigma_min(),
                   "objective.sigma_min and sigma_max must satisfy 0 < min <= max, got ", o.sigma_min(), ", ",
                   o.sigma_max());
  EBM_CHECK_CONFIG(o.post_lr() > 0 && o.init_post_sigma() > 0, "objective.post_lr and init_post_sigma must be > 0");
  EBM_CHECK_CONFIG(o.alpha() >= 0 && o.grad_penalty() >= 0, "objective.alpha and grad_penalty must be >= 0");
  posterior_ = std::make_shared<torch::nn::Module>();
  posterior_->register_parameter(
      "log_sigma", torch::full({generator_->latent_dim()}, std::log(o.init_post_sigma()), generator_->log_sigma().options()));
}

torch::Tensor Vera::post_log_sigma() const { return posterior_->named_parameters()["log_sigma"]; }

std::vector<LearnedModule> Vera::learned_modules() {
  LearnedModule g{"generator", generator_};
  LearnedModule p{"posterior", posterior_, options_.post_lr(), 0.9, 0.999, true};
  return {g, p};
}

torch::Tensor Vera::score_estimate(const torch::Tensor& x, const torch::Tensor& z, at::Generator& gen,
                                   double* ess_fraction) {
  torch::NoGradGuard ng;
  const int64_t n = x.size(0), k = options_.posterior_samples(), l = z.size(1);
  const auto s = post_log_sigma().exp();
  // z_k = z0 + s e_k, K per row: [K * N, L] (sample-major).
  auto zk = z.repeat({k, 1}) + s * standard_normal({k * n, l}, gen, z.options());
  std::vector<int64_t> rep(x.dim(), 1);
  rep[0] = k;
  auto xk = x.repeat(rep);  // [K * N, ...]
  const auto sigma = generator_->sigma();
  auto mu = generator_->mean(zk);
  auto log_xi = (-0.5 * ((zk - z.repeat({k, 1})) / s).pow(2) - s.log() - 0.5 * std::log(2 * M_PI)).sum(1);
  auto log_w = (standard_log_density(zk) + gaussian_log_density(xk, mu, sigma) - log_xi).view({k, n});
  auto w = torch::softmax(log_w, 0);  // [K, N]
  // the weights' effective sample size, 1 / sum_k w_k^2, as a fraction of K (row mean)
  if (ess_fraction) *ess_fraction = (1.0 / w.pow(2).sum(0)).mean().item<double>() / double(k);
  std::vector<int64_t> wshape(x.dim() + 1, 1);
  wshape[0] = k;
  wshape[1] = n;
  std::vector<int64_t> kshape = x.sizes().vec();
  kshape.insert(kshape.begin(), k);
  return ((xk - mu).view(kshape) * w.view(wshape)).sum(0) / sigma.pow(2);
}

Output Vera::compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) {
  {
    torch::NoGradGuard ng;
    generator_->log_sigma().clamp_(std::log(options_.sigma_min()), std::log(options_.sigma_max()));
  }
  const auto& x_pos = batch.x;
  const int64_t n = x_pos.size(0);
  generator_->train();
  auto z = generator_->latent(n, gen).to(x_pos.device(), x_pos.scalar_type());
  auto mu = generator_->mean(z);
  const auto sigma = generator_->sigma();
  auto x_neg = mu + sigma * standard_normal(mu.sizes(), gen, mu.options());
  Output out;
  out.loss = learned_sampler_energy_loss(energy, x_pos, x_neg.detach(), options_.alpha(), options_.grad_penalty(), out,
                                         &batch, options_.ce_weight());
  // The generator's: E at its draws minus the weighted entropy surrogate
  // (the energy's parameters get no gradient from it: backward_all takes
  // each learner's gradient of its own loss).
  double ess = 0;
  auto c = score_estimate(x_neg.detach(), z, gen, &ess);
  auto e_gen = energy_held(energy, x_neg);
  out.learner_losses["generator"] =
      e_gen.mean() - options_.entropy_weight() * (c * x_neg).flatten(1).sum(1).mean();
  // The proposal's scale: maximise the ELBO at the draws.
  const auto ls = post_log_sigma();
  auto zq = z.detach() + ls.exp() * standard_normal(z.sizes(), gen, z.options());
  auto elbo = standard_log_density(zq) + gaussian_log_density(x_neg.detach(), generator_->mean(zq), sigma.detach()) +
              (ls + 0.5 * std::log(2 * M_PI * M_E)).sum();
  out.learner_losses["posterior"] = -elbo.mean();
  out.metrics["sigma"] = sigma.item<double>();
  out.metrics["post_sigma"] = ls.exp().mean().item<double>();
  out.metrics["post_ess"] = ess;
  out.metrics["entropy_grad"] = c.flatten(1).norm(2, 1).mean().item<double>();
  return out;
}

}  // namespace ebm
