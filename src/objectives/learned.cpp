// Kim & Bengio and MEG (objectives/learned.h), and the energy's loss shared
// by every learned-sampler objective.
#include "ebm/objectives/learned.h"

#include <cmath>

#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/energy/generator.h"

namespace ebm {

torch::Tensor learned_sampler_energy_loss(EnergyImpl& energy, const torch::Tensor& x_pos,
                                          const torch::Tensor& x_neg, double alpha, double grad_penalty,
                                          Output& out, const Batch* labelled, double ce_weight) {
  auto xp = grad_penalty > 0 ? x_pos.detach().requires_grad_(true) : x_pos;
  // One training pass over [x+, x-]: spectral normalisation's power iteration
  // updates its vectors in place once per pass, which a second pass would do
  // under the first one's graph.
  const int64_t n = x_pos.size(0);
  const bool classify = ce_weight > 0;
  torch::Tensor e, logits;
  if (classify) {
    EBM_CHECK_CONFIG(energy.num_classes() > 0 && labelled != nullptr,
                     "objective.ce_weight > 0 trains a classifier: set energy.name = \"jem\" (or energy.conditional)");
    auto ce = energy.class_energies(torch::cat({xp, x_neg}));
    e = -torch::logsumexp(-ce, 1);
    logits = -ce.narrow(0, 0, n);
  } else {
    e = energy.energy(torch::cat({xp, x_neg}));
  }
  auto e_pos = e.narrow(0, 0, n), e_neg = e.narrow(0, n, x_neg.size(0));
  auto loss = e_pos.mean() - e_neg.mean();
  if (alpha > 0) loss = loss + alpha * (e_pos.pow(2).mean() + e_neg.pow(2).mean());
  if (grad_penalty > 0) {
    auto g = torch::autograd::grad({e_pos.sum()}, {xp}, {}, true, true)[0];
    loss = loss + grad_penalty * 0.5 * g.flatten(1).pow(2).sum(1).mean();
  }
  if (classify) {
    auto y = checked_labels(energy, *labelled).to(logits.device());
    auto ce = torch::nn::functional::cross_entropy(logits, y);
    loss = loss + ce_weight * ce;
    out.metrics["ce"] = ce.item<double>();
    out.metrics["accuracy"] = (logits.detach().argmax(1) == y).to(torch::kDouble).mean().item<double>();
  }
  out.metrics["e_pos"] = e_pos.mean().item<double>();
  out.metrics["e_neg"] = e_neg.mean().item<double>();
  out.metrics["gap"] = out.metrics["e_neg"] - out.metrics["e_pos"];  // (as contrastive divergence logs it)
  return loss;
}

torch::Tensor energy_held(EnergyImpl& energy, const torch::Tensor& x) {
  const bool was_training = energy.is_training();
  energy.eval();
  auto e = energy.energy(x);
  energy.train(was_training);
  return e;
}

namespace {
void check_common(double entropy_weight, double alpha, double grad_penalty) {
  EBM_CHECK_CONFIG(entropy_weight >= 0, "objective.entropy_weight must be >= 0, got ", entropy_weight);
  EBM_CHECK_CONFIG(alpha >= 0 && grad_penalty >= 0, "objective.alpha and grad_penalty must be >= 0, got ", alpha,
                   ", ", grad_penalty);
}
}  // namespace

// ---- Kim & Bengio ----

KimBengio::KimBengio(const KimBengioOptions& o, std::shared_ptr<GeneratorImpl> generator)
    : options_(o), generator_(std::move(generator)) {
  EBM_CHECK_CONFIG(generator_ != nullptr,
                   "objective.name = \"kim_bengio\" needs a generator (generator.name = mlp or deconv)");
  EBM_CHECK_CONFIG(!generator_->batch_norm_scales().empty(),
                   "objective.name = \"kim_bengio\" reads the entropy from the generator's batch-norm scales: set "
                   "generator.batch_norm = true");
  check_common(o.entropy_weight(), o.alpha(), o.grad_penalty());
}

std::vector<LearnedModule> KimBengio::learned_modules() { return {LearnedModule{"generator", generator_}}; }

torch::Tensor KimBengio::entropy_estimate(const GeneratorImpl& generator) {
  torch::Tensor h;
  for (const auto& g : generator.batch_norm_scales()) {
    auto term = (0.5 * (g.pow(2) + 1e-12).log() + 0.5 * std::log(2 * M_PI * M_E)).sum();
    h = h.defined() ? h + term : term;
  }
  TORCH_INTERNAL_ASSERT(h.defined(), "kim_bengio: the generator has no batch-norm scales");
  return h;
}

Output KimBengio::compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) {
  const auto& x_pos = batch.x;
  generator_->train();
  auto z = generator_->latent(x_pos.size(0), gen).to(x_pos.device(), x_pos.scalar_type());
  auto x_gen = generator_->mean(z);
  Output out;
  out.loss = learned_sampler_energy_loss(energy, x_pos, x_gen.detach(), options_.alpha(), options_.grad_penalty(),
                                         out);
  auto h = entropy_estimate(*generator_);
  out.learner_losses["generator"] = energy_held(energy, x_gen).mean() - options_.entropy_weight() * h;
  out.metrics["entropy"] = h.item<double>();
  return out;
}

