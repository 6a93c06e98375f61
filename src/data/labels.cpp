// Class labels from files: indices, or values (data/labels.h).
#include "ebm/data/labels.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "ebm/core/error.h"

namespace ebm {
namespace {

// y as int64 [N], every value an integer (kBadData naming path otherwise).
torch::Tensor integer_labels(const torch::Tensor& y, const std::string& path) {
  const auto d = y.reshape({-1}).to(torch::kDouble);
  if (d.numel() == 0) return torch::empty({0}, torch::kLong);
  EBM_CHECK_DATA(torch::isfinite(d).all().item<bool>(), path, ": labels must be finite integers");
  const auto off = (d != d.round()).nonzero();
  if (off.numel() > 0) {
    const int64_t i = off[0][0].item<int64_t>();
    fail(ExitCode::kBadData, path, ": labels must be integers, got ", d[i].item<double>(), " at row ", i,
         " (0-based)");
  }
  EBM_CHECK_DATA(d.abs().max().item<double>() < 1e15, path, ": labels must be integers below 1e15 in size");
  return d.to(torch::kLong);
}

bool integer_text(const std::string& s, int64_t* value) {
  if (s.empty()) return false;
  size_t used = 0;
  try {
    *value = std::stoll(s, &used);
  } catch (const std::exception&) {
    return false;
  }
  return used == s.size() && std::to_string(*value) == s;
}

}  // namespace

FileLabels training_labels(const torch::Tensor& y, const std::string& path) {
  FileLabels out;
  const auto v = integer_labels(y, path);
  if (v.numel() == 0 || v.min().item<int64_t>() >= 0) {
    out.index = v;
    return out;
  }
  const auto uniq = std::get<0>(torch::_unique(v, /*sorted=*/true));
  out.index = torch::searchsorted(uniq, v);
  const auto* p = uniq.data_ptr<int64_t>();
  for (int64_t k = 0; k < uniq.numel(); ++k) out.names.push_back(std::to_string(p[k]));
  return out;
}

bool named_by_value(const std::vector<std::string>& names) {
  bool identity = true;
  for (size_t k = 0; k < names.size(); ++k) {
    int64_t v = 0;
    if (!integer_text(names[k], &v)) return false;
    identity = identity && v == int64_t(k);
  }
  return !names.empty() && !identity;
}

torch::Tensor labels_as_trained(const torch::Tensor& y, const std::vector<std::string>& names, int64_t k,
                                const std::string& path) {
  const auto v = integer_labels(y, path);
  if (v.numel() == 0) return v;
  if (!named_by_value(names)) {
    const int64_t lo = v.min().item<int64_t>(), hi = v.max().item<int64_t>();
    EBM_CHECK_DATA(lo >= 0, path, ": label ", lo, " is negative; the model's labels are class indices 0 to ",
                   k > 0 ? std::to_string(k - 1) : std::string("K-1"));
    EBM_CHECK_DATA(k <= 0 || hi < k, path, ": label ", hi, " outside the model's classes 0 to ", k - 1);
    return v;
  }
  std::map<int64_t, int64_t> index_of;  // value -> class
  std::string list;
  for (size_t i = 0; i < names.size(); ++i) {
    int64_t value = 0;
    integer_text(names[i], &value);
    index_of[value] = int64_t(i);
    list += (i ? ", " : "") + names[i];
  }
  auto out = torch::empty_like(v);
  const auto* in = v.data_ptr<int64_t>();
  auto* o = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < v.numel(); ++i) {
    const auto it = index_of.find(in[i]);
    if (it == index_of.end())
      fail(ExitCode::kBadData, path, ": label ", in[i], " at row ", i, " is not one of the model's labels (", list,
           ")");
    o[i] = it->second;
  }
  return out;
}

int64_t class_by_value(const std::string& text, const std::vector<std::string>& names) {
  if (!named_by_value(names)) return -1;
  const auto it = std::find(names.begin(), names.end(), text);
  return it == names.end() ? -1 : int64_t(it - names.begin());
}

}  // namespace ebm
