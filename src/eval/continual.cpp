// The continual evaluation task.
#include "ebm/eval/continual.h"

#include <filesystem>
#include <iomanip>
#include <sstream>

#include "ebm/core/error.h"
#include "ebm/data/tasks.h"
#include "ebm/model/inputs.h"
#include "ebm/train/continual.h"

namespace ebm {

std::vector<ConfigKey> continual_task_keys() {
  return {{"data", std::string(""),
           "labelled rows: fashion_mnist or mnist (test split; NAME:train for the other), a file with "
           "task.labels, or a folder of class sub-folders; empty = the test split of the model's own data set"},
          {"labels", std::string(""), "one integer label per row of task.data when it is a file"},
          {"tasks", int64_t(0), "K tasks the classes are cut into; 0 = the model's data.tasks"},
          {"model", std::string(""),
           "the model file's path: its run's snapshots model-task-k.pt beside it are scored too, after task k "
           "among the classes seen by then (the CLI sets it)"}};
}

EvalReport continual_task(const Config& c, EnergyImpl& energy, const ModelInfo& info) {
  EBM_CHECK_USAGE(energy.num_classes() > 0,
                  "continual: the model is not class-conditional (energy.conditional = true): it cannot classify");
  std::string spec = c.get_string("task.data");
  int64_t tasks = c.get_int("task.tasks");
  EBM_CHECK_USAGE(tasks >= 0, "--tasks must be >= 0, got ", tasks);
  std::vector<int64_t> keep;
  if (!info.data_toml.empty()) {
    const Config d = data_config(info.data_toml, "the model's [data] table");
    if (tasks == 0) tasks = d.get_int("data.tasks");
    keep = d.get_int_list("data.classes");
    if (spec.empty() && d.get_string("data.path").empty()) spec = d.get_string("data.name") + ":test";
  }
  EBM_CHECK_USAGE(!spec.empty(), "continual: give --data (the model file does not say what it was trained on)");
  EBM_CHECK_USAGE(tasks >= 1, "continual: give --tasks (the model file does not say how many tasks it learned)");
  Dataset data = read_model_dataset(spec, info, "test", c.get_string("task.labels"));
  EBM_CHECK_DATA(data.has_labels(), spec, ": no labels (give --labels)");
  if (!keep.empty()) {
    auto in = torch::zeros({data.size()}, torch::kBool);
    for (int64_t k : keep) in |= data.y == k;
    data = data.rows(in.nonzero().view({-1}));
  }
  const auto groups = task_classes(data.y, tasks);
  auto r = continual_accuracy(energy, data, groups);
  auto j = r.json();
  j["data"] = spec;
  j["tasks"] = tasks;
  std::string text = r.table();
  // The run's snapshots, when they lie beside the model: the accuracy on
  // every task after each task (the forgetting matrix).
  const std::string path = c.get_string("task.model");
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? std::string(".") : path.substr(0, slash);
  std::vector<ContinualReport> after;
  for (int64_t k = 1; k <= tasks; ++k) {
    const std::string snap = dir + "/model-task-" + std::to_string(k) + ".pt";
    if (path.empty() || !std::filesystem::exists(snap)) break;
    ModelInfo sinfo;
    Energy e = load_model(snap, &sinfo);
    EBM_CHECK_DATA(sinfo.event_shape == info.event_shape && e->num_classes() == energy.num_classes(), snap,
                   ": a snapshot of another model than ", path);
    after.push_back(continual_accuracy(*e, data, groups, k));
  }
  if (!after.empty()) {
    nlohmann::json rows = nlohmann::json::array();
    std::ostringstream t;
    t << std::fixed << std::setprecision(3) << "accuracy on each task (columns) after each task (rows), among the "
      << "classes seen by then:\n";
    for (size_t k = 0; k < after.size(); ++k) {
      rows.push_back(after[k].json());
      t << "after " << std::setw(2) << k + 1 << ":";
      for (double a : after[k].accuracy) t << "  " << a;
      t << "   average " << after[k].average << "\n";
    }
    j["after_task"] = rows;
    text = t.str() + text;
  }
  return {j, text};
}

}  // namespace ebm
