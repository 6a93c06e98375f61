// Training runs (DESIGN.md "Data flow of a training run"): a Config is built
// into data, energy, objective and learners (build_parts); the Trainer loops
// over train_step, logs metrics.jsonl, writes checkpoints atomically, resumes
// bit-exactly, and guards every learner against divergence by rolling back
// with a smaller learning rate.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "ebm/core/config.h"
#include "ebm/core/rng.h"
#include "ebm/data/data.h"
#include "ebm/energy/grid2d.h"
#include "ebm/model/model.h"
#include "ebm/train/optim.h"
#include "ebm/train/step.h"

namespace ebm {

// Every section and component key a training config may hold.
std::shared_ptr<const Schema> train_schema();
Config make_train_config();

// The random stream of a run for one purpose (kStreamTrain, ...) and one
// data-parallel rank, a generator of `device`; rank 0 is the stream of a
// single-process run.
at::Generator run_generator(const Config& cfg, Stream purpose, int64_t rank = 0,
                            c10::Device device = c10::kCPU);

// The data of a run: data.path when set, else the set data.name; split into
// train and test by data.test_fraction (seeded, the kStreamData stream), with
// the change of units data.standardize asks for (fitted on the train rows).
DataSplit build_data(const Config& cfg);
// The train/test split of the run that wrote a model, rebuilt from its
// [data] table and seed (as build_data made it: the user's units, images in
// the model's range); none, with `why`, when the model lacks them (older
// files) or its data cannot be read from here. `model` names it in `why`.
std::optional<DataSplit> model_data_split(const ModelInfo& info, const std::string& model, std::string* why);

// A learner for `module` from the [train] section: train.optimizer at
// train.lr, train.schedule over train.steps, train.grad_clip.
Learner make_learner(const Config& cfg, std::string name, std::shared_ptr<torch::nn::Module> module);

// The parts of a run on `device`: the energy for train's event shape
// (weights from the kStreamInit stream), the objective (fitted to the data:
// Objective::fit_data), the energy's learner and the training stream; train
// in the model's units (DataSplit::model_train). The config must have been
// validated.
// Images read as pixels (`pixels`) draw their batches with fresh
// dequantization noise when data.dequantize = uniform; data.flip mirrors
// half of every image batch. data.tasks > 1 cuts the labelled rows into
// tasks learned in order (data/tasks.h).
// An energy with energy.base = "classes" or "gaussian" gets it fitted to the
// training rows (and labels) here.
TrainParts build_parts(const Config& cfg, const Dataset& train, c10::Device device = c10::kCPU,
                       const std::optional<PixelMap>& pixels = std::nullopt);
// energy.base = "auto" resolved in the config (what model.pt and config.toml
// keep): "classes" for a class-conditional MLP on vectors of up to 1,024
// values whose log p(x) is trained by denoising score matching (objective.px
// of jem, or objective.name = dsm), "gaussian" there for class-incremental
// runs (data.tasks > 1), either with energy.prior_std = 0 (the base bounds
// E); "none" otherwise.
void resolve_energy_base(Config& cfg, const std::vector<int64_t>& event_shape);
// buffer.capacity left at its default is cut to the chains that fit in
// kBufferBytes (the buffer is in memory and in every checkpoint), at least
// train.batch_size; a capacity the user set over it is noted.
constexpr int64_t kBufferBytes = int64_t(512) << 20;
void resolve_buffer_capacity(Config& cfg, const std::vector<int64_t>& event_shape);
// data.dequantize = gaussian: vector rows (not pixels) get fresh Gaussian
// noise in every training batch; its std per column [D] in data's units
// (data.dequantize_std x the column's sd); undefined when it does not apply.
torch::Tensor vector_jitter(const Config& cfg, const Dataset& data, bool pixels);
// Whether batches draw the labelled classes equally often (data.balance:
// on; auto for conditional energies that are no classifier, when the
// classes' rows differ twice or more); notes it unless quiet. A classifier
// trained so has p(y | x) for equal class shares: its validation (keep_best,
// calibrate) and a JEM class base weigh the classes equally too.
bool balanced_classes(const Config& cfg, const Dataset& data, bool quiet = false);
// Row weights [N] (float64, CPU) under which every class present in labels
// y [N] weighs alike and all rows sum to N: n / (K n_y); undefined when not
// balanced or without labels (then rows weigh 1).
torch::Tensor class_weights(const torch::Tensor& y, bool balanced);
// The batch drawer of those augmentations; empty when none applies.
std::function<Batch(const Dataset&, int64_t, at::Generator&)> augmented_draw(const Config& cfg, const Dataset& data,
                                                              const std::optional<PixelMap>& pixels);

class Collective;

class Trainer {
 public:
  // Validates the config and builds everything (throws kBadConfig / kBadData).
  Trainer(Config cfg, std::string out_dir, c10::Device device = c10::kCPU);
  // Runs to train.steps; continues from checkpoint.pt when resume is true.
  // Returns the number of divergence rollbacks. Throws kInternal after
  // train.max_retries rollbacks.
  int64_t run(bool resume);
  // Called after every completed step (and its checkpoint, if due) with the
  // step's metrics and its loss ("loss"); return true to stop the run there,
  // as an interruption would. In a data-parallel run every rank must set one
  // (the ranks stop together when any asks).
  using StepCallback = std::function<bool(int64_t step, const std::map<std::string, double>& metrics)>;
  void on_step(StepCallback callback) { callback_ = std::move(callback); }
  // The trained energy, in the model's units.
  EnergyImpl& energy() { return *parts_.energy; }
  // The same in the data's units (a StandardizedEnergyImpl when the data were
  // standardised): what model.pt holds and the run report evaluates.
  Energy user_energy();
  TrainParts& parts() { return parts_; }
  // Makes this process one rank of a data-parallel run (before run): its own
  // training stream and data shard (rows rank, rank + world, ...), rank 0's
  // weights; train steps through the collective; rank 0 alone writes the run
  // directory, and checkpoints hold every rank's state (resume needs the same
  // world size).
  void distribute(std::shared_ptr<Collective> collective);
  bool lead() const;  // rank 0, or a single-process run
  const DataSplit& data() const { return data_; }
  const Config& config() const { return cfg_; }
  int64_t step() const { return parts_.step; }
  // train.keep_best: the step whose weights model.pt took (-1: the last) and
  // their validation score: the NLL, or for JEM with p(x) by score matching
  // the held-out objective (best_criterion names it).
  int64_t best_step() const { return parts_.best.step; }
  double best_score() const { return parts_.best.score; }
  std::string best_criterion() const;
  // train.calibrate: p(y | x)'s temperature fitted on the validation rows at
  // the end of the run (model.pt keeps it), with the rows' NLL before and
  // after it; T unset when none was fitted.
  struct Calibrated {
    std::optional<double> t;
    int64_t rows = 0;
    double nll = 0, nll_scaled = 0;
  };
  const Calibrated& calibrated() const { return calibrated_; }

