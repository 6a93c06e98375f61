#include "ebm/eval/prediction.h"

#include <c10/util/accumulate.h>

#include <cmath>

#include "ebm/core/error.h"
#include "ebm/eval/restoration.h"
#include "ebm/sampling/conditional.h"

namespace ebm {

int64_t trajectory_steps(const std::vector<int64_t>& event_shape, int64_t step_dim) {
  TORCH_CHECK(step_dim >= 1, "trajectory_steps: step_dim must be >= 1, got ", step_dim);
  const int64_t d = c10::multiply_integers(event_shape);
  EBM_CHECK_DATA(event_shape.size() == 1 && d % step_dim == 0 && d >= 2 * step_dim,
                 "a trajectory model needs samples of T >= 2 steps of ", step_dim, " values, got shape ",
                 c10::IntArrayRef(event_shape));
  return d / step_dim;
}

int64_t past_steps(const torch::Tensor& past, int64_t step_dim, int64_t total_steps, int64_t horizon,
                   const std::string& what) {
  EBM_CHECK_DATA(past.dim() == 2, what, ": want rows [N, t_p * ", step_dim, "], got shape ", past.sizes());
  const int64_t w = past.size(1);
  EBM_CHECK_DATA(w % step_dim == 0, what, ": rows of ", w, " values are not whole steps of ", step_dim,
                 " values (the model's step width)");
  const int64_t tp = w / step_dim;
  EBM_CHECK_DATA(tp >= 2, what, ": ", tp, " past step(s); prediction needs at least 2");
  EBM_CHECK_USAGE(horizon >= 1, "horizon must be >= 1, got ", horizon);
  EBM_CHECK_USAGE(tp + horizon <= total_steps, "horizon ", horizon, " after ", tp, " past steps of ", what,
                  " reaches step ", tp + horizon, ", beyond the model's ", total_steps, " steps");
  return tp;
}

torch::Tensor constant_velocity(const torch::Tensor& past, int64_t step_dim, int64_t steps) {
  TORCH_CHECK(past.dim() == 2 && past.size(1) % step_dim == 0 && past.size(1) >= 2 * step_dim,
              "constant_velocity: want [N, t_p * F] with t_p >= 2, got ", past.sizes(), " for F = ", step_dim);
  const int64_t w = past.size(1);
  auto last = past.narrow(1, w - step_dim, step_dim);                      // [N, F]
  auto velocity = last - past.narrow(1, w - 2 * step_dim, step_dim);       // [N, F]
  auto h = torch::arange(1, steps + 1, past.options()).view({1, steps, 1});  // [1, S, 1]
  return (last.unsqueeze(1) + h * velocity.unsqueeze(1)).reshape({past.size(0), steps * step_dim});
}

std::vector<double> per_step_mse(const torch::Tensor& pred, const torch::Tensor& truth, int64_t step_dim) {
  TORCH_CHECK(pred.dim() == 2 && pred.size(1) % step_dim == 0 && truth.dim() == 2 &&
                  truth.size(0) == pred.size(0) && truth.size(1) >= pred.size(1),
              "per_step_mse: want pred [N, H * F] and truth [N, >= H * F], got ", pred.sizes(), " and ",
              truth.sizes());
  const int64_t n = pred.size(0), h = pred.size(1) / step_dim;
  auto d = (pred.to(torch::kDouble) - truth.narrow(1, 0, pred.size(1)).to(torch::kDouble)).view({n, h, step_dim});
  auto mse = d.square().mean(at::IntArrayRef{0, 2}).contiguous();  // [H]
  const double* m = mse.data_ptr<double>();
  return std::vector<double>(m, m + h);
}

torch::Tensor predict_trajectories(EnergyImpl& energy, const AffineMap& units, Sampler& sampler,
                                   const torch::Tensor& past, const PredictionOptions& o, at::Generator& gen) {
  const int64_t f = o.step_dim(), t = trajectory_steps(energy.event_shape(), f);
  const int64_t tp = past_steps(past, f, t, o.horizon(), "past");
  EBM_CHECK_USAGE(o.steps() >= 0, "steps must be >= 0, got ", o.steps());
  EBM_CHECK_USAGE(o.chains() >= 1, "chains must be >= 1, got ", o.chains());
  const int64_t n = past.size(0);
  auto x = past.is_floating_point() ? past : past.to(torch::kFloat);
  // (the whole trajectory: the past, then the baseline's guess for every later step)
  auto full = torch::cat({x, constant_velocity(x, f, t - tp)}, 1);  // [N, T * F]
  auto u = units.to_model(full);
  auto free = torch::zeros({1, t * f}, torch::kBool);
  free.narrow(1, tp * f, (t - tp) * f).fill_(true);
  FreezeParameters frozen(energy);
  auto r = complete(energy, sampler, u, free, u.repeat_interleave(o.chains(), 0),
                    CompletionOptions(o.steps()).chains(o.chains()), gen);
  auto out = units.to_user(r.x.detach().reshape({n, t * f}));
  return out.narrow(1, tp * f, o.horizon() * f).contiguous();
}

torch::Tensor last_position(const torch::Tensor& past, int64_t step_dim, int64_t steps) {
  TORCH_CHECK(past.dim() == 2 && past.size(1) % step_dim == 0 && past.size(1) >= step_dim,
              "last_position: want [N, t_p * F], got ", past.sizes(), " for F = ", step_dim);
  return past.narrow(1, past.size(1) - step_dim, step_dim).repeat({1, steps});
}

torch::Tensor predict_mode(EnergyImpl& energy, const AffineMap& units, const torch::Tensor& past, int64_t step_dim,
                           int64_t horizon, int64_t steps, double data_var) {
  const int64_t f = step_dim, t = trajectory_steps(energy.event_shape(), f);
  const int64_t tp = past_steps(past, f, t, horizon, "past");
  EBM_CHECK_USAGE(steps >= 0, "steps must be >= 0, got ", steps);
  TORCH_CHECK(data_var > 0 && std::isfinite(data_var), "predict_mode: data_var must be > 0, got ", data_var);
  const int64_t n = past.size(0);
  auto x = past.is_floating_point() ? past : past.to(torch::kFloat);
  // (each row starts from whichever of the last position held and the
  // constant-velocity extrapolation the model finds likelier)
  auto held = units.to_model(torch::cat({x, last_position(x, f, t - tp)}, 1));  // [N, T * F]
  auto moving = units.to_model(torch::cat({x, constant_velocity(x, f, t - tp)}, 1));
  auto free = torch::zeros({1, t * f}, torch::kBool);
  free.narrow(1, tp * f, (t - tp) * f).fill_(true);
  FreezeParameters frozen(energy);
  torch::Tensor e_held, e_moving;
  {
    torch::NoGradGuard ng;
    e_held = energy.energy(held).detach();
    e_moving = energy.energy(moving).detach();
  }
  auto u = torch::where((e_moving < e_held).unsqueeze(1), moving, held);
  auto mode = conditional_mode(energy, u, free, u, steps, torch::tensor(data_var, torch::kDouble));
  auto out = units.to_user(mode.reshape({n, t * f}));
  return out.narrow(1, tp * f, horizon * f).contiguous();
}

torch::Tensor gaussian_prediction(const torch::Tensor& train, const torch::Tensor& past, int64_t step_dim,
                                  int64_t horizon) {
  const int64_t w = past.size(1), hf = horizon * step_dim;
  TORCH_CHECK(train.dim() == 2 && train.size(1) >= w + hf && train.size(0) >= 2,
              "gaussian_prediction: want training rows [M >= 2, >= ", w + hf, "], got ", train.sizes());
  // (the future as the missing values of rows [past, future])
  auto rows = torch::cat({past.to(torch::kDouble), torch::zeros({past.size(0), hf}, torch::kDouble)}, 1);
  auto future = torch::zeros({1, w + hf}, torch::kBool);
  future.narrow(1, w, hf).fill_(true);
  return gaussian_fill(rows, future, train.narrow(1, 0, w + hf)).narrow(1, w, hf).to(past.scalar_type()).contiguous();
}

}  // namespace ebm
