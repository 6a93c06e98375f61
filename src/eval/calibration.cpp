// Expected and maximum calibration error, NLL, and the reliability diagram.
#include "ebm/eval/calibration.h"
#include "ebm/model/cross_fit.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "ebm/core/error.h"
#include "ebm/data/labels.h"
#include "ebm/io/io.h"
#include "ebm/eval/images.h"
#include "ebm/eval/ood.h"
#include "ebm/eval/per_class.h"
#include "ebm/model/far_inputs.h"
#include "ebm/model/inputs.h"
#include "ebm/train/train.h"

namespace ebm {

nlohmann::json Calibration::json() const {
  return {{"n", n},       {"accuracy", accuracy},  {"nll", nll},
          {"ece", ece},   {"mce", mce},            {"mce_rows", mce_rows}, {"bins", int64_t(count.size())},
          {"count", count}, {"confidence", confidence}, {"bin_accuracy", bin_accuracy}};
}

Calibration calibration(const torch::Tensor& probs, const torch::Tensor& labels, int64_t bins) {
  TORCH_CHECK(bins >= 1, "calibration: bins must be >= 1");
  EBM_CHECK_DATA(probs.dim() == 2 && probs.size(0) >= 1, "calibration: no rows to score");
  auto p = probs.detach().to(torch::kCPU, torch::kDouble);
  auto y = labels.to(torch::kCPU, torch::kLong).reshape({-1});
  EBM_CHECK_DATA(y.numel() == p.size(0), "calibration: ", y.numel(), " labels for ", p.size(0), " rows");
  const int64_t k = p.size(1);
  EBM_CHECK_DATA(y.min().item<int64_t>() >= 0 && y.max().item<int64_t>() < k, "label ",
                 y.max().item<int64_t>(), " outside the model's ", k, " classes (0 .. ", k - 1, ")");
  auto [conf, pred] = p.max(1);
  auto right = (pred == y).to(torch::kDouble);
  Calibration c;
  c.n = p.size(0);
  c.accuracy = right.mean().item<double>();
  c.nll = std::max(0.0, -p.gather(1, y.unsqueeze(1)).clamp_min(1e-300).log().mean().item<double>());  // (p rounds to 1: never "-0.0000")
  // bin b holds (b/B, (b+1)/B]: ceil(conf B) - 1, 0 at conf = 0
  auto bin = (conf * double(bins)).ceil().sub(1).clamp(0, double(bins - 1)).to(torch::kLong);
  c.count.assign(size_t(bins), 0);
  c.confidence.assign(size_t(bins), 0.0);
  c.bin_accuracy.assign(size_t(bins), 0.0);
  const auto* b = bin.data_ptr<int64_t>();
  const auto* cf = conf.contiguous().data_ptr<double>();
  const auto* r = right.data_ptr<double>();
  for (int64_t i = 0; i < c.n; ++i) {
    ++c.count[size_t(b[i])];
    c.confidence[size_t(b[i])] += cf[i];
    c.bin_accuracy[size_t(b[i])] += r[i];
  }
  for (int64_t j = 0; j < bins; ++j) {
    const int64_t m = c.count[size_t(j)];
    if (m == 0) continue;
    c.confidence[size_t(j)] /= double(m);
    c.bin_accuracy[size_t(j)] /= double(m);
    const double gap = std::abs(c.bin_accuracy[size_t(j)] - c.confidence[size_t(j)]);
    c.ece += double(m) / double(c.n) * gap;
    if (gap > c.mce || c.mce_rows == 0) {
      c.mce = gap;
      c.mce_rows = m;
    }
  }
  return c;
}

Calibration cross_fitted_temperature(const torch::Tensor& probs, const torch::Tensor& labels, int64_t bins,
                                     std::pair<double, double>* temperatures) {
  const int64_t n = probs.size(0);
  TORCH_CHECK(n >= 4, "cross_fitted_temperature: needs 4 rows or more, got ", n);
  auto p = probs.detach().to(torch::kCPU, torch::kDouble);
  auto y = labels.to(torch::kCPU, torch::kLong).reshape({-1});
  return calibration(cross_fitted_scale(p, y, temperatures), y, bins);
}

void write_reliability_diagram(const std::string& path, const Calibration& c) {
  // (white canvas; per bin the diagonal's height in light grey, the accuracy
  // in black over it, a 1-pixel gap between bins; bins with no rows blank)
  const int64_t bins = int64_t(c.count.size()), w = 20, size = bins * w, margin = 4;
  auto img = torch::full({1, size + 2 * margin, size + 2 * margin}, 255, torch::kUInt8);
  auto a = img.accessor<uint8_t, 3>();
  for (int64_t j = 0; j < bins; ++j) {
    const int64_t x0 = margin + j * w;
    const int64_t ideal = int64_t(std::lround(double(size) * (double(j) + 0.5) / double(bins)));
    const int64_t got = c.count[size_t(j)] > 0 ? int64_t(std::lround(double(size) * c.bin_accuracy[size_t(j)])) : 0;
    for (int64_t x = x0; x < x0 + w - 1; ++x) {
      for (int64_t h = 0; h < ideal; ++h) a[0][margin + size - 1 - h][x] = 200;
      if (c.count[size_t(j)] == 0) continue;
      for (int64_t h = 0; h < got; ++h) a[0][margin + size - 1 - h][x] = 40;
    }
  }
  write_png(path, img.squeeze(0));  // ([H, W] grey)
}

std::vector<ConfigKey> calibration_task_keys() {
  auto keys = labelled_data_keys();
  keys.push_back({"bins", int64_t(15), "equal-width confidence bins"});
  keys.push_back({"plot", std::string(""), "write the reliability diagram here (PNG); empty = none"});
  return keys;
}

torch::Tensor gaussian_classifier_probabilities(const torch::Tensor& train_x, const torch::Tensor& train_y,
                                               const torch::Tensor& x, int64_t classes) {
  TORCH_CHECK(train_x.size(0) == train_y.numel() && train_x.size(0) >= 2, "gaussian_classifier: rows and labels");
  auto tx = train_x.detach().to(torch::kCPU, torch::kDouble).flatten(1);
  auto ty = train_y.to(torch::kCPU, torch::kLong).view({-1});
  auto counts = torch::bincount(ty, {}, classes).to(torch::kDouble);  // [K]
  auto onehot = torch::one_hot(ty, classes).to(torch::kDouble);        // [N, K]
  auto means = onehot.t().mm(tx) / counts.clamp_min(1).unsqueeze(1);   // [K, D]
  // (the shared covariance: the OOD baseline's fit of the within-class rows)
  const auto within = GaussianFit::fit(tx - onehot.mm(means), tx.size(0));
  auto w = torch::cholesky_solve(means.t().contiguous(), within.chol);  // P mu_k, [D, K]
  auto bias = -0.5 * (means * w.t()).sum(1) + counts.log();      // [K] (-inf for empty classes)
  auto logits = x.detach().to(torch::kCPU, torch::kDouble).flatten(1).mm(w) + bias;
  return torch::softmax(logits, 1);
}

namespace {
// The Gaussian classifier's scores on the task's rows, fitted to the run's
// training split (vectors only); null JSON when there is none.
nlohmann::json classifier_baseline(const ModelInfo& info, const Dataset& data, std::optional<DataSplit> split,
                                   int64_t classes, int64_t bins, std::string* text) {
  if (info.event_shape.size() != 1 || info.event_shape[0] > 4096) return nullptr;
  std::string why;
  if (!split) split = model_data_split(info, "the model", &why);
  if (!split || !split->train.has_labels() || split->train.x[0].numel() != data.x[0].numel()) return nullptr;
  auto probs = gaussian_classifier_probabilities(split->train.x, split->train.y, data.x, classes);
  auto r = calibration(probs, data.y, bins);
  const double balanced = per_class(probs, data.y, info.class_names).balanced_accuracy;
  std::ostringstream t;
  t << std::fixed << std::setprecision(4) << "baseline (Gaussian classes, one shared covariance, fitted to the "
    << "run's training split): accuracy " << r.accuracy << ", balanced accuracy " << balanced << ", NLL " << r.nll
    << ", ECE " << r.ece << "\n";
  *text = t.str();
  return {{"kind", "gaussian_lda"}, {"accuracy", r.accuracy}, {"balanced_accuracy", balanced}, {"nll", r.nll},
          {"ece", r.ece}};
}

// The labelled rows of a classify / calibration task and the model's
// p(y | x) on them.
std::pair<torch::Tensor, Dataset> class_probabilities(const Config& c, EnergyImpl& energy, const ModelInfo& info,
                                                      std::string* spec_out, std::optional<DataSplit>* rebuilt) {
  const std::string task = c.get_string("task.name");
  EBM_CHECK_USAGE(energy.num_classes() > 0, task,
                  ": the model is not class-conditional (energy.conditional = true): not a classifier");
  std::string spec;
  Dataset data = labelled_task_data(c, info, task, &spec, rebuilt);
  const std::string labels = c.get_string("task.labels");
  check_labels_in_classes(data.y, energy.num_classes(), labels.empty() ? spec : labels);
  warn_if_far_from_training(energy, info, data.x, spec);  // (rows in other units than the training data's)
  auto probs = class_probabilities(energy, data.x, 512, spec);
  *spec_out = spec;
  return {probs, data};
}

// The text beside a model's own temperature: `figures` are the scores of
// the softmax as trained (T = 1).
std::string untempered_note(double t, const std::string& figures) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(4) << "  (p(y | x) at the model's temperature " << t
     << ", fitted on its training run's validation rows; at T = 1: " << figures << ")\n";
  return os.str();
}
}  // namespace

