// The measure of class-incremental learning (data.tasks > 1; the task_end
// lines of a run's metrics.jsonl and `ebm eval --task continual`): the model classifies by
// argmin_y E(x, y) over all its classes, and each task's accuracy is taken on
// the rows of that task's classes (data/tasks.h). The average over tasks is
// split-MNIST's headline number (van de Ven & Tolias 2019); a classifier that
// forgot every earlier task scores about 1 / K of it.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "ebm/data/data.h"
#include "ebm/energy/energy.h"

namespace ebm {

struct ContinualReport {
  std::vector<std::vector<int64_t>> classes;  // per task
  int64_t seen = 0;                           // tasks learned: the classes predicted among
  std::vector<int64_t> n;                     // rows per task
  std::vector<double> accuracy;               // per task
  double average = 0;                         // mean of accuracy over the seen tasks
  double overall = 0;                         // over the seen tasks' rows
  nlohmann::json json() const;
  // (classes by their names where `names` has them: a model's class_names)
  std::string table(const std::vector<std::string>& names = {}) const;
};

// Accuracy per task on the labelled rows `data` (the model's units) of a
// class-conditional `energy` (kUsage otherwise) after the first `seen` tasks
// (0 = all): each row is classified by the lowest energy among the classes
// of those tasks (a task not yet seen scores 0), in batches of `batch` (eval
// mode, no graph). Rows whose class is in no task are ignored; a task with no
// rows is kBadData.
ContinualReport continual_accuracy(EnergyImpl& energy, const Dataset& data,
                                   const std::vector<std::vector<int64_t>>& classes, int64_t seen = 0,
                                   int64_t batch = 512);

}  // namespace ebm
