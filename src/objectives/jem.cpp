// JEM: cross entropy plus contrastive divergence on log p(x) (and log p(x | y)).
#include <algorithm>
#include <limits>

#include "ebm/core/error.h"
#include "ebm/objectives/objective.h"

namespace ebm {

namespace {
void check_options(const JemOptions& o) {
  EBM_CHECK_CONFIG(o.ce_weight() >= 0, "objective.ce_weight must be >= 0, got ", o.ce_weight());
  EBM_CHECK_CONFIG(o.px_weight() >= 0, "objective.px_weight must be >= 0, got ", o.px_weight());
  EBM_CHECK_CONFIG(o.pxy_weight() >= 0, "objective.pxy_weight must be >= 0, got ", o.pxy_weight());
  EBM_CHECK_CONFIG(o.warmup() >= 0, "objective.warmup must be >= 0, got ", o.warmup());
  EBM_CHECK_CONFIG(o.ce_steps() >= 0, "objective.ce_steps must be >= 0, got ", o.ce_steps());
  EBM_CHECK_CONFIG(o.px_every() >= 1, "objective.px_every must be >= 1, got ", o.px_every());
}
}  // namespace

Jem::Jem(const JemOptions& o, std::shared_ptr<ContrastiveDivergence> px, std::shared_ptr<ContrastiveDivergence> pxy)
    : options_(o), px_(std::move(px)), pxy_(std::move(pxy)) {
  check_options(o);
  TORCH_INTERNAL_ASSERT(px_ && (pxy_ || o.pxy_weight() == 0));
}

Jem::Jem(const JemOptions& o, std::shared_ptr<Objective> px_sm) : options_(o), px_sm_(std::move(px_sm)) {
  check_options(o);
  EBM_CHECK_CONFIG(o.pxy_weight() == 0, "objective.pxy_weight trains log p(x | y) with chains: it needs "
                   "objective.px = \"cd\"");
  TORCH_INTERNAL_ASSERT(px_sm_);
}

namespace {
// The energy the p(x) term trains, keeping the class energies of its last
// forward: the p(x) term's training pass runs on [x+, x-], whose first rows
// give the classifier's logits, so the cross entropy needs no pass of its own.
class KeepClassEnergies : public EnergyImpl {
 public:
  explicit KeepClassEnergies(EnergyImpl& inner) : inner_(Energy(Energy(), &inner)) {
    register_module("inner", inner_);
  }
  torch::Tensor energy(const torch::Tensor& x) override {
    last_ = inner_->class_energies(x);
    return -torch::logsumexp(-last_, 1);
  }
  std::vector<int64_t> event_shape() const override { return inner_->event_shape(); }
  int64_t num_classes() const override { return inner_->num_classes(); }
  torch::Tensor class_energies(const torch::Tensor& x) override { return inner_->class_energies(x); }
  const torch::Tensor& last() const { return last_; }

 private:
  Energy inner_;
  torch::Tensor last_;
};
}  // namespace

void Jem::fit_data(const torch::Tensor& train) {
  if (px_sm_) px_sm_->fit_data(train);
  if (px_) px_->fit_data(train);
  if (pxy_) pxy_->fit_data(train);
}

Output Jem::compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) {
  EBM_CHECK_CONFIG(energy.num_classes() > 0,
                   "objective.name = \"jem\" trains a classifier: set energy.conditional = true");
  // steps since the cross-entropy warm start; the generative terms run on
  // every px_every-th of them, the warm-up counting those
  const int64_t t = calls_ - options_.ce_steps();
  const bool generative = t >= 0 && t % options_.px_every() == 0;
  const int64_t g_steps = t < 0 ? 0 : t / options_.px_every();
  const double ramp =
      !generative ? 0.0
                  : options_.warmup() == 0 ? 1.0 : std::min(1.0, double(g_steps + 1) / double(options_.warmup()));
  Output out;
  if (px_sm_ && options_.px_weight() > 0 && generative) {
    // the cross entropy on the clean batch, score matching on E(x) of noised copies
    auto y = checked_labels(energy, batch);
    auto logits = -energy.class_energies(batch.x);
    y = y.to(logits.device());
    auto ce = torch::nn::functional::cross_entropy(logits, y);
    KeepClassEnergies marginal(energy);
    Output g = px_sm_->compute(marginal, batch, gen);
    out.metrics["accuracy"] = (logits.detach().argmax(1) == y).to(torch::kDouble).mean().item<double>();
    out.metrics["ce"] = ce.item<double>();
    out.metrics["e_pos"] = (-torch::logsumexp(logits.detach(), 1)).mean().item<double>();
    out.metrics["dsm"] = g.loss.item<double>();
    for (const auto& [k, v] : g.metrics) out.metrics[k] = v;
    out.loss = options_.ce_weight() * ce + (ramp * options_.px_weight()) * g.loss;
  } else if (options_.px_weight() > 0 && generative) {
    // (one training pass for both terms: the p(x) term's on [x+, x-])
    KeepClassEnergies keep(energy);
    Output g = px_->compute(keep, batch, gen);
    const int64_t n = batch.x.size(0);
    TORCH_INTERNAL_ASSERT(keep.last().defined() && keep.last().size(0) == 2 * n);
    auto y = checked_labels(energy, batch).to(keep.last().device());
    auto logits = -keep.last().narrow(0, 0, n);
    auto ce = torch::nn::functional::cross_entropy(logits, y);
    out.metrics["accuracy"] = (logits.detach().argmax(1) == y).to(torch::kDouble).mean().item<double>();
    out.metrics["ce"] = ce.item<double>();
    out.loss = options_.ce_weight() * ce + (ramp * options_.px_weight()) * g.loss;
    for (const auto& [k, v] : g.metrics) out.metrics[k] = v;
  } else {
    out = ce_.compute(energy, batch, gen);
    out.metrics["ce"] = out.loss.item<double>();
    out.loss = options_.ce_weight() * out.loss;
  }
  if (pxy_ && options_.pxy_weight() > 0 && generative) {
    Output g = pxy_->compute(energy, batch, gen);
    out.loss = out.loss + (ramp * options_.pxy_weight()) * g.loss;
    out.metrics["e_pos_y"] = g.metrics.at("e_pos");
    out.metrics["e_neg_y"] = g.metrics.at("e_neg");
  }
  out.metrics["generative_weight"] = ramp;
  ++calls_;
  return out;
}

double Jem::held_out_loss(EnergyImpl& energy, const torch::Tensor& x, at::Generator& gen) {
  if (!px_sm_) return std::numeric_limits<double>::quiet_NaN();
  KeepClassEnergies marginal(energy);
  return options_.px_weight() * px_sm_->compute(marginal, Batch{x, {}}, gen).loss.item<double>();
}

void Jem::save(torch::serialize::OutputArchive& archive) const {
  torch::serialize::OutputArchive px, pxy;
  if (px_) {  // (score matching keeps no state)
    px_->save(px);
    archive.write("px", px);
  }
  if (pxy_) {
    pxy_->save(pxy);
    archive.write("pxy", pxy);
  }
  archive.write("calls", torch::tensor(calls_, torch::kLong));
}

void Jem::load(torch::serialize::InputArchive& archive) {
  torch::serialize::InputArchive px, pxy;
  if (px_) {
    archive.read("px", px);
    px_->load(px);
  }
  if (pxy_) {
    archive.read("pxy", pxy);
    pxy_->load(pxy);
  }
  torch::Tensor calls;
  archive.read("calls", calls);
  calls_ = calls.item<int64_t>();
}

}  // namespace ebm