std::vector<ConfigKey> classify_task_keys() { return labelled_data_keys(); }

EvalReport classify_task(const Config& c, EnergyImpl& energy, const ModelInfo& info) {
  std::string spec;
  std::optional<DataSplit> split;
  auto [raw, data] = class_probabilities(c, energy, info, &spec, &split);
  auto probs = scale_by_model_temperature(raw, info.temperature);
  auto r = calibration(probs, data.y, 1);
  auto pc = per_class(probs, data.y, info.class_names);
  nlohmann::json j = {{"data", spec}, {"n", r.n}, {"accuracy", r.accuracy}, {"nll", r.nll},
                      {"balanced_accuracy", pc.balanced_accuracy}, {"per_class", pc.json["per_class"]},
                      {"temperature", info.temperature.value_or(1.0)}};
  std::ostringstream t;
  t << std::fixed << std::setprecision(4) << spec << ": accuracy " << r.accuracy << ", NLL " << r.nll << " ("
    << r.n << " rows)\n" << pc.text;
  if (info.temperature) {
    const double nll = calibration(raw, data.y, 1).nll;
    j["untempered"] = {{"nll", nll}};
    std::ostringstream f;
    f << std::fixed << std::setprecision(4) << "NLL " << nll;
    t << untempered_note(*info.temperature, f.str());
  }
  std::string base;
  auto b = classifier_baseline(info, data, std::move(split), energy.num_classes(), 15, &base);
  if (!b.is_null()) j["baseline"] = b;
  return {j, t.str() + base};
}

