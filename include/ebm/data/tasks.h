// Class-incremental tasks (data.tasks = K > 1): split-MNIST and its kin
// (Zenke et al. 2017; the class-incremental scenario of van de Ven & Tolias
// 2019). The distinct labels of the training rows, sorted, are cut into K
// consecutive groups of equal size (MNIST, K = 5: {0,1}, {2,3}, ..., {8,9});
// training sees only task k's rows during its share of the steps, tasks in
// order, and a classifier is then asked to tell all the classes apart.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "ebm/data/data.h"

namespace ebm {

// The K groups of classes of the labels `y` [N]. kBadConfig when K < 1, or
// when the distinct labels do not split into K groups of equal size; kBadData
// when `y` is undefined (continual learning needs labels).
std::vector<std::vector<int64_t>> task_classes(const torch::Tensor& y, int64_t tasks);

// The rows of `data` whose labels are among `classes`.
Dataset task_rows(const Dataset& data, const std::vector<int64_t>& classes);

// Task k is learned in steps [k * steps / K, (k + 1) * steps / K) (0-based,
// integer division): the task of the step that follows `completed` steps.
int64_t task_at_step(int64_t completed, int64_t steps, int64_t tasks);
// The number of completed steps at which task k ends.
int64_t task_end(int64_t k, int64_t steps, int64_t tasks);

}  // namespace ebm