 private:
  // Fits calibrated_ (train.calibrate) and logs it to `metrics`.
  void calibrate(std::ostream& metrics);
  void save_checkpoint(const std::string& path);
  // samples/step-NNNNNN.png (fresh chains) and -buffer.png (image CD runs).
  void write_sample_grids(int64_t step);
  void default_pixel_box();  // pixel data: init and clamp boxes default to data.scale
  void note_image_range();  // sets grid_map_; notes a chains' box that misses the images' range
  void load_checkpoint(const std::string& path);
  // Class-incremental runs: model-task-(k+1).pt and a task_end line in
  // metrics.jsonl with every task's held-out accuracy (conditional energies).
  void end_task(int64_t k, std::ostream& metrics);
  // On the validation rows: the mean NLL of p(y | x) and the accuracy
  // (classifiers), or the exact mean NLL in the data's units (2D models;
  // accuracy NaN).
  struct Validation {
    double nll, accuracy, nll_se;  // nll_se: the NLL's standard error (classifiers; else NaN)
    torch::Tensor rows = {};       // classifiers: each validation row's NLL [N] (float64, CPU)
  };
  Validation validate();
  // The objective's held-out part on the validation rows (JEM with p(x) by
  // score matching: px_weight x the denoising loss), at fixed noise; NaN
  // when the objective has none (Objective::scores_held_out).
  double validate_px();
  bool validates_px() const;  // validate_px applies
  // Both on the validation rows at `step` (val_nll, val_accuracy, val_px,
  // val_objective, for the metrics line); with keep_best, the weights become
  // the best so far when they score best.
  std::map<std::string, double> validate_step(int64_t step, bool keep_best);

  Config cfg_;
  std::string out_;
  c10::Device device_;
  DataSplit data_;
  PixelMap grid_map_;  // the range sample grids span: the pixel map's, or float images' own
  enum class ValKind { kNone, kClasses, kDensity2d };
  ValKind val_kind_ = ValKind::kNone;
  Dataset val_;  // validation rows in the model's units
  Box2d val_box_{};  // kDensity2d: the quadrature's box (model units)
  double val_log_jacobian_ = 0.0;
  TrainParts parts_;
  StepCallback callback_;
  std::shared_ptr<Collective> coll_;
  Calibrated calibrated_;
};

}  // namespace ebm
