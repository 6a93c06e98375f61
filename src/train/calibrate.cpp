// train.calibrate: a classifier's p(y | x) temperature fitted on the run's
// validation rows at its end (model/temperature.h), kept in model.pt.
#include <nlohmann/json.hpp>

#include <cmath>
#include <ostream>
#include <utility>

#include "ebm/core/progress.h"
#include "ebm/model/cross_fit.h"
#include "ebm/model/temperature.h"
#include "ebm/train/train.h"

namespace ebm {

namespace {
// (fewer rows give a T too noisy to trust over T = 1: auto fits none)
constexpr int64_t kAutoCalibrationRows = 100;

torch::Tensor row_nll(const torch::Tensor& p, const torch::Tensor& y) {
  return -p.gather(1, y.view({-1, 1})).squeeze(1).clamp_min(1e-300).log();
}

// (w: class_weights, or undefined for 1s)
double mean_nll(const torch::Tensor& p, const torch::Tensor& y, const torch::Tensor& w) {
  return (w.defined() ? row_nll(p, y) * w : row_nll(p, y)).mean().item<double>();
}

// What a temperature gains on rows it was not fitted to (cross-fitted,
// model/cross_fit.h): the mean per-row NLL gain over T = 1 and its
// standard error.
std::pair<double, double> held_out_gain(const torch::Tensor& p, const torch::Tensor& y, const torch::Tensor& w) {
  auto d = row_nll(p, y) - row_nll(cross_fitted_scale(p, y, nullptr, w), y);
  if (w.defined()) d = d * w;
  return {d.mean().item<double>(), d.std().item<double>() / std::sqrt(double(p.size(0)))};
}
}  // namespace

void Trainer::calibrate(std::ostream& metrics) {
  calibrated_ = {};
  const std::string mode = cfg_.get_string("train.calibrate");
  if (mode == "none" || val_kind_ != ValKind::kClasses || val_.size() == 0) return;
  const int64_t n = val_.size();
  if (mode == "auto" && n < kAutoCalibrationRows) {
    notes() << "ebm: note: " << n << " validation rows are too few to fit p(y | x)'s temperature (train.calibrate "
            << "= auto needs " << kAutoCalibrationRows << "): probabilities are the softmax as trained\n";
    return;
  }
  const int64_t batch = val_.event_shape().size() == 1 ? 4096 : 256;
  auto p = softmax_class_probabilities(*parts_.energy, val_.x, batch, device_);
  auto y = val_.y.to(torch::kCPU, torch::kLong);
  // (batches that drew the classes equally often: the classes weigh alike
  // here too, or T would pull p(y | x) back toward the data's shares)
  const auto w = class_weights(y, parts_.balanced);
  const double t = fit_temperature(p, y, w);
  // (the fit's bracket, log T in [-4, 4]: a T at its end is a bound, not a fit)
  if (std::abs(std::log(t)) > 3.99)
    notes() << "ebm: note: p(y | x)'s temperature reached the fit's bound, " << t << ": the validation rows want "
            << (t > 1 ? "a flatter" : "a sharper") << " p(y | x) than any temperature gives (a model far from "
            << "calibrated)\n";
  // auto: only a temperature that helps rows it was not fitted to (a
  // near-Bayes model's T of 1.17 from 450 rows, 22 of the rare class, took
  // its ECE from 0.0038 to 0.0080)
  if (mode == "auto") {
    const auto [gain, se] = held_out_gain(p, y, w);
    if (!(gain > 2 * se)) {
      nlohmann::json j = {{"event", "calibrate"}, {"temperature", 1.0}, {"val_rows", n}, {"fitted", t},
                          {"held_out_gain", gain}, {"held_out_gain_se", se}};
      metrics << j.dump() << "\n" << std::flush;
      notes() << "ebm: note: p(y | x)'s temperature left at 1: a T fitted on one half of the " << n
              << " validation rows lowers the other half's NLL by " << gain << " +- " << se
              << ", no more than chance (on all of them T = " << t
              << "; train.calibrate = temperature applies it anyway)\n";
      return;
    }
  }
  calibrated_ = {t, n, mean_nll(p, y, w), mean_nll(temperature_scale(p, t), y, w)};
  nlohmann::json j = {{"event", "calibrate"}, {"temperature", t}, {"val_rows", n},
                      {"val_nll", calibrated_.nll}, {"val_nll_scaled", calibrated_.nll_scaled}};
  metrics << j.dump() << "\n" << std::flush;
}

}  // namespace ebm