// ---- MEG ----

StatisticsNetworkImpl::StatisticsNetworkImpl(const std::vector<int64_t>& shape, int64_t latent_dim,
                                             std::vector<int64_t> hidden) {
  EBM_CHECK_CONFIG(!hidden.empty(), "objective.stats_hidden must list at least one width");
  int64_t in = 0;
  if (shape.size() == 3) {
    c1_ = register_module("c1", torch::nn::Conv2d(torch::nn::Conv2dOptions(shape[0], 32, 4).stride(2).padding(1)));
    c2_ = register_module("c2", torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 4).stride(2).padding(1)));
    torch::NoGradGuard ng;
    std::vector<int64_t> probe = shape;
    probe.insert(probe.begin(), 1);
    in = c2_->forward(c1_->forward(torch::zeros(probe))).numel();
  } else {
    EBM_CHECK_CONFIG(shape.size() == 1, "meg: the statistics network takes vectors [D] or images [C, H, W], got "
                     "event shape ", c10::IntArrayRef(shape));
    in = shape[0];
  }
  in += latent_dim;
  hidden.push_back(1);
  for (size_t i = 0; i < hidden.size(); ++i) {
    EBM_CHECK_CONFIG(hidden[i] >= 1, "objective.stats_hidden widths must be >= 1, got ", hidden[i]);
    layers_.push_back(register_module("fc" + std::to_string(i), torch::nn::Linear(in, hidden[i])));
    in = hidden[i];
  }
}

torch::Tensor StatisticsNetworkImpl::forward(const torch::Tensor& x, const torch::Tensor& z) {
  auto h = x;
  if (c1_) h = torch::leaky_relu(c2_->forward(torch::leaky_relu(c1_->forward(h), 0.2)), 0.2);
  h = torch::cat({h.flatten(1), z}, 1);
  for (size_t i = 0; i < layers_.size(); ++i) {
    h = layers_[i]->forward(h);
    if (i + 1 < layers_.size()) h = torch::leaky_relu(h, 0.2);
  }
  return h.squeeze(1);
}

torch::Tensor jsd_mutual_information(StatisticsNetworkImpl& t, const torch::Tensor& x, const torch::Tensor& z) {
  auto joint = t.forward(x, z);
  auto marginal = t.forward(x, z.roll(1, 0));
  return (-torch::softplus(-joint)).mean() - torch::softplus(marginal).mean();
}

torch::Tensor dv_mutual_information(StatisticsNetworkImpl& t, const torch::Tensor& x, const torch::Tensor& z) {
  auto joint = t.forward(x, z);
  auto marginal = t.forward(x, z.roll(1, 0));
  return joint.mean() - (torch::logsumexp(marginal, 0) - std::log(double(marginal.size(0))));
}

torch::Tensor mala_log_proposal(const torch::Tensor& to, const torch::Tensor& from, const torch::Tensor& grad_from,
                                double step) {
  const double l = double(to[0].numel());
  return -(to - from + step * grad_from).flatten(1).pow(2).sum(1) / (4 * step) - 0.5 * l * std::log(4 * M_PI * step);
}

torch::Tensor latent_mala_step(const LatentPotential& u, torch::Tensor& z, double step, at::Generator& gen) {
  torch::AutoGradMode grad_on(true);
  auto value_and_grad = [&](const torch::Tensor& at) {
    auto v = at.detach().requires_grad_(true);
    auto uv = u(v);
    auto g = torch::autograd::grad({uv.sum()}, {v})[0];
    return std::make_pair(uv.detach(), g.detach());
  };
  auto z0 = z.detach();
  auto [u0, g0] = value_and_grad(z0);
  auto z1 = z0 - step * g0 + std::sqrt(2 * step) * standard_normal(z0.sizes(), gen, z0.options());
  auto [u1, g1] = value_and_grad(z1);
  auto log_ratio = u0 - u1 + mala_log_proposal(z0, z1, g1, step) - mala_log_proposal(z1, z0, g0, step);
  auto log_u = at::rand({z0.size(0)}, gen, z0.options()).clamp_min(1e-300).log();
  auto accept = (log_u < log_ratio) & torch::isfinite(log_ratio);
  std::vector<int64_t> shape(z0.dim(), 1);
  shape[0] = z0.size(0);
  z = torch::where(accept.view(shape), z1, z0);
  return accept.to(z0.scalar_type());
}

