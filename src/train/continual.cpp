// Per-task accuracy of a class-conditional energy after class-incremental
// training.
#include "ebm/train/continual.h"

#include <iomanip>
#include <limits>
#include <sstream>

#include "ebm/core/error.h"

namespace ebm {

nlohmann::json ContinualReport::json() const {
  // (tasks not yet learned have no accuracy: null, not 0, which a reader of
  // the forgetting matrix would take for one)
  nlohmann::json acc = nlohmann::json::array();
  for (size_t t = 0; t < accuracy.size(); ++t) acc.push_back(int64_t(t) < seen ? nlohmann::json(accuracy[t]) : nullptr);
  return {{"classes", classes},          {"n", n},
          {"tasks_seen", seen},          {"accuracy", acc},
          {"average_accuracy", average}, {"overall_accuracy", overall}};
}

std::string ContinualReport::table(const std::vector<std::string>& names) const {
  std::ostringstream s;
  s << std::fixed << std::setprecision(4);
  s << "task  classes       n      accuracy\n";
  for (size_t k = 0; k < accuracy.size(); ++k) {
    std::ostringstream c;
    for (size_t i = 0; i < classes[k].size(); ++i) {
      const int64_t y = classes[k][i];
      c << (i ? "," : "");
      if (y >= 0 && y < int64_t(names.size())) c << names[size_t(y)];
      else c << y;
    }
    s << std::setw(4) << k + 1 << "  " << std::left << std::setw(12) << c.str() << std::right << std::setw(7)
      << n[k] << "  ";
    if (int64_t(k) < seen) s << accuracy[k] << "\n";
    else s << "     -   (not yet learned)\n";
  }
  s << "after " << seen << " of " << accuracy.size() << " tasks: average over them " << average << ", over their rows "
    << overall << "\n";
  return s.str();
}

ContinualReport continual_accuracy(EnergyImpl& energy, const Dataset& data,
                                   const std::vector<std::vector<int64_t>>& classes, int64_t seen, int64_t batch) {
  EBM_CHECK_USAGE(energy.num_classes() > 0,
                  "continual: the model is not class-conditional (energy.conditional = true): it cannot classify");
  EBM_CHECK_DATA(data.has_labels(), data.description, ": continual evaluation needs labelled rows");
  TORCH_CHECK(batch >= 1, "continual_accuracy: batch must be >= 1");
  const int64_t k = energy.num_classes(), n_tasks = int64_t(classes.size());
  TORCH_CHECK(seen >= 0 && seen <= n_tasks, "continual_accuracy: seen must be in 0 ..", n_tasks, ", got ", seen);
  if (seen == 0) seen = n_tasks;
  // (classes of unseen tasks never win)
  auto barred = torch::ones({k}, torch::kBool);
  for (int64_t t = 0; t < seen; ++t)
    for (int64_t c : classes[size_t(t)]) {
      EBM_CHECK_DATA(c >= 0 && c < k, data.description, ": class ", c, " outside the model's ", k, " classes");
      barred[c] = false;
    }
  std::vector<torch::Tensor> preds;
  {
    torch::NoGradGuard no_grad;
    const bool was_training = energy.is_training();
    energy.eval();
    const auto device = energy.parameters().empty() ? c10::Device(c10::kCPU) : energy.parameters()[0].device();
    for (int64_t i = 0; i < data.size(); i += batch) {
      auto x = data.x.narrow(0, i, std::min(batch, data.size() - i)).to(device);
      auto e = energy.class_energies(x).cpu();
      preds.push_back(e.masked_fill(barred.unsqueeze(0), std::numeric_limits<float>::infinity()).argmin(1));
    }
    energy.train(was_training);
  }
  auto pred = torch::cat(preds), y = data.y.to(torch::kLong).cpu();
  EBM_CHECK_DATA(y.max().item<int64_t>() < k, data.description, ": label ", y.max().item<int64_t>(),
                 " outside the model's ", k, " classes");
  ContinualReport r;
  r.classes = classes;
  r.seen = seen;
  int64_t right_all = 0, n_all = 0;
  for (int64_t t = 0; t < n_tasks; ++t) {
    const auto& group = classes[size_t(t)];
    auto in = torch::zeros_like(y, torch::kBool);
    for (int64_t c : group) in |= y == c;
    const int64_t n = in.sum().item<int64_t>();
    EBM_CHECK_DATA(n > 0, data.description, ": no rows of task classes ", c10::IntArrayRef(group));
    const int64_t right = (pred.masked_select(in) == y.masked_select(in)).sum().item<int64_t>();
    r.n.push_back(n);
    r.accuracy.push_back(double(right) / double(n));
    if (t >= seen) continue;
    r.average += r.accuracy.back() / double(seen);
    right_all += right;
    n_all += n;
  }
  r.overall = double(right_all) / double(n_all);
  return r;
}

}  // namespace ebm
