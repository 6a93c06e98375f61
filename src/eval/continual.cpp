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
  auto keys = labelled_data_keys();
  keys.push_back({"tasks", int64_t(0), "K tasks the classes are cut into; 0 = the model's data.tasks"});
  keys.push_back({"model", std::string(""),
                  "the model file's path: its run's snapshots model-task-k.pt beside it are scored too, after task k "
                  "among the classes seen by then (the CLI sets it)"});
  return keys;
}

EvalReport continual_task(const Config& c, EnergyImpl& energy, const ModelInfo& info) {
  EBM_CHECK_USAGE(energy.num_classes() > 0,
                  "continual: the model is not class-conditional (energy.conditional = true): it cannot classify");
  int64_t tasks = c.get_int("task.tasks");
  EBM_CHECK_USAGE(tasks >= 0, "--tasks must be >= 0, got ", tasks);
  if (tasks == 0 && !info.data_toml.empty())
    tasks = data_config(info.data_toml, "the model's [data] table").get_int("data.tasks");
  std::string spec;
  Dataset data = labelled_task_data(c, info, "continual", &spec);
  EBM_CHECK_USAGE(tasks >= 1, "continual: give --tasks (the model file does not say how many tasks it learned)");
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