LatentRefinement refine_latents(EnergyImpl& energy, GeneratorImpl& g, const torch::Tensor& z, int64_t warmup,
                                int64_t steps, double step, at::Generator& gen) {
  EBM_CHECK_CONFIG(warmup >= 0 && steps >= 0 && step > 0, "latent refinement: warm-up and steps must be >= 0 and the "
                   "step > 0");
  const bool was_training = g.is_training();
  g.eval();
  LatentPotential u = [&](const torch::Tensor& v) {
    return energy_held(energy, g.mean(v)) + 0.5 * v.flatten(1).pow(2).sum(1);
  };
  LatentRefinement r;
  r.z = z.detach().clone();
  r.step = step;
  for (int64_t k = 0; k < warmup; ++k) {
    const double rate = latent_mala_step(u, r.z, r.step, gen).mean().item<double>();
    r.step = std::clamp(r.step * std::exp(rate - 0.574), 1e-8, 10.0);
  }
  double accepted = 0;
  for (int64_t k = 0; k < steps; ++k) accepted += latent_mala_step(u, r.z, r.step, gen).mean().item<double>();
  r.accept = steps > 0 ? accepted / double(steps) : 0.0;
  g.train(was_training);
  return r;
}

Meg::Meg(const MegOptions& o, std::shared_ptr<GeneratorImpl> generator)
    : options_(o), generator_(std::move(generator)), step_(o.mala_step()) {
  EBM_CHECK_CONFIG(generator_ != nullptr, "objective.name = \"meg\" needs a generator (generator.name = mlp or deconv)");
  check_common(o.entropy_weight(), o.alpha(), o.grad_penalty());
  EBM_CHECK_CONFIG(o.mala_steps() >= 0, "objective.mala_steps must be >= 0, got ", o.mala_steps());
  EBM_CHECK_CONFIG(o.mala_step() > 0 && std::isfinite(o.mala_step()), "objective.mala_step must be > 0, got ",
                   o.mala_step());
  EBM_CHECK_CONFIG(o.stats_lr() >= 0, "objective.stats_lr must be >= 0, got ", o.stats_lr());
  stats_ = std::make_shared<StatisticsNetworkImpl>(generator_->event_shape(), generator_->latent_dim(),
                                                   o.stats_hidden());
}

std::vector<LearnedModule> Meg::learned_modules() {
  return {LearnedModule{"generator", generator_}, LearnedModule{"statistics", stats_, options_.stats_lr()}};
}

Output Meg::compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) {
  const auto& x_pos = batch.x;
  generator_->train();
  auto z = generator_->latent(x_pos.size(0), gen).to(x_pos.device(), x_pos.scalar_type());
  auto x_gen = generator_->mean(z);
  torch::Tensor x_neg = x_gen.detach();
  Output out;
  if (options_.mala_steps() > 0) {
    // (each chain's target is its own: batch norm from running statistics)
    const auto r = refine_latents(energy, *generator_, z, 0, options_.mala_steps(), step_, gen);
    const double rate = r.accept;
    step_ = std::clamp(step_ * std::exp(0.5 * (rate - 0.574)), 1e-6, 10.0);
    {
      torch::NoGradGuard ng;
      generator_->eval();
      x_neg = generator_->mean(r.z);
      generator_->train();
    }
    out.metrics["mala_accept"] = rate;
    out.metrics["mala_step"] = step_;
  }
  out.loss = learned_sampler_energy_loss(energy, x_pos, x_neg, options_.alpha(), options_.grad_penalty(), out);
  auto mi = jsd_mutual_information(*stats_, x_gen, z);
  out.learner_losses["statistics"] = -mi;
  out.learner_losses["generator"] = energy_held(energy, x_gen).mean() - options_.entropy_weight() * mi;
  out.metrics["mi"] = mi.item<double>();
  return out;
}

void Meg::save(torch::serialize::OutputArchive& archive) const {
  archive.write("mala_step", torch::tensor(step_, torch::kDouble));
}

void Meg::load(torch::serialize::InputArchive& archive) {
  torch::Tensor s;
  archive.read("mala_step", s);
  step_ = s.item<double>();
}

}  // namespace ebm
