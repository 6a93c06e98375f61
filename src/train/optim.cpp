// FusedAdam, and the optimisers and learning-rate schedules of the [train]
// section.
#include "ebm/train/optim.h"

#include <cmath>

#include "ebm/core/device.h"
#include "ebm/core/error.h"
#include "ebm/core/simd.h"

namespace ebm {

namespace {
// One Adam update of n floats, in torch::optim::Adam's order of operations:
// g += wd p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= step_size m / (sqrt(v) / sqrt(bc2) + eps), the division by sqrt(bc2)
// taken as a product with its reciprocal (a rounding difference only).
EBM_MULTIVERSION void adam_update(float* __restrict p, const float* __restrict grad,
                                  float* __restrict m, float* __restrict v, int64_t n, float b1,
                                  float one_minus_b1, float b2, float one_minus_b2, float wd,
                                  float inv_sqrt_bc2, float eps, float neg_step) {
  for (int64_t j = 0; j < n; ++j) {
    const float g = wd != 0.0f ? grad[j] + wd * p[j] : grad[j];
    const float mj = m[j] * b1 + one_minus_b1 * g;
    const float vj = v[j] * b2 + one_minus_b2 * g * g;
    m[j] = mj;
    v[j] = vj;
    p[j] += neg_step * (mj / (std::sqrt(vj) * inv_sqrt_bc2 + eps));
  }
}

bool fusable_tensor(const torch::Tensor& t) {
  return !t.is_sparse() && t.scalar_type() == torch::kFloat && cpu_fast_path(t) &&
         t.is_contiguous();
}
}  // namespace

bool FusedAdam::fusable() {
  for (auto& group : param_groups()) {
    if (static_cast<torch::optim::AdamOptions&>(group.options()).amsgrad()) return false;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      if (!fusable_tensor(p) || !fusable_tensor(p.grad()) || !p.grad().sizes().equals(p.sizes()))
        return false;
      auto it = state_.find(c10::guts::to_string(p.unsafeGetTensorImpl()));
      if (it == state_.end()) continue;
      auto& st = static_cast<torch::optim::AdamParamState&>(*it->second);
      for (const auto* t : {&st.exp_avg(), &st.exp_avg_sq()})
        if (!fusable_tensor(*t) || !t->sizes().equals(p.sizes())) return false;
    }
  }
  return true;
}

void reset_grads(torch::optim::Optimizer& optimizer) {
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) p.mutable_grad().reset();
}

torch::Tensor FusedAdam::step(LossClosure closure) {
  torch::Tensor loss;
  if (closure != nullptr) {  // first: the gradients to check come from it
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  if (!fusable()) {
    torch::optim::Adam::step();
    return loss;
  }
  torch::NoGradGuard no_grad;
  for (auto& group : param_groups()) {
    const auto& o = static_cast<torch::optim::AdamOptions&>(group.options());
    const double b1 = std::get<0>(o.betas()), b2 = std::get<1>(o.betas());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const auto key = c10::guts::to_string(p.unsafeGetTensorImpl());
      auto it = state_.find(key);
      if (it == state_.end()) {  // as Adam initialises it
        auto st = std::make_unique<torch::optim::AdamParamState>();
        st->step(0);
        st->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        st->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        it = state_.emplace(key, std::move(st)).first;
      }
      auto& st = static_cast<torch::optim::AdamParamState&>(*it->second);
      st.step(st.step() + 1);
      const double bc1 = 1 - std::pow(b1, st.step()), bc2 = 1 - std::pow(b2, st.step());
      adam_update(p.data_ptr<float>(), p.grad().data_ptr<float>(), st.exp_avg().data_ptr<float>(),
                  st.exp_avg_sq().data_ptr<float>(), p.numel(), float(b1), float(1 - b1),
                  float(b2), float(1 - b2), float(o.weight_decay()), float(1 / std::sqrt(bc2)),
                  float(o.eps()), float(-o.lr() / bc1));
      p.unsafeGetTensorImpl()->bump_version();
    }
  }
  return loss;
}

