// Temperature scaling cross-fitted (model/temperature.h): T fitted on the even
// rows scales the odd ones and the reverse, so no row is scaled by a T fitted
// to it; for the calibration report and train.calibrate's test of a T.
#pragma once

#include <utility>

#include <torch/torch.h>

namespace ebm {

// probs [N, K] (N >= 2) scaled so; `temperatures` gets (T of the even rows,
// T of the odd rows) when given; `weights` as fit_temperature's.
torch::Tensor cross_fitted_scale(const torch::Tensor& probs, const torch::Tensor& labels,
                                 std::pair<double, double>* temperatures = nullptr,
                                 const torch::Tensor& weights = {});

}  // namespace ebm
