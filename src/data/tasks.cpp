// Class-incremental task splits.
#include "ebm/data/tasks.h"

#include <algorithm>

#include "ebm/core/error.h"

namespace ebm {

std::vector<std::vector<int64_t>> task_classes(const torch::Tensor& y, int64_t tasks) {
  EBM_CHECK_CONFIG(tasks >= 1, "data.tasks must be >= 1, got ", tasks);
  EBM_CHECK_DATA(y.defined(), "data.tasks = ", tasks, ": continual learning needs labelled data");
  auto u = std::get<0>(at::_unique(y.to(torch::kLong).cpu(), /*sorted=*/true)).contiguous();
  const int64_t c = u.numel();
  EBM_CHECK_CONFIG(c >= tasks && c % tasks == 0, "data.tasks = ", tasks, ": the data have ", c,
                   " classes, which do not split into ", tasks, " tasks of equal size");
  std::vector<int64_t> all(u.data_ptr<int64_t>(), u.data_ptr<int64_t>() + c);
  std::sort(all.begin(), all.end());
  std::vector<std::vector<int64_t>> out;
  const int64_t per = c / tasks;
  for (int64_t k = 0; k < tasks; ++k) out.emplace_back(all.begin() + k * per, all.begin() + (k + 1) * per);
  return out;
}

Dataset task_rows(const Dataset& data, const std::vector<int64_t>& classes) {
  TORCH_CHECK(data.y.defined(), "task_rows: the data have no labels");
  auto keep = torch::zeros({data.size()}, torch::kBool);
  auto y = data.y.to(torch::kLong).cpu();
  for (int64_t c : classes) keep |= y == c;
  return data.rows(keep.nonzero().view({-1}).to(data.x.device()));
}

int64_t task_end(int64_t k, int64_t steps, int64_t tasks) { return (k + 1) * steps / tasks; }

int64_t task_at_step(int64_t completed, int64_t steps, int64_t tasks) {
  int64_t k = 0;
  while (k + 1 < tasks && completed >= task_end(k, steps, tasks)) ++k;
  return k;
}

}  // namespace ebm
