// Calibration of a classifier p(y | x) = softmax_y(-E(x, y)) (`ebm eval
// --task calibration`; Guo et al. 2017): the confidence max_y p(y | x) of
// each row put in B equal-width bins of [0, 1] (bin b = (b/B, (b+1)/B], a
// confidence of exactly 0 in bin 0); per bin the mean confidence and the
// accuracy of the argmax;
//   ECE = sum_b (n_b / N) |acc_b - conf_b|,   MCE = max_b over non-empty bins |acc_b - conf_b|;
// with the accuracy and negative log-likelihood of the labels.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "ebm/core/config.h"
#include "ebm/eval/tasks.h"
#include "ebm/model/model.h"
#include "ebm/model/temperature.h"

namespace ebm {

struct Calibration {
  int64_t n = 0;
  double accuracy = 0, nll = 0, ece = 0, mce = 0;
  int64_t mce_rows = 0;             // rows in the bin that sets the MCE (a bin of a few rows is noise)
  std::vector<int64_t> count;       // per bin
  std::vector<double> confidence;   // per bin: mean confidence (0 when empty)
  std::vector<double> bin_accuracy; // per bin: accuracy (0 when empty)
  nlohmann::json json() const;
};

// From class probabilities `probs` [N, K] (rows summing to 1) and labels
// [N]; `bins` >= 1. kBadData for labels outside 0 .. K-1 or no rows.
Calibration calibration(const torch::Tensor& probs, const torch::Tensor& labels, int64_t bins = 15);

// (fit_temperature and temperature_scale: ebm/model/temperature.h)

// Calibration after temperature scaling without held-out rows of its own:
// T fitted on the even rows scales the odd ones and T fitted on the odd rows
// the even ones (two-fold cross-fitting), then `calibration` of all of them.
// `temperatures` gets the two fitted values. Needs N >= 4.
Calibration cross_fitted_temperature(const torch::Tensor& probs, const torch::Tensor& labels, int64_t bins,
                                     std::pair<double, double>* temperatures);

// A reliability diagram: per bin a bar of its accuracy (dark) over the
// diagonal of perfect calibration (light), written as a grey PNG.
void write_reliability_diagram(const std::string& path, const Calibration& c);

// The baseline classifier a user would try first on vectors: Gaussian
// classes with one shared covariance (linear discriminant analysis; a ridge
// of 1e-3 x the mean variance), priors from the training counts, fitted to
// `train_x` [N, D] with labels `train_y` in 0 .. classes - 1; p(y | x) of
// rows x [M, D] ([M, classes], a class without rows has probability 0).
torch::Tensor gaussian_classifier_probabilities(const torch::Tensor& train_x, const torch::Tensor& train_y,
                                               const torch::Tensor& x, int64_t classes);

// `ebm eval --task classify`: accuracy and NLL of the labels alone.
std::vector<ConfigKey> classify_task_keys();
EvalReport classify_task(const Config& c, EnergyImpl& energy, const ModelInfo& info);

std::vector<ConfigKey> calibration_task_keys();
EvalReport calibration_task(const Config& c, EnergyImpl& energy, const ModelInfo& info);

}  // namespace ebm
