// Per-class recall and precision, and the balanced accuracy.
#include "ebm/eval/per_class.h"

#include <algorithm>
#include <iomanip>
#include <numeric>
#include <sstream>

#include "ebm/core/error.h"

namespace ebm {

PerClass per_class(const torch::Tensor& probs, const torch::Tensor& labels, const std::vector<std::string>& names) {
  EBM_CHECK_DATA(probs.dim() == 2 && probs.size(0) >= 1, "per-class figures: no rows to score");
  const int64_t k = probs.size(1);
  auto pred = probs.detach().to(torch::kCPU).argmax(1).contiguous();
  auto y = labels.to(torch::kCPU, torch::kLong).reshape({-1}).contiguous();
  EBM_CHECK_DATA(y.numel() == pred.numel(), "per-class figures: ", y.numel(), " labels for ", pred.numel(), " rows");
  std::vector<int64_t> rows(size_t(k), 0), predicted(size_t(k), 0), hit(size_t(k), 0);
  const int64_t* pp = pred.data_ptr<int64_t>();
  const int64_t* yp = y.data_ptr<int64_t>();
  for (int64_t i = 0; i < y.numel(); ++i) {
    EBM_CHECK_DATA(yp[i] >= 0 && yp[i] < k, "per-class figures: label ", yp[i], " outside 0 to ", k - 1);
    ++rows[size_t(yp[i])];
    ++predicted[size_t(pp[i])];
    if (pp[i] == yp[i]) ++hit[size_t(yp[i])];
  }
  auto name = [&](int64_t c) { return int64_t(names.size()) == k ? names[size_t(c)] : std::to_string(c); };
  PerClass r;
  nlohmann::json list = nlohmann::json::array();
  double sum = 0;
  int64_t with_rows = 0;
  std::vector<int64_t> order;  // classes with rows, lowest recall first
  for (int64_t c = 0; c < k; ++c) {
    const size_t i = size_t(c);
    nlohmann::json e = {{"class", c}, {"name", name(c)}, {"rows", rows[i]}, {"predicted", predicted[i]}};
    e["recall"] = rows[i] ? nlohmann::json(double(hit[i]) / double(rows[i])) : nlohmann::json(nullptr);
    e["precision"] = predicted[i] ? nlohmann::json(double(hit[i]) / double(predicted[i])) : nlohmann::json(nullptr);
    list.push_back(e);
    if (rows[i]) {
      sum += double(hit[i]) / double(rows[i]);
      ++with_rows;
      order.push_back(c);
    }
  }
  r.balanced_accuracy = sum / double(std::max<int64_t>(with_rows, 1));
  r.json = {{"balanced_accuracy", r.balanced_accuracy}, {"per_class", list}};
  auto recall = [&](int64_t c) { return double(hit[size_t(c)]) / double(rows[size_t(c)]); };
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return recall(a) < recall(b); });
  std::ostringstream t;
  t << std::fixed << std::setprecision(4) << "balanced accuracy " << r.balanced_accuracy << " (mean recall over the "
    << with_rows << " classes with rows)\n";
  const bool table = k <= 20;
  std::vector<int64_t> shown;
  if (table) {
    shown.resize(size_t(k));
    std::iota(shown.begin(), shown.end(), 0);
  } else {
    shown.assign(order.begin(), order.begin() + std::min<size_t>(5, order.size()));
  }
  size_t width = 5;
  for (int64_t c : shown) width = std::max(width, name(c).size());
  if (!table) t << "  the " << shown.size() << " lowest recalls of " << k << " classes:\n";
  t << "  " << std::left << std::setw(int(width)) << "class" << std::right << "  rows  predicted  recall  precision\n";
  for (int64_t c : shown) {
    const size_t i = size_t(c);
    t << "  " << std::left << std::setw(int(width)) << name(c) << std::right << std::setw(6) << rows[i]
      << std::setw(11) << predicted[i];
    if (rows[i]) t << std::setw(8) << recall(c); else t << std::setw(8) << "-";
    if (predicted[i]) t << std::setw(11) << double(hit[i]) / double(predicted[i]); else t << std::setw(11) << "-";
    t << "\n";
  }
  r.text = t.str();
  return r;
}

}  // namespace ebm
