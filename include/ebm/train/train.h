// Training runs (DESIGN.md "Data flow of a training run"): a Config is built
// into dataset, energy, sampler, objective and optimizer; the Trainer loops,
// logs metrics.jsonl, writes checkpoints atomically, resumes bit-exactly, and
// guards against divergence by rolling back with a smaller learning rate.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "ebm/core/config.h"
#include "ebm/energy/energy.h"
#include "ebm/objectives/objective.h"
#include "ebm/sampling/sampling.h"

namespace ebm {

// torch::optim::Adam whose update of float32 CPU parameters is one fused pass
// per tensor instead of about ten ATen operations (their per-call overhead is
// most of Adam's cost on small layers). The state (step, exp_avg, exp_avg_sq)
// and its serialisation are Adam's own, so checkpoints move freely between the
// two; when any parameter, gradient or state is not float32, CPU and
// contiguous, or with amsgrad, the whole step is Adam's.
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

// module.load(archive), refusing (kBadData, naming `file`) weights whose
// shapes or dtypes differ from the module's: LibTorch's load would adopt them.
void load_weights(torch::nn::Module& module, torch::serialize::InputArchive& archive,
                  const std::string& file);

// Every key a training config may hold, with defaults and docs.
std::vector<ConfigKey> train_schema();
Config make_train_config();

// Builders from a resolved config.
Energy build_energy(const Config& cfg, int64_t in_dim);
std::shared_ptr<Sampler> build_sampler(const Config& cfg);
std::shared_ptr<ReplayBuffer> build_buffer(const Config& cfg, std::vector<int64_t> event_shape);
std::shared_ptr<Objective> build_objective(const Config& cfg, std::vector<int64_t> event_shape);

// The dataset of a run: data.path when set, else the toy set data.name;
// split into train and test by data.test_fraction (seeded).
struct RunData {
  torch::Tensor train, test;  // float32 [N, D]
  std::string description;
};
RunData build_data(const Config& cfg);

// model.pt: weights plus the [energy] section and input dimension that
// rebuild the energy. load_model throws kMissingInput / kBadData.
void save_model(const std::string& path, EnergyImpl& energy, const Config& cfg, int64_t in_dim);
Energy load_model(const std::string& path);

class Trainer {
 public:
  Trainer(Config cfg, std::string out_dir);
  // Runs to train.steps; continues from checkpoint.pt when resume is true.
  // Returns the number of divergence rollbacks. Throws kInternal after
  // train.max_retries rollbacks.
  int64_t run(bool resume);
  // Called after every completed step (and its checkpoint, if due); return
  // true to stop the run there, as an interruption would.
  using StepCallback = std::function<bool(int64_t step, const std::map<std::string, double>& metrics)>;
  void on_step(StepCallback callback) { callback_ = std::move(callback); }
  EnergyImpl& energy() { return *energy_; }
  const RunData& data() const { return data_; }
  int64_t step() const { return step_; }

 private:
  double lr_at(int64_t step) const;
  void save_checkpoint(const std::string& path);
  void load_checkpoint(const std::string& path);
  std::string snapshot() const;
  void restore(const std::string& bytes);
  void write_outputs();

  Config cfg_;
  std::string out_;
  RunData data_;
  Energy energy_;
  std::shared_ptr<Objective> objective_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  at::Generator gen_;
  int64_t step_ = 0;
  double lr_scale_ = 1.0;  // shrunk by each divergence rollback
  int64_t retries_ = 0;
  StepCallback callback_;
};

}  // namespace ebm
