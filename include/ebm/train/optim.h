// Optimisers and learning-rate schedules: FusedAdam, and the optimizer and
// schedule groups of the [train] section (train.optimizer, train.schedule).
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <vector>

#include "ebm/core/registry.h"

namespace ebm {

// torch::optim::Adam whose update of float32 CPU parameters is one fused pass
// per tensor instead of about ten ATen operations (their per-call overhead is
// most of Adam's cost on small layers). The state (step, exp_avg, exp_avg_sq)
// and its serialisation are Adam's own, so checkpoints move freely between the
// two; when any parameter, gradient or state is not float32, CPU and
// contiguous, or with amsgrad, or fast paths are off, the whole step is Adam's.
class FusedAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;
  torch::Tensor step(LossClosure closure = nullptr) override;

 private:
  bool fusable();
};

// Drops every parameter's gradient, as PyTorch's zero_grad(set_to_none=True):
// the next backward hands its gradient over instead of adding it to zeros,
// and a parameter that gets none is left alone by the step.
void reset_grads(torch::optim::Optimizer& optimizer);

// train.optimizer: (config, parameters) -> optimiser at train.lr.
using OptimizerRegistry =
    ComponentRegistry<std::unique_ptr<torch::optim::Optimizer>, std::vector<torch::Tensor>>;
const OptimizerRegistry& optimizer_registry();

// The learning rate at a step (0-based), warm-up included.
using Schedule = std::function<double(int64_t step)>;
// train.schedule: (config, total steps) -> schedule.
using ScheduleRegistry = ComponentRegistry<Schedule, int64_t>;
const ScheduleRegistry& schedule_registry();

}  // namespace ebm
