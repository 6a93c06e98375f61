// Temperature scaling of a classifier's p(y | x) (Guo et al. 2017), the
// standard post-hoc fix of an over- or under-confident classifier:
// p_T(y | x) = softmax(log p(y | x) / T). A training run with validation
// rows fits T there (train.calibrate) and model.pt keeps it
// (ModelInfo::temperature); the commands that print probabilities apply it.
#pragma once

#include <torch/torch.h>

#include <optional>

#include "ebm/energy/energy.h"

namespace ebm {

// T > 0 minimising the NLL of `labels` under p_T, a MAP fit with a N(0, 1)
// prior on log T (golden section over log T in [-4, 4]; the NLL is convex
// in 1 / T). `probs` [N, K], N >= 1; `weights` [N] (mean 1) weigh the rows'
// NLL (train/train.h's class_weights), all 1 when undefined.
double fit_temperature(const torch::Tensor& probs, const torch::Tensor& labels, const torch::Tensor& weights = {});

// softmax(log probs / t) [N, K] in float64; t > 0.
torch::Tensor temperature_scale(const torch::Tensor& probs, double t);

// `probs` scaled by a model's stored temperature (as they are without one).
torch::Tensor scale_by_model_temperature(const torch::Tensor& probs, const std::optional<double>& temperature);

// softmax_y(-E(x, y)) [N, K] (float64, on the CPU) of a classifier energy on
// `device` for rows x [N, ...], in batches of `batch` (float32 on the
// device), eval mode and no graph.
torch::Tensor softmax_class_probabilities(EnergyImpl& energy, const torch::Tensor& x, int64_t batch,
                                          c10::Device device);

}  // namespace ebm
