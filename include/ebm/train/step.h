// The training step as a function of injected parts (DESIGN.md "Trainer"):
// learners (a module with its optimiser, schedule and gradient clip: the
// energy, later a generator or a statistics network), an objective, data and
// a random stream. The Trainer, the benchmarks and tests all call train_step;
// snapshot and restore give the exact state of the parts for checkpoints and
// divergence rollbacks.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "ebm/data/data.h"
#include "ebm/energy/energy.h"
#include "ebm/objectives/objective.h"
#include "ebm/train/optim.h"

namespace ebm {

class Collective;
using CollectivePtr = Collective*;  // (TORCH_ARG spells its type textually)

struct Learner {
  std::string name;  // checkpoint key, and the key of its loss in Output::learner_losses
  std::shared_ptr<torch::nn::Module> module;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  Schedule schedule;       // learning rate at a step; empty = the optimiser's own
  double grad_clip = 0.0;  // parameter gradient-norm clip; 0 = off
  // Exponential moving average of the parameters (train.ema; 0 = off): after
  // each completed step, avg <- d avg + (1 - d) param with d = min(ema,
  // (1 + t) / (10 + t)) at step t (short runs are not stuck at the init).
  // Checkpointed; the model file takes the average (use_averages).
  double ema = 0.0;
  std::vector<torch::Tensor> averages;  // empty until the first step
};

// Copies each learner's moving average (when it keeps one) into its
// parameters: the weights a run with train.ema > 0 writes to model.pt.
void use_averages(std::vector<Learner>& learners);

struct TrainParts {
  Energy energy;                          // the model; learners[0] trains it
  std::vector<Learner> learners;          // learners[0].module is the energy
  std::shared_ptr<Objective> objective;
  Dataset data;                           // the training rows (and labels)
  // Class-incremental training (data.tasks > 1, data/tasks.h): each task's
  // rows of `data`, learned one after another over `total_steps` steps
  // (task_at_step); empty = all of `data` at every step.
  std::vector<Dataset> tasks;
  int64_t total_steps = 0;
  // Draws a batch of n rows of `from` (data, or the step's task); empty =
  // uniformly with replacement.
  std::function<Batch(const Dataset& from, int64_t n, at::Generator& gen)> draw;
  bool balanced = false;                  // batches draw the classes equally often (balanced_classes)
  at::Generator gen;                      // the step's stream: batches, sampler noise
  int64_t step = 0;                       // completed steps
  double lr_scale = 1.0;                  // shrunk by each divergence rollback
  int64_t retries = 0;                    // rollbacks so far
  // The metrics of the steps since the last metrics line, per name their sum
  // and count (in checkpoints too: a resumed run's next line averages the
  // same steps an uninterrupted run's does).
  std::map<std::string, std::pair<double, int64_t>> window;
  // train.keep_best: the energy's state (parameters and buffers) at the best
  // validation score so far, in checkpoints too; step -1 = none yet.
  struct Best {
    double score = std::numeric_limits<double>::infinity();
    double nll = std::numeric_limits<double>::infinity();  // the lowest validation NLL seen (JEM with p(x) by DSM)
    torch::Tensor nll_rows;  // that step's NLL of each validation row, for paired comparisons
    int64_t step = -1;
    std::vector<torch::Tensor> state;
  } best;
};

// The energy's parameters and buffers, in module order (copies).
std::vector<torch::Tensor> module_state(const torch::nn::Module& module);
void load_module_state(torch::nn::Module& module, const std::vector<torch::Tensor>& state);

struct StepOptions {
  explicit StepOptions(int64_t batch_size) : batch_size_(batch_size) {}
  TORCH_ARG(int64_t, batch_size);
  // |mean E(x+)| or |mean E(x-)| above this (when the objective reports them)
  // counts as divergence.
  TORCH_ARG(double, energy_limit) = std::numeric_limits<double>::infinity();
  // Divergence also when a weight of any learner is non-finite after the step.
  TORCH_ARG(bool, check_weights) = true;
  // Runs between the backward passes and the optimiser steps, where
  // data-parallel training all-reduces the gradients.
  TORCH_ARG(std::function<void(TrainParts&)>, after_backward) = nullptr;
  // Data-parallel training (train/distributed.h): the ranks agree on
  // divergence, the loss and metrics are their means, the gradients are
  // averaged after the hook, and rank 0's floating buffers (batch-norm
  // statistics) are copied to all after the optimiser steps. Not owned.
  TORCH_ARG(CollectivePtr, collective) = nullptr;
};

struct StepResult {
  Output output;
  double loss = 0.0;
  bool diverged = false;  // nothing was stepped (or a weight went non-finite)
};

// Uniform rows (with replacement) of data, labels following.
Batch draw_batch(const Dataset& data, int64_t n, at::Generator& gen);
// The same with every class equally often: each row drawn with weight
// 1 / (its class's count) (data.balance); `data` must have labels.
Batch draw_balanced_batch(const Dataset& data, int64_t n, at::Generator& gen);
// The rows the step after parts.step draws from: its task's, or all.
const Dataset& step_rows(const TrainParts& parts);

// One step: each learner's learning rate at parts.step (times lr_scale), a
// batch, the objective, each learner's gradient of its own loss, the hook,
// clipping and the optimiser steps; parts.step advances unless it diverged.
StepResult train_step(TrainParts& parts, const StepOptions& options);

// Every learner's module and optimiser, the objective's state, the stream,
// step, lr_scale and retries, as bytes and back (kBadData when the bytes are
// not a snapshot of parts of this shape).
std::string snapshot(const TrainParts& parts);
void restore(TrainParts& parts, const std::string& bytes);

}  // namespace ebm
