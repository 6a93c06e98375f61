// `ebm eval --task continual`: per-task and average accuracy of a
// class-conditional model after class-incremental training
// (train/continual.h), on a labelled test set.
#pragma once

#include <vector>

#include "ebm/core/config.h"
#include "ebm/eval/tasks.h"
#include "ebm/model/model.h"

namespace ebm {

std::vector<ConfigKey> continual_task_keys();
EvalReport continual_task(const Config& c, EnergyImpl& energy, const ModelInfo& info);

}  // namespace ebm
