// train.calibrate: a classifier's p(y | x) temperature fitted on the run's
// validation rows at its end (model/temperature.h), kept in model.pt.
#include <nlohmann/json.hpp>

#include <ostream>

#include "ebm/core/progress.h"
#include "ebm/model/temperature.h"
#include "ebm/train/train.h"

namespace ebm {

namespace {
// (fewer rows give a T too noisy to trust over T = 1: auto fits none)
constexpr int64_t kAutoCalibrationRows = 100;

double mean_nll(const torch::Tensor& p, const torch::Tensor& y) {
  return -p.gather(1, y.view({-1, 1})).clamp_min(1e-300).log().mean().item<double>();
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
  const double t = fit_temperature(p, y);
  calibrated_ = {t, n, mean_nll(p, y), mean_nll(temperature_scale(p, t), y)};
  nlohmann::json j = {{"event", "calibrate"}, {"temperature", t}, {"val_rows", n},
                      {"val_nll", calibrated_.nll}, {"val_nll_scaled", calibrated_.nll_scaled}};
  metrics << j.dump() << "\n" << std::flush;
}

}  // namespace ebm
