// Trajectory prediction with an energy over whole trajectories (rows of T
// steps of F values, step-major; data/trajectories.h): the future given the
// past is p(x_future | x_past) ∝ exp(-E([x_past, x_future])), sampled by a
// sampler on the future coordinates only, the past clamped
// (sampling/conditional.h); scored per horizon step against constant-velocity
// extrapolation, x_{t+h} = x_t + h (x_t - x_{t-1}).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "ebm/core/affine.h"
#include "ebm/energy/energy.h"
#include "ebm/sampling/sampling.h"

namespace ebm {

struct PredictionOptions {
  PredictionOptions(int64_t step_dim, int64_t horizon) : step_dim_(step_dim), horizon_(horizon) {}
  TORCH_ARG(int64_t, step_dim);     // F >= 1: values per step
  TORCH_ARG(int64_t, horizon);      // H >= 1: future steps returned
  TORCH_ARG(int64_t, steps) = 200;  // sampler transitions per chain
  TORCH_ARG(int64_t, chains) = 4;   // chains per row; the one of lowest final energy is kept
};

// The steps of a trajectory model: its event size over F. kBadData when the
// model's samples are not vectors of whole steps.
int64_t trajectory_steps(const std::vector<int64_t>& event_shape, int64_t step_dim);

// Checks rows of `what` [N, W] as the past of a trajectory model of T steps
// of F values and returns t_p = W / F: kBadData when W is not a multiple of F
// or t_p < 2 (the baseline's velocity needs two steps), kUsage when
// t_p + horizon > T.
int64_t past_steps(const torch::Tensor& past, int64_t step_dim, int64_t total_steps, int64_t horizon,
                   const std::string& what);

// Predicts `horizon` steps after each row of `past` [N, t_p * F] (the user's
// units). `energy` is over whole trajectories in the model's units and
// `units` maps the user's units to them (sampling_view). The chains start
// from the constant-velocity extrapolation; steps beyond t_p + H that the
// model has are sampled too and dropped. Returns [N, H * F] in the user's
// units.
torch::Tensor predict_trajectories(EnergyImpl& energy, const AffineMap& units, Sampler& sampler,
                                   const torch::Tensor& past, const PredictionOptions& options,
                                   at::Generator& gen);

// The conditional mode instead of a draw: the future coordinates descend
// E([x_past, x_future]) from the last position held still or the
// constant-velocity extrapolation, whichever E finds likelier, by
// posterior_mode's backtracking descent (eval/restoration.h) preconditioned
// by `data_var`, the data's variance in the model's units; `steps`
// iterations. Where the conditional is close to Gaussian, its mode is its
// mean, the prediction of least squared error: a probe's AR(1) trajectories
// (model by DSM) at horizon 10 scored 12,482 with 200 noiseless Langevin
// steps of the model's 0.003 from constant velocity, against the optimum's
// 432. Returns [N, H * F] in the user's units.
torch::Tensor predict_mode(EnergyImpl& energy, const AffineMap& units, const torch::Tensor& past, int64_t step_dim,
                           int64_t horizon, int64_t steps, double data_var);

// The mean of the future given the past under a Gaussian fitted to whole
// training trajectories `train` [M, T * F] (the user's units; a ridge of 1e-6
// of the mean variance): a linear predictor any model should beat.
torch::Tensor gaussian_prediction(const torch::Tensor& train, const torch::Tensor& past, int64_t step_dim,
                                  int64_t horizon);

// The last step of `past` repeated `steps` times: [N, steps * F].
torch::Tensor last_position(const torch::Tensor& past, int64_t step_dim, int64_t steps);

// x_{t_p - 1 + h} = x_last + h (x_last - x_prev), h = 1 .. steps, from the
// last two steps of `past` [N, t_p * F] (t_p >= 2): [N, steps * F].
torch::Tensor constant_velocity(const torch::Tensor& past, int64_t step_dim, int64_t steps);

// Mean squared error of each of the H steps of `pred` [N, H * F] against the
// first H steps of `truth` [N, >= H * F], averaged over rows and the F values.
std::vector<double> per_step_mse(const torch::Tensor& pred, const torch::Tensor& truth, int64_t step_dim);

}  // namespace ebm
