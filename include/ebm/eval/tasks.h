// Evaluation tasks of `ebm eval --task NAME`: each registers its name, doc and
// keys (the command's options: --data, --n, --tol, ...) and a factory that
// evaluates a model and returns its JSON report and a human summary.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>

#include "ebm/core/registry.h"
#include "ebm/data/data.h"
#include "ebm/energy/energy.h"
#include "ebm/model/model.h"

namespace ebm {

struct EvalReport {
  nlohmann::json json;  // written by --out
  std::string text;     // printed
};

// Keys live in the [task] section: task.name selects, task.<key> configures.
// A task evaluates the model (its energy and what its file says beside it).
using EvalTaskRegistry = ComponentRegistry<EvalReport, EnergyImpl&, const ModelInfo&>;
const EvalTaskRegistry& eval_task_registry();

// The labelled rows of a classifier task (task.data, task.labels: the keys
// below): a built-in set, a file with labels or a folder of class folders,
// by default the test split of the model's own built-in set; only the
// classes the model was trained on (its data.classes) are kept. kUsage
// naming `task` when nothing says what to read; kBadData without labels.
std::vector<ConfigKey> labelled_data_keys();
// The class indices a model trained on (its data.classes, in its own
// numbering); empty when it trained on every class of its data.
std::vector<int64_t> model_trained_classes(const ModelInfo& info);
// Rows of `y` [N] outside `classes` (empty: none), for the note a score
// over the model's classes only owes its reader.
int64_t rows_outside_classes(const torch::Tensor& y, const std::vector<int64_t>& classes);
// `rebuilt`, when given, receives the run's split if it was rebuilt for the
// default (held-out) rows, so a caller needing its training rows too does
// not read the data again.
Dataset labelled_task_data(const Config& c, const ModelInfo& info, const std::string& task, std::string* spec,
                           std::optional<DataSplit>* rebuilt = nullptr);
std::shared_ptr<const Schema> eval_task_schema();

// The energy a task evaluates: an analytic target spec, else a TorchScript
// file (`dim` for either when > 0), else a model file; `info` says what the
// file says beside the weights (a target's or script's event shape only).
Energy eval_energy(const std::string& model, const std::string& target, const std::string& script, int64_t dim,
                   ModelInfo& info);
// Tasks that read the model file's path themselves (task.model).
bool task_reads_model_path(const std::string& task);

// `generator` (src/eval/generator.cpp): a learned sampler's draws scored
// under the closed-form density of 8gaussians or 25gaussians.
std::vector<ConfigKey> generator_task_keys();
EvalReport generator_task(const Config& c, EnergyImpl& energy, const ModelInfo& info);

// `ais` (src/eval/ais_task.cpp): log Z by annealed importance sampling
// (eval/partition.h), its reverse, and the test log-likelihood.
std::vector<ConfigKey> ais_task_keys();
EvalReport ais_task(const Config& c, EnergyImpl& energy, const ModelInfo& info);

}  // namespace ebm