// ----- registries ---------------------------------------------------------------
const OptimizerRegistry& optimizer_registry() {
  static const OptimizerRegistry reg = [] {
    OptimizerRegistry r("optimizer", "train", "optimizer", "adam", "optimiser of every learner");
    r.add({"adam", "Adam (fused pass for float32 CPU parameters)",
           {{"beta1", 0.0, "Adam beta1 (0 is the EBM norm)"}, {"beta2", 0.999, "Adam beta2"}}},
          [](const Config& c, std::vector<torch::Tensor> params) -> std::unique_ptr<torch::optim::Optimizer> {
            const double b1 = c.get_float("train.beta1"), b2 = c.get_float("train.beta2");
            EBM_CHECK_CONFIG(b1 >= 0 && b1 < 1, "train.beta1 must be in [0, 1), got ", b1);
            EBM_CHECK_CONFIG(b2 >= 0 && b2 < 1, "train.beta2 must be in [0, 1), got ", b2);
            return std::make_unique<FusedAdam>(
                std::move(params), torch::optim::AdamOptions(c.get_float("train.lr"))
                                       .betas({b1, b2})
                                       .weight_decay(c.get_float("train.weight_decay")));
          });
    r.add({"sgd", "stochastic gradient descent with momentum", {{"momentum", 0.0, "SGD momentum"}}},
          [](const Config& c, std::vector<torch::Tensor> params) -> std::unique_ptr<torch::optim::Optimizer> {
            return std::make_unique<torch::optim::SGD>(
                std::move(params), torch::optim::SGDOptions(c.get_float("train.lr"))
                                       .momentum(c.get_float("train.momentum"))
                                       .weight_decay(c.get_float("train.weight_decay")));
          });
    return r;
  }();
  return reg;
}

namespace {
// Linear warm-up over the first `warmup` steps, on top of any schedule.
Schedule with_warmup(const Config& c, Schedule s) {
  const int64_t warmup = c.get_int("train.warmup");
  EBM_CHECK_CONFIG(warmup >= 0, "train.warmup must be >= 0, got ", warmup);
  if (warmup == 0) return s;
  return [s, warmup](int64_t step) {
    const double lr = s(step);
    return step < warmup ? lr * double(step + 1) / warmup : lr;
  };
}
}  // namespace

const ScheduleRegistry& schedule_registry() {
  static const ScheduleRegistry reg = [] {
    ScheduleRegistry r("schedule", "train", "schedule", "constant", "learning-rate schedule");
    r.add({"constant", "train.lr throughout", {}}, [](const Config& c, int64_t) -> Schedule {
      const double lr = c.get_float("train.lr");
      return with_warmup(c, [lr](int64_t) { return lr; });
    });
    r.add({"step", "train.lr times decay every decay_every steps",
           {{"decay_every", int64_t(1000), "decay period"}, {"decay", 0.5, "factor per period"}}},
          [](const Config& c, int64_t) -> Schedule {
            const double lr = c.get_float("train.lr"), decay = c.get_float("train.decay");
            const int64_t every = c.get_int("train.decay_every");
            EBM_CHECK_CONFIG(every > 0, "train.decay_every must be > 0, got ", every);
            return with_warmup(c, [=](int64_t step) { return lr * std::pow(decay, step / every); });
          });
    r.add({"cosine", "cosine decay from train.lr to lr_min over the run",
           {{"lr_min", 0.0, "final learning rate"}}},
          [](const Config& c, int64_t steps) -> Schedule {
            const double lr = c.get_float("train.lr"), lo = c.get_float("train.lr_min");
            // (a floor above the start made the rate rise: lr_min 0.1 over lr
            // 1e-3 trained to 100x the rate asked for, exit 0)
            EBM_CHECK_CONFIG(lo >= 0 && lo <= lr, "train.lr_min = ", lo, " must be in [0, ", lr,
                             "], the learning rate the cosine schedule decays from");
            const int64_t n = std::max<int64_t>(steps, 1);
            return with_warmup(c, [=](int64_t step) {
              return lo + 0.5 * (lr - lo) * (1 + std::cos(M_PI * double(step) / n));
            });
          });
    return r;
  }();
  return reg;
}

}  // namespace ebm
