// A run's validation on data.val_fraction's held-out rows: p(y | x)'s NLL
// and accuracy of a classifying energy (class-weighted under balanced
// batches), the exact NLL of a 2D model, JEM's held-out p(x) term, and the
// score train.keep_best keeps weights by. Split from trainer.cpp.
#include <cmath>
#include <limits>

#include "ebm/core/rng.h"
#include "ebm/energy/grid2d.h"
#include "ebm/objectives/objective.h"
#include "ebm/train/train.h"

namespace ebm {

Trainer::Validation Trainer::validate() {
  EnergyImpl& e = *parts_.energy;
  const bool was_training = e.is_training();
  e.eval();
  torch::NoGradGuard no_grad;
  const int64_t n = val_.size(), per = val_.event_shape().size() == 1 ? 4096 : 256;
  double nll = 0.0, nll2 = 0.0, right = 0.0;
  // (batches that drew the classes equally often: each class's rows weigh
  // alike, 1 in all, as the training's prior did; in the data's shares a
  // 95/4/1 run's keep_best chose the least balanced weights)
  const torch::Tensor weight = class_weights(val_kind_ == ValKind::kClasses ? val_.y : torch::Tensor(),
                                             parts_.balanced);
  std::vector<torch::Tensor> per_row;
  for (int64_t i = 0; i < n; i += per) {
    const int64_t m = std::min(per, n - i);
    auto x = val_.x.narrow(0, i, m).to(device_, torch::kFloat);
    if (val_kind_ == ValKind::kDensity2d) {
      nll += e.energy(x).to(torch::kDouble).sum().item<double>();
      continue;
    }
    auto y = val_.y.narrow(0, i, m).to(device_, torch::kLong);
    auto lp = (-e.class_energies(x)).to(torch::kDouble).log_softmax(1);
    auto rows = -lp.gather(1, y.unsqueeze(1));
    if (weight.defined()) rows = rows * weight.narrow(0, i, m).to(rows.device()).unsqueeze(1);
    nll += rows.sum().item<double>();
    nll2 += rows.pow(2).sum().item<double>();
    per_row.push_back(rows.squeeze(1).cpu());
    auto hit = (lp.argmax(1) == y).to(torch::kDouble);
    if (weight.defined()) hit = hit * weight.narrow(0, i, m).to(hit.device());
    right += hit.sum().item<double>();
  }
  double accuracy = right / double(n);
  nll /= double(n);
  const double se = std::sqrt(std::max(0.0, nll2 / double(n) - nll * nll) / double(n));
  if (val_kind_ == ValKind::kDensity2d) {
    nll += log_z_grid(e, val_box_, 256) + val_log_jacobian_;
    accuracy = std::numeric_limits<double>::quiet_NaN();
  }
  e.train(was_training);
  return {nll, accuracy, val_kind_ == ValKind::kClasses ? se : std::numeric_limits<double>::quiet_NaN(),
          per_row.empty() ? torch::Tensor() : torch::cat(per_row)};
}

bool Trainer::validates_px() const {
  return parts_.objective->scores_held_out() && val_kind_ == ValKind::kClasses && val_.size() > 0;
}

double Trainer::validate_px() {
  if (!validates_px()) return std::numeric_limits<double>::quiet_NaN();
  EnergyImpl& e = *parts_.energy;
  const bool was_training = e.is_training();
  e.eval();
  // (the same noise at every validation: scores of different steps compare)
  auto gen = make_generator(cfg_.get_int("seed"), kStreamEval, device_);
  const int64_t n = val_.size(), per = 4096;
  double sum = 0.0;
  for (int64_t i = 0; i < n; i += per) {
    const int64_t m = std::min(per, n - i);
    sum += double(m) * parts_.objective->held_out_loss(e, val_.x.narrow(0, i, m).to(device_, torch::kFloat), gen);
  }
  e.train(was_training);
  return sum / double(n);
}

std::string Trainer::best_criterion() const {
  return validates_px() ? "validation objective: NLL of p(y | x) plus the p(x) term" : "validation NLL";
}

std::map<std::string, double> Trainer::validate_step(int64_t step, bool keep_best) {
  std::map<std::string, double> j;
  const auto [nll, accuracy, nll_se, rows] = validate();
  j["val_nll"] = nll;
  if (val_kind_ == ValKind::kClasses) j["val_accuracy"] = accuracy;
  double score = nll;
  bool eligible = true;
  if (const double px = validate_px(); std::isfinite(px)) {
    // JEM with p(x) by score matching: the lowest objective among the
    // steps whose classifier is within two standard errors of the best
    // validation NLL so far (the p(x) term keeps improving long after the
    // classifier starts to overfit a small training set), the standard error
    // of the two steps' paired row-by-row difference: each step's own (an
    // overfitted step's is wide, its confident mistakes) let a probe's step
    // 2,300 (NLL 0.528) pass beside step 600's 0.364
    j["val_px"] = px;
    score = j["val_objective"] = nll + px;
    if (nll < parts_.best.nll || !parts_.best.nll_rows.defined()) {
      parts_.best.nll = nll;
      parts_.best.nll_rows = rows;
    } else if (rows.defined() && rows.numel() == parts_.best.nll_rows.numel()) {
      const auto d = rows - parts_.best.nll_rows;
      const double se_d = d.numel() > 1 ? d.std().item<double>() / std::sqrt(double(d.numel())) : 0.0;
      eligible = d.mean().item<double>() <= 2 * se_d;
    } else {
      eligible = nll <= parts_.best.nll + 2 * nll_se;
    }
  }
  if (keep_best && eligible && score < parts_.best.score) {
    parts_.best.score = score;
    parts_.best.step = step;
    parts_.best.state = module_state(*parts_.energy);
  }
  return j;
}

}  // namespace ebm
