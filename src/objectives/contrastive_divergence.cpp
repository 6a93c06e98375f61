#include <algorithm>
#include <cmath>

#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/objectives/objective.h"

namespace ebm {

torch::Tensor checked_labels(EnergyImpl& energy, const Batch& batch) {
  const int64_t k = energy.num_classes();
  EBM_CHECK_DATA(batch.y.defined(), "the energy has one output per class (", k,
                 ") and needs labelled data (data.labels, or a labelled built-in set)");
  auto y = batch.y.to(torch::kLong);
  const int64_t lo = y.min().item<int64_t>(), hi = y.max().item<int64_t>();
  EBM_CHECK_DATA(lo >= 0 && hi < k, "label ", lo < 0 ? lo : hi, " outside the model's ", k,
                 " classes (energy.classes)");
  return y;
}

ContrastiveDivergence::ContrastiveDivergence(const ContrastiveDivergenceOptions& o,
                                             std::shared_ptr<Sampler> sampler,
                                             std::shared_ptr<ReplayBuffer> buffer)
    : options_(o), sampler_(std::move(sampler)), buffer_(std::move(buffer)) {
  EBM_CHECK_CONFIG(o.steps() >= 0, "sampler.steps must be >= 0, got ", o.steps());
  EBM_CHECK_CONFIG(o.alpha() >= 0, "objective.alpha must be >= 0, got ", o.alpha());
  EBM_CHECK_CONFIG(o.data_noise() >= 0, "objective.data_noise must be >= 0, got ",
                   o.data_noise());
  EBM_CHECK_CONFIG(o.chain_init() == "buffer" || o.chain_init() == "data",
                   "objective.chain_init must be buffer or data, got '", o.chain_init(), "'");
  EBM_CHECK_CONFIG(o.jumps() >= 0, "objective.jumps must be >= 0, got ", o.jumps());
  EBM_CHECK_CONFIG(o.target_accept() >= 0 && o.target_accept() < 1, "sampler.target_accept must be in [0, 1), got ",
                   o.target_accept());
  EBM_CHECK_CONFIG(o.adapt_rate() > 0, "the step's adaptation rate must be > 0, got ", o.adapt_rate());
  TORCH_INTERNAL_ASSERT(sampler_ && buffer_);
}

void ContrastiveDivergence::fit_data(const torch::Tensor& train) {
  buffer_->fit_data(train);
  if (options_.jumps() == 0) return;
  // (rows of any shape, flattened; the proposal's uniform part spans the
  // buffer's box, or the data's)
  auto flat = train.detach().reshape({train.size(0), -1});
  auto [lo, hi] = buffer_->box();
  if (!lo.defined()) std::tie(lo, hi) = data_box(flat);
  jumps_ = std::make_unique<DataProposal>(options_.jump_proposal(), flat, lo.reshape({-1}), hi.reshape({-1}));
}

Output ContrastiveDivergence::compute(EnergyImpl& energy, const Batch& batch,
                                      at::Generator& gen) {
  auto x_pos = batch.x;
  if (options_.data_noise() > 0)
    x_pos = x_pos + options_.data_noise() * standard_normal(x_pos.sizes(), gen, x_pos.options());
  const int64_t n = x_pos.size(0);
  // A class-conditional energy learns E(x, y): its chains sample p(x | y) at
  // the batch's labels (from their class's pool of the buffer).
  const torch::Tensor y =
      energy.num_classes() > 0 && !options_.marginal() ? checked_labels(energy, batch) : torch::Tensor();
  Energy target = at_labels(energy, y);
  torch::Tensor x0, slots;
  if (options_.chain_init() == "data") {
    x0 = x_pos.clone();
  } else {
    std::tie(x0, slots) = buffer_->sample(n, gen, buffer_->options().classes() > 0 ? y : torch::Tensor());
  }
  x0 = x0.to(x_pos.device(), x_pos.scalar_type());
  double jump_rate = 0;
  Stats stats;
  ChainState chains{torch::Tensor()};
  {
    FreezeParameters frozen(energy);
    if (options_.jumps() > 0) {
      TORCH_CHECK(jumps_, "ContrastiveDivergence: objective.jumps needs fit_data before the first step");
      auto flat = x0.reshape({x0.size(0), -1});
      jump_rate = jumps_->jump(*target, flat, options_.jumps(), gen, x0.sizes());
      x0 = flat.reshape(x0.sizes());
    }
    chains.x = x0;
    stats = sampler_->run(*target, chains, options_.steps(), gen);
  }
  auto x_neg = chains.x.detach();
  if (slots.defined()) buffer_->push(x_neg, slots);
  const double aim = options_.target_accept() > 0 ? options_.target_accept() : sampler_->target_accept();
  if (options_.adapt_step() && aim > 0 && options_.steps() > 0 && std::isfinite(stats.accept_rate)) {
    // (bounded so that one bad iteration cannot run the step to 0 or infinity)
    const double eps = sampler_->step_size() * std::exp(options_.adapt_rate() * (stats.accept_rate - aim));
    sampler_->set_step_size(std::clamp(eps, 1e-8, 1e4));
  }

  auto e = at_labels(energy, y.defined() ? torch::cat({y, y}) : y)->energy(torch::cat({x_pos, x_neg}, 0));  // [2B]
  // mean E(x+) - mean E(x-) + alpha (mean E(x+)^2 + mean E(x-)^2), both halves
  // of size n: w . e + (alpha / n) e . e with w = +1/n, then -1/n. (Two dot
  // products: a few autograd nodes instead of a dozen.)
  auto w = torch::full({2 * n}, 1.0 / double(n), e.options().requires_grad(false));
  w.narrow(0, n, n).fill_(-1.0 / double(n));
  auto loss = torch::dot(e, w);
  if (options_.alpha() > 0) loss = loss + (options_.alpha() / double(n)) * torch::dot(e, e);
  Output out;
  out.loss = loss;
  auto means = e.detach().view({2, n}).mean(1).to(torch::kCPU, torch::kDouble);  // one sync
  double ep = means[0].item<double>(), en = means[1].item<double>();
  out.metrics = {{"e_pos", ep},
                 {"e_neg", en},
                 {"gap", en - ep},
                 {"accept_rate", stats.accept_rate},
                 {"step_size", stats.step_size},
                 {"n_divergent", double(stats.n_divergent)},
                 {"energy_mean", stats.energy_mean}};
  if (options_.jumps() > 0) out.metrics["jump_rate"] = jump_rate;
  return out;
}

void ContrastiveDivergence::save(torch::serialize::OutputArchive& archive) const {
  buffer_->save(archive);
  torch::serialize::OutputArchive sampler;
  sampler_->save(sampler);
  archive.write("sampler", sampler);
  if (options_.adapt_step()) archive.write("adapted_step", torch::tensor(sampler_->step_size(), torch::kDouble));
}

void ContrastiveDivergence::load(torch::serialize::InputArchive& archive) {
  buffer_->load(archive);
  torch::serialize::InputArchive sampler;
  if (archive.try_read("sampler", sampler)) sampler_->load(sampler);
  torch::Tensor step;
  // (only a sampler whose step adapts takes it: a run of mala resumed with
  // langevin, which has no acceptance to aim at, was refused)
  const double aim = options_.target_accept() > 0 ? options_.target_accept() : sampler_->target_accept();
  if (options_.adapt_step() && aim > 0 && archive.try_read("adapted_step", step))
    sampler_->set_step_size(step.item<double>());
}

}  // namespace ebm
