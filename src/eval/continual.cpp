// The continual evaluation task.
#include "ebm/eval/continual.h"

#include <filesystem>
#include <iomanip>
#include <sstream>

#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/data/tasks.h"
#include "ebm/eval/tasks.h"
#include "ebm/model/inputs.h"
#include "ebm/train/train.h"
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
  const int64_t run_tasks =
      info.data_toml.empty() ? 0 : data_config(info.data_toml, "the model's [data] table").get_int("data.tasks");
  if (tasks == 0) tasks = run_tasks;
  std::string spec;
  std::optional<DataSplit> split;
  Dataset data = labelled_task_data(c, info, "continual", &spec, &split);
  EBM_CHECK_USAGE(tasks >= 1, "continual: give --tasks (the model file does not say how many tasks it learned)");
  // The tasks are cut from the model's classes (its data.classes, else all
  // it has), as its run cut them, not from the classes --data happens to
  // hold: test rows of three of six classes were re-cut into one-class
  // tasks and scored 0.994 against tasks the model never had.
  // (its training rows' classes, the run's data rebuilt; where that cannot
  // be, the classes of --data, with a note)
  std::vector<int64_t> trained = model_trained_classes(info);
  if (trained.empty()) {
    std::string why;
    if (!split) split = model_data_split(info, "the model", &why);
    torch::Tensor y = split && split->train.has_labels() ? split->train.y : data.y;
    if (!split)
      notes() << "ebm eval: note: the tasks are cut from the classes of " << spec << " (" << why
              << "): test rows lacking some of the model's classes make other tasks than its run's\n";
    const auto u = std::get<0>(at::_unique(y.to(torch::kCPU, torch::kLong)));
    trained.assign(u.data_ptr<int64_t>(), u.data_ptr<int64_t>() + u.numel());
  }
  const int64_t n_classes = int64_t(trained.size());
  EBM_CHECK_USAGE(n_classes >= tasks && n_classes % tasks == 0, "continual: ", tasks,
                  " tasks do not split the model's ", n_classes, " classes into tasks of equal size");
  const auto groups = task_classes(torch::tensor(trained, torch::kLong), tasks);
  // (a snapshot, model-task-K.pt, has learned the first K tasks alone: the
  // others are scored as not yet learned, and the run's matrix, of its
  // final model, is not this file's)
  const std::string path = c.get_string("task.model");
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? std::string(".") : path.substr(0, slash);
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  int64_t snapshot = 0;
  if (base.rfind("model-task-", 0) == 0 && base.size() > 14 && base.compare(base.size() - 3, 3, ".pt") == 0) {
    const std::string k = base.substr(11, base.size() - 14);
    if (!k.empty() && k.find_first_not_of("0123456789") == std::string::npos && k.size() < 10)
      snapshot = std::stoll(k);
  }
  const int64_t seen = snapshot >= 1 && snapshot <= tasks ? snapshot : 0;
  auto r = continual_accuracy(energy, data, groups, seen);
  auto j = r.json();
  j["data"] = spec;
  j["tasks"] = tasks;
  std::string text = r.table(info.class_names);
  if (seen > 0) return {j, text};
  // The run's snapshots, when they lie beside the model: the accuracy on
  // every task after each task (the forgetting matrix).
  std::vector<ContinualReport> after;
  // (the snapshots are of the run's own tasks: scored against another cut,
  // their rows contradicted the final model's)
  const bool own_cut = tasks == run_tasks;
  if (!own_cut && !path.empty() && std::filesystem::exists(dir + "/model-task-1.pt"))
    notes() << "ebm eval: note: the snapshots model-task-k.pt beside the model are of its run's " << run_tasks
            << " tasks, not scored against --tasks " << tasks << "\n";
  for (int64_t k = 1; own_cut && k <= tasks; ++k) {
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
      for (size_t i = 0; i < after[k].accuracy.size(); ++i)
        if (int64_t(i) < after[k].seen) t << "  " << after[k].accuracy[i];
        else t << "    -  ";
      t << "   average " << after[k].average << "\n";
    }
    j["after_task"] = rows;
    // Forgetting (Chaudhry et al. 2018): per earlier task, its best accuracy
    // after any task before the last less its accuracy at the end; backward
    // transfer (Lopez-Paz & Ranzato 2017): the mean of its accuracy at the
    // end less its accuracy just after it was learned.
    if (int64_t(after.size()) == tasks && tasks > 1) {
      const auto& last = after.back().accuracy;
      double forgetting = 0, bwt = 0;
      for (int64_t i = 0; i + 1 < tasks; ++i) {
        double best = 0;
        for (int64_t k = i; k + 1 < tasks; ++k) best = std::max(best, after[size_t(k)].accuracy[size_t(i)]);
        forgetting += (best - last[size_t(i)]) / double(tasks - 1);
        bwt += (last[size_t(i)] - after[size_t(i)].accuracy[size_t(i)]) / double(tasks - 1);
      }
      j["forgetting"] = forgetting;
      j["backward_transfer"] = bwt;
      t << "forgetting " << forgetting << " (mean over the first " << tasks - 1
        << " tasks of their best accuracy less their last), backward transfer " << bwt << "\n";
    }
    text = t.str() + text;
  }
  return {j, text};
}

}  // namespace ebm
