// The continual evaluation task.
#include "ebm/eval/continual.h"

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
          {"tasks", int64_t(0), "K tasks the classes are cut into; 0 = the model's data.tasks"}};
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
  auto r = continual_accuracy(energy, data, task_classes(data.y, tasks));
  auto j = r.json();
  j["data"] = spec;
  j["tasks"] = tasks;
  return {j, r.table()};
}

}  // namespace ebm