EvalReport calibration_task(const Config& c, EnergyImpl& energy, const ModelInfo& info) {
  const int64_t bins = c.get_int("task.bins");
  EBM_CHECK_USAGE(bins >= 1 && bins <= 1000, "--bins must be 1 to 1000, got ", bins);
  const std::string plot = c.get_string("task.plot");
  EBM_CHECK_USAGE(plot.empty() || file_extension(plot) == ".png", "--plot ", plot,
                  ": the reliability diagram is a PNG (give a .png path)");
  std::string spec;
  std::optional<DataSplit> split;
  auto [raw, data] = class_probabilities(c, energy, info, &spec, &split);
  auto probs = scale_by_model_temperature(raw, info.temperature);
  auto r = calibration(probs, data.y, bins);
  if (!plot.empty()) write_reliability_diagram(plot, r);
  auto j = r.json();
  j["data"] = spec;
  j["temperature"] = info.temperature.value_or(1.0);
  const auto pc = per_class(probs, data.y, info.class_names);
  j["balanced_accuracy"] = pc.balanced_accuracy;
  j["per_class"] = pc.json["per_class"];
  std::ostringstream t;
  t << std::fixed << std::setprecision(4) << spec << ": accuracy " << r.accuracy << ", NLL " << r.nll << ", ECE "
    << r.ece << ", MCE " << r.mce << " (" << bins << (bins == 1 ? " bin, " : " bins, ") << r.n << " rows)\n";
  if (r.mce_rows < 30)  // (a bin's accuracy over a few rows is mostly noise)
    t << "  (the MCE comes from a bin of " << r.mce_rows << " row" << (r.mce_rows == 1 ? "" : "s")
      << ": read it as noise, or use fewer --bins)\n";
  if (info.temperature) {  // (the model's own scaling, and the softmax as trained)
    const auto u = calibration(raw, data.y, bins);
    j["untempered"] = {{"accuracy", u.accuracy}, {"nll", u.nll}, {"ece", u.ece}, {"mce", u.mce}};
    std::ostringstream f;
    f << std::fixed << std::setprecision(4) << "NLL " << u.nll << ", ECE " << u.ece << ", MCE " << u.mce;
    t << untempered_note(*info.temperature, f.str());
  }
  t << pc.text;
  if (r.n >= 4) {  // the post-hoc fix a reader compares against
    std::pair<double, double> temps;
    auto s = cross_fitted_temperature(probs, data.y, bins, &temps);
    j["temperature_scaled"] = {{"t_even", temps.first}, {"t_odd", temps.second}, {"accuracy", s.accuracy},
                               {"nll", s.nll},          {"ece", s.ece},         {"mce", s.mce}};
    t << "temperature scaling (T fitted on the even rows scales the odd ones, and the reverse: T " << temps.first
      << ", " << temps.second << "): NLL " << s.nll << ", ECE " << s.ece << ", MCE " << s.mce << "\n";
    if (s.nll > r.nll + 5e-5)  // (beyond the printed digits)
      t << "  (scaling raised the NLL: the two halves' T disagree, too few rows or errors to fit one; read the "
           "unscaled figures)\n";
  }
  std::string base;
  auto b = classifier_baseline(info, data, std::move(split), energy.num_classes(), bins, &base);
  if (!b.is_null()) j["baseline"] = b;
  return {j, t.str() + base};
}

}  // namespace ebm
