#include "ebm/eval/ood.h"
#include "ebm/io/io.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <limits>
#include <numeric>
#include <set>
#include <sstream>

#include "ebm/core/covariance.h"
#include "ebm/core/error.h"
#include "ebm/eval/far_energy.h"
#include "ebm/core/progress.h"
#include "ebm/core/rng.h"
#include "ebm/data/images.h"
#include "ebm/data/image_reading.h"
#include "ebm/energy/standardized.h"
#include "ebm/model/input_units.h"
#include "ebm/model/far_inputs.h"
#include "ebm/model/inputs.h"
#include "ebm/train/train.h"

namespace ebm {
namespace {

std::vector<double> checked_scores(const torch::Tensor& s, const std::string& name) {
  EBM_CHECK_DATA(s.defined() && s.dim() == 1, name, ": scores must be one vector, got ",
                 s.defined() ? s.sizes() : c10::IntArrayRef{});
  auto d = s.detach().to(torch::kCPU, torch::kDouble).contiguous();
  EBM_CHECK_DATA(d.numel() >= 1, name, ": no rows to score");
  const double* p = d.data_ptr<double>();
  std::vector<double> v(p, p + d.numel());
  int64_t nan = 0, first_nan = -1, inf = 0, first_inf = -1;
  for (size_t i = 0; i < v.size(); ++i) {
    if (std::isnan(v[i]) && nan++ == 0) first_nan = int64_t(i);
    if (std::isinf(v[i]) && inf++ == 0) first_inf = int64_t(i);
  }
  EBM_CHECK_DATA(nan == 0, name, ": ", nan, " of ", v.size(), " scores are not finite (the first, NaN, at index ",
                 first_nan, "): the score is undefined there");
  // (an energy of +inf, an input beyond float range, is the most
  // out-of-distribution row there can be: ranked, not refused; said once)
  static std::set<std::string> said;
  if (inf > 0 && said.insert(name).second)
    notes() << "ebm: note: " << name << ": " << inf << " of " << v.size() << " scores are infinite (the first, "
            << v[size_t(first_inf)] << ", at index " << first_inf
            << "), ranked beyond every finite score: inputs beyond the energy's float range?\n";
  return v;
}

// Midranks (1-based; a tie group shares the mean of its ranks) of v.
std::vector<double> midranks(const std::vector<double>& v) {
  std::vector<size_t> order(v.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j < order.size() && v[order[j]] == v[order[i]]) ++j;
    const double mid = 0.5 * double(i + 1 + j);  // mean of ranks i+1 .. j
    for (size_t k = i; k < j; ++k) r[order[k]] = mid;
    i = j;
  }
  return r;
}

struct Placements {
  double auroc, se;
};
// DeLong's placement values: in row i beats the fraction v10_i of out (ties
// 1/2), out row j is beaten by the fraction v01_j of in; auroc is the mean of
// either, Var = var(v10) / n_in + var(v01) / n_out.
Placements placements(const std::vector<double>& in, const std::vector<double>& out) {
  const size_t m = in.size(), n = out.size();
  std::vector<double> all(in);
  all.insert(all.end(), out.begin(), out.end());
  const auto r = midranks(all), r_in = midranks(in), r_out = midranks(out);
  std::vector<double> v10(m), v01(n);
  double sum = 0;
  for (size_t i = 0; i < m; ++i) {
    v10[i] = (r[i] - r_in[i]) / double(n);  // (#out below + 1/2 #out tied) / n
    sum += r[i];
  }
  for (size_t j = 0; j < n; ++j) v01[j] = 1.0 - (r[m + j] - r_out[j]) / double(m);
  // U = (sum of in's ranks) - m (m + 1) / 2
  const double a = (sum - 0.5 * double(m) * double(m + 1)) / (double(m) * double(n));
  auto var = [a](const std::vector<double>& v) {
    if (v.size() < 2) return std::numeric_limits<double>::quiet_NaN();
    double s = 0;
    for (double x : v) s += (x - a) * (x - a);
    return s / double(v.size() - 1);
  };
  return {a, std::sqrt(var(v10) / double(m) + var(v01) / double(n))};
}

double average_precision_of(const std::vector<double>& pos, const std::vector<double>& neg) {
  std::vector<std::pair<double, bool>> all;
  all.reserve(pos.size() + neg.size());
  for (double s : pos) all.emplace_back(s, true);
  for (double s : neg) all.emplace_back(s, false);
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  double tp = 0, fp = 0, ap = 0;
  for (size_t i = 0; i < all.size();) {
    double tp_step = 0, fp_step = 0;
    size_t j = i;
    for (; j < all.size() && all[j].first == all[i].first; ++j) (all[j].second ? tp_step : fp_step) += 1;
    tp += tp_step;
    fp += fp_step;
    if (tp_step > 0) ap += tp_step / double(pos.size()) * tp / (tp + fp);
    i = j;
  }
  return ap;
}

double fpr_at_tpr_of(std::vector<double> in, const std::vector<double>& out, double tpr) {
  EBM_CHECK_USAGE(tpr > 0 && tpr <= 1, "fpr_at_tpr: tpr must be in (0, 1], got ", tpr);
  // (k = ceil(tpr n), robust to tpr n landing a rounding error above an integer)
  const auto n = double(in.size());
  const auto k = std::clamp<int64_t>(int64_t(std::ceil(tpr * n * (1 - 1e-12))), 1, int64_t(in.size()));
  std::nth_element(in.begin(), in.begin() + (k - 1), in.end(), std::greater<double>());
  const double t = in[k - 1];
  const auto fp = std::count_if(out.begin(), out.end(), [t](double s) { return s >= t; });
  return double(fp) / double(out.size());
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string item;
  std::istringstream is(s);
  while (std::getline(is, item, sep)) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) parts.push_back(item);
  }
  return parts;
}

// At most n rows (0 = all) of x, a random subset from gen, and their
// indices in x.
std::pair<torch::Tensor, torch::Tensor> at_most(const torch::Tensor& x, int64_t n, at::Generator& gen) {
  if (n <= 0 || x.size(0) <= n) return {x, torch::arange(x.size(0), torch::kLong)};
  const auto idx = torch::randperm(x.size(0), gen, torch::kLong).narrow(0, 0, n);
  return {x.index_select(0, idx.to(x.device())), idx};
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

OodMetrics ood_metrics(const torch::Tensor& in, const torch::Tensor& out, const std::string& in_name,
                       const std::string& out_name) {
  const auto a = checked_scores(in, in_name), b = checked_scores(out, out_name);
  std::vector<double> neg_a(a.size()), neg_b(b.size());
  std::transform(a.begin(), a.end(), neg_a.begin(), [](double s) { return -s; });
  std::transform(b.begin(), b.end(), neg_b.begin(), [](double s) { return -s; });
  const auto p = placements(a, b);
  OodMetrics m;
  m.auroc = p.auroc;
  m.auroc_se = p.se;
  m.aupr_in = average_precision_of(a, b);
  m.aupr_out = average_precision_of(neg_b, neg_a);
  m.fpr95 = fpr_at_tpr_of(a, b, 0.95);
  return m;
}

double auroc(const torch::Tensor& in, const torch::Tensor& out) {
  return placements(checked_scores(in, "in"), checked_scores(out, "out")).auroc;
}

double auroc_standard_error(const torch::Tensor& in, const torch::Tensor& out) {
  return placements(checked_scores(in, "in"), checked_scores(out, "out")).se;
}

double average_precision(const torch::Tensor& pos, const torch::Tensor& neg) {
  return average_precision_of(checked_scores(pos, "positives"), checked_scores(neg, "negatives"));
}

double fpr_at_tpr(const torch::Tensor& in, const torch::Tensor& out, double tpr) {
  return fpr_at_tpr_of(checked_scores(in, "in"), checked_scores(out, "out"), tpr);
}

// ---------------------------------------------------------------------------
const std::vector<std::string>& ood_score_names() {
  static const std::vector<std::string> names = {"energy", "grad_norm", "max_logit", "logsumexp", "max_softmax"};
  return names;
}

namespace {
bool class_score(const std::string& name) {
  return name == "max_logit" || name == "logsumexp" || name == "max_softmax";
}
}  // namespace

std::vector<std::string> resolve_ood_scores(const EnergyImpl& energy, const std::vector<std::string>& requested) {
  const bool conditional = energy.num_classes() > 0;
  std::vector<std::string> out;
  if (requested.empty()) {
    for (const auto& s : ood_score_names())
      if (conditional || !class_score(s)) out.push_back(s);
    return out;
  }
  const auto& known = ood_score_names();
  for (const auto& s : requested) {
    EBM_CHECK_USAGE(std::find(known.begin(), known.end(), s) != known.end(), "--score ", s,
                    ": unknown score (energy, grad_norm, max_logit, logsumexp, max_softmax)");
    EBM_CHECK_USAGE(conditional || !class_score(s), "--score ", s,
                    ": the model is not class-conditional (max_logit, logsumexp and max_softmax need E(x, y))");
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  }
  return out;
}

torch::Tensor ood_scores(EnergyImpl& energy, const torch::Tensor& x, const std::vector<std::string>& names,
                         int64_t batch) {
  TORCH_CHECK(batch >= 1, "ood_scores: batch must be >= 1, got ", batch);
  auto wants = [&](const char* s) { return std::find(names.begin(), names.end(), s) != names.end(); };
  const bool want_grad = wants("grad_norm"),
             want_class = wants("max_logit") || wants("logsumexp") || wants("max_softmax");
  TORCH_CHECK(!want_class || energy.num_classes() > 0, "ood_scores: class scores need a class-conditional energy");
  energy.eval();
  std::vector<torch::Tensor> rows;
  for (int64_t i = 0; i < x.size(0); i += batch) {
    auto xb = x.narrow(0, i, std::min(batch, x.size(0) - i));
    torch::Tensor e, g, ce;
    if (want_grad) {
      std::tie(e, g) = energy.energy_and_grad(xb);  // (detached)
      // (a standardised model's gradient in its own units, where every column
      // has the same spread: in the data's units the column of smallest scale
      // is all of |dE/dx| (a probe's 0.001-scale column gave 99.6% of it, and
      // the exact density's grad_norm ranked OOD rows at 0.69 against 0.94
      // standardised))
      AffineMap units;
      EnergyImpl& inner = sampling_view(energy, &units);
      if (units.defined()) g = inner.grad(units.to_model(xb.flatten(1)).reshape(xb.sizes()).to(xb.scalar_type()));
    }
    torch::NoGradGuard ng;
    if (!e.defined() && wants("energy")) e = energy.energy(xb);
    if (want_class) ce = energy.class_energies(xb).to(torch::kDouble);  // [B, K]
    std::vector<torch::Tensor> cols;
    for (const auto& s : names) {
      if (s == "energy") {
        cols.push_back(-e.to(torch::kDouble));
      } else if (s == "grad_norm") {
        // (a gradient that overflows, an input beyond the energy's float
        // range, is NaN: ranked most out-of-distribution, as an energy of
        // +inf is, not the end of the evaluation)
        auto norm = g.to(torch::kDouble).flatten(1).norm(2, 1);
        cols.push_back(-torch::where(torch::isnan(norm), torch::full_like(norm, INFINITY), norm));
      } else if (s == "max_logit") {
        cols.push_back(-std::get<0>(ce.min(1)));
      } else if (s == "logsumexp") {
        cols.push_back(torch::logsumexp(-ce, 1));
      } else if (s == "max_softmax") {
        cols.push_back(std::get<0>(torch::softmax(-ce, 1).max(1)));
      } else {
        TORCH_CHECK(false, "ood_scores: unknown score ", s);
      }
    }
    rows.push_back(torch::stack(cols, 1).detach().cpu());
  }
  if (rows.empty()) return torch::zeros({0, int64_t(names.size())}, torch::kDouble);
  return torch::cat(rows);
}

// ---------------------------------------------------------------------------
namespace {
// fit:SPEC: images of another size or channel count made the model's
// [C, H, W], as OOD benchmarks do (CIFAR-10 for a Fashion-MNIST model): RGB
// to grey by luminance (ITU-R BT.601), grey to RGB by copies, then area
// averaging to shrink and bilinear interpolation to enlarge each side.
// Pixels go through the model's pixel map after that; float images are
// taken as in the model's units, like any float input.
torch::Tensor fitted_images(const std::string& inner, const ModelInfo& info) {
  const auto& shape = info.event_shape;
  EBM_CHECK_USAGE(shape.size() == 3 && (shape[0] == 1 || shape[0] == 3), "fit:", inner,
                  ": fitting images needs an image model [1 or 3, H, W], this one takes ", c10::IntArrayRef(shape));
  EBM_CHECK_USAGE(!inner.empty(), "fit: give the images to fit (fit:SPEC)");
  const auto colon = inner.rfind(':');
  const std::string name = colon == std::string::npos ? inner : inner.substr(0, colon),
                    part = colon == std::string::npos ? "test" : inner.substr(colon + 1);
  const bool builtin = (name == "fashion_mnist" || name == "mnist") && (part == "train" || part == "test");
  // (a folder's images each stretched to the model's size as they are read:
  // they need not share one)
  ImageReading stretch = model_image_reading(info);  // (its alpha)
  stretch.height = shape[1];
  stretch.width = shape[2];
  stretch.crop = false;
  stretch.channels = shape[0];  // (grey and colour files alike: by luminance or copies)
  std::error_code ec;
  Dataset d = builtin ? (name == "mnist" ? load_mnist(part) : load_fashion_mnist(part))
              : std::filesystem::is_directory(inner, ec) ? load_data_path(inner, stretch)
                                                         : load_data_path(inner);
  auto x = d.x.to(torch::kFloat);
  if (x.dim() == 3) x = x.unsqueeze(1);  // ([N, H, W] greys)
  EBM_CHECK_DATA(x.dim() == 4 && (x.size(1) == 1 || x.size(1) == 3) && x.size(0) >= 1, inner,
                 ": fit: wants images [N, 1 or 3, H, W] (or [N, H, W]), got ", x.sizes());
  if (x.size(1) == 3 && shape[0] == 1) {
    x = luminance(x, 1).unsqueeze(1);
  } else if (x.size(1) == 1 && shape[0] == 3) {
    x = x.expand({-1, 3, -1, -1});
  }
  const int64_t h = shape[1], w = shape[2];
  if (x.size(2) != h || x.size(3) != w) {
    namespace F = torch::nn::functional;
    const bool shrink = x.size(2) >= h && x.size(3) >= w;
    x = shrink ? F::interpolate(x, F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kArea))
               : F::interpolate(x, F::InterpolateFuncOptions()
                                       .size(std::vector<int64_t>{h, w})
                                       .mode(torch::kBilinear)
                                       .align_corners(false));
  }
  x = x.contiguous();
  return into_model_units(d.pixels ? x.clamp(0, 255) : x, d.pixels, info, inner).to(torch::kFloat);
}
}  // namespace

torch::Tensor ood_data(const std::string& spec, const ModelInfo& info, const torch::Tensor& in, at::Generator& gen) {
  if (starts_with(spec, "fit:")) return fitted_images(spec.substr(4), info);
  for (const char* flip : {"vflip:", "hflip:"}) {
    if (!starts_with(spec, flip)) continue;
    EBM_CHECK_USAGE(info.event_shape.size() == 3, spec, ": flips need an image model [C, H, W], this one takes ",
                    c10::IntArrayRef(info.event_shape));
    const std::string inner = spec.substr(6);
    EBM_CHECK_USAGE(!inner.empty(), spec, ": give the images to flip (", std::string(flip, 5), ":SPEC)");
    return ood_data(inner, info, in, gen).flip({flip[0] == 'v' ? -2 : -1}).contiguous();
  }
  if (spec == "uniform") {
    EBM_CHECK_USAGE(in.defined(), "uniform: an OOD set only (as many rows as the in-distribution set)");
    auto shape = in.sizes().vec();
    if (const auto range = image_range(info))
      return at::empty(shape, torch::kFloat).uniform_(range->first, range->second, gen);
    // (float images: every pixel over the images' whole range, as pixels'
    // over theirs; vectors: per coordinate, over the in-data's box)
    const bool images = info.event_shape.size() == 3;
    auto lo = images ? in.min() : std::get<0>(in.min(0)), hi = images ? in.max() : std::get<0>(in.max(0));
    return (lo + (hi - lo) * at::rand(shape, gen, torch::TensorOptions(torch::kFloat))).to(torch::kFloat);
  }
  try {
    return read_model_data(spec, info, "test");
  } catch (const Error& e) {
    // (images of another size or channel count: name the spec that takes them)
    const std::string what = e.what();
    if (e.code() != ExitCode::kBadData || info.event_shape.size() != 3 ||
        what.find("for a model whose samples are") == std::string::npos)
      throw;
    fail(ExitCode::kBadData, what, "; fit:", spec, " resizes such images and converts their channels to the model's");
  }
}

GaussianFit GaussianFit::fit(const torch::Tensor& rows, int64_t max_rows) {
  TORCH_CHECK(rows.dim() >= 1 && rows.size(0) >= 2, "GaussianFit: need at least 2 rows");
  auto x = rows.detach().to(torch::kCPU, torch::kDouble).flatten(1);
  TORCH_CHECK(max_rows >= 1, "GaussianFit: max_rows must be >= 1");
  const int64_t n = x.size(0), stride = n > max_rows ? (n + max_rows - 1) / max_rows : 1;
  if (stride > 1) x = x.slice(0, 0, n, stride);
  GaussianFit g;
  g.mean = x.mean(0);
  auto xc = x - g.mean;
  auto cov = xc.t().mm(xc) / double(x.size(0) - 1);
  const auto var = cov.diagonal();
  torch::Tensor ridge;
  if (rows.dim() == 2) {
    // Vectors: a multiple of each column's own variance (the same fit in
    // any units: a column in 1e-4 beside one in 1e4 keeps its shape), the
    // one the rows choose (core/covariance.h; a constant column takes the
    // finest column's variance)
    const auto target = ridge_target(var);
    ridge = (x.size(1) <= kMaxHeldOutRidgeDim ? held_out_ridge(xc, target) : 1e-3) * target;
  } else {
    // Images: pixels share their units; one ridge for all (a border pixel
    // that never changes does not make every other image's border an outlier).
    ridge = torch::full_like(var, 1e-3 * var.mean().item<double>() + 1e-12);
  }
  g.chol = torch::linalg_cholesky(cov + torch::diag(ridge));
  return g;
}

torch::Tensor GaussianFit::score(const torch::Tensor& x) const {
  auto r = (x.detach().to(torch::kCPU, torch::kDouble).flatten(1) - mean).t();  // [D, N]
  auto z = torch::linalg_solve_triangular(chol, r, /*upper=*/false);
  return -0.5 * z.pow(2).sum(0);
}

OodResult evaluate_ood(EnergyImpl& energy, const ModelInfo& info, const OodOptions& o, at::Generator& gen) {
  EBM_CHECK_USAGE(!o.in_data().empty(), "ood: give --in-data SPEC (a file, a folder, fashion_mnist or mnist)");
  EBM_CHECK_USAGE(!o.out_data().empty(),
                  "ood: give --out-data SPEC (repeatable: a file, folder, fashion_mnist, mnist, uniform, "
                  "vflip:SPEC, hflip:SPEC, fit:SPEC (other sizes and channel counts made the model's); --out FILE only "
                  "writes the JSON report)");
  EBM_CHECK_USAGE(o.n() >= 0, "--n must be >= 0 (0 = all rows), got ", o.n());
  EBM_CHECK_USAGE(o.batch() >= 1, "OodOptions.batch must be >= 1, got ", o.batch());
  OodResult r;
  r.in = o.in_data();
  r.scores = resolve_ood_scores(energy, o.scores());
  // (every set read before any is scored: a bad file fails fast; --n's
  // subset of each from the same stream, so a set of N rows keeps the same
  // rows whatever sets come before it or what form it is in: drawn from one
  // running stream, a PNG folder and its NPY gave 0.5062 and 0.5231)
  const auto subsets = gen.clone();
  auto subset = [&](const torch::Tensor& x) {
    auto g = subsets.clone();
    return at_most(x, o.n(), g);
  };
  torch::Tensor in;
  std::tie(in, r.in_rows) = subset(ood_data(o.in_data(), info, torch::Tensor(), gen));
  warn_if_far_from_training(energy, info, in, o.in_data());  // (rows in other units than the training data's)
  std::vector<torch::Tensor> outs, out_rows;
  for (const auto& spec : o.out_data()) {
    auto [x, idx] = subset(ood_data(spec, info, in, gen));
    outs.push_back(x);
    out_rows.push_back(idx);
  }
  r.n_in = in.size(0);
  r.dim = in[0].numel();
  if (in.dim() == 2)
    if (const FarEnergy far = far_energy(energy, in); far.unbounded) r.far_energy = far.describe();
  auto s_in = ood_scores(energy, in, r.scores, o.batch());
  // The baseline a user would otherwise reach for: a Gaussian fitted to the
  // training rows (read after the sets, so a bad set is named first).
  std::optional<GaussianFit> gauss;
  torch::Tensor g_in;
  r.baseline_why = o.baseline_why();
  if (!o.reference().empty()) {
    constexpr int64_t kMaxDim = 4096;
    const int64_t dim = in[0].numel();
    if (dim > kMaxDim) {
      r.baseline_why = "more than " + std::to_string(kMaxDim) + " values per row";
    } else {
      try {
        const auto ref = o.reference_rows().defined() ? o.reference_rows()
                                                       : read_model_data(o.reference(), info, "train");
        gauss = GaussianFit::fit(ref);
        r.baseline_reference = o.reference();
        r.reference_rows = ref.size(0);
        g_in = gauss->score(in);
      } catch (const Error& e) {
        // (a --reference the user named that cannot serve is their error;
        // the run's own rebuilt rows only go without a baseline)
        if (!o.reference_rows().defined()) throw;
        r.baseline_why = e.what();
      }
    }
  }
  r.in_scores = g_in.defined() ? torch::cat({s_in, g_in.to(torch::kCPU, torch::kDouble).view({-1, 1})}, 1) : s_in;
  for (size_t k = 0; k < outs.size(); ++k) {
    OodSetResult set;
    set.name = o.out_data()[k];
    set.n = outs[k].size(0);
    auto s_out = ood_scores(energy, outs[k], r.scores, o.batch());
    for (size_t j = 0; j < r.scores.size(); ++j) {
      const auto a = s_in.select(1, int64_t(j)), b = s_out.select(1, int64_t(j));
      set.metrics.push_back(ood_metrics(a, b, o.in_data() + " (" + r.scores[j] + " scores)",
                                        set.name + " (" + r.scores[j] + " scores)"));
      const auto both = torch::cat({a, b});
      set.constant.push_back(both.numel() > 1 && (both == both[0]).all().item<bool>());
    }
    set.row_scores = s_out;
    set.rows = out_rows[k];
    if (gauss) {
      const auto g_out = gauss->score(outs[k]);
      set.baseline = ood_metrics(g_in, g_out, o.in_data() + " (Gaussian baseline scores)",
                                 set.name + " (Gaussian baseline scores)");
      set.row_scores = torch::cat({s_out, g_out.to(torch::kCPU, torch::kDouble).view({-1, 1})}, 1);
    }
    r.sets.push_back(std::move(set));
  }
  return r;
}

nlohmann::json OodResult::json() const {
  nlohmann::json sets_json = nlohmann::json::array();
  for (const auto& s : sets) {
    nlohmann::json sc = nlohmann::json::object();
    for (size_t j = 0; j < scores.size(); ++j) {
      const auto& m = s.metrics[j];
      sc[scores[j]] = {{"auroc", m.auroc},
                       {"auroc_se", m.auroc_se},
                       {"aupr_in", m.aupr_in},
                       {"aupr_out", m.aupr_out},
                       {"fpr95", m.fpr95}};
    }
    nlohmann::json set = {{"name", s.name},
                          {"n", s.n},
                          {"scores", sc},
                          {"aupr_in_chance", double(n_in) / double(n_in + s.n)},
                          {"aupr_out_chance", double(s.n) / double(n_in + s.n)}};
    if (s.baseline)
      set["baseline"] = {{"auroc", s.baseline->auroc},
                         {"auroc_se", s.baseline->auroc_se},
                         {"aupr_in", s.baseline->aupr_in},
                         {"aupr_out", s.baseline->aupr_out},
                         {"fpr95", s.baseline->fpr95}};
    sets_json.push_back(set);
  }
  nlohmann::json baseline = baseline_reference.empty()
                                ? nlohmann::json{{"none", baseline_why}}
                                : nlohmann::json{{"kind", "gaussian"}, {"reference", baseline_reference},
                                                 {"rows", reference_rows}};
  nlohmann::json j = {{"task", "ood"}, {"in", in}, {"n_in", n_in}, {"sets", sets_json}, {"baseline", baseline}};
  if (const auto w = warnings(); !w.empty()) j["warnings"] = w;
  return j;
}

std::vector<std::string> OodResult::warnings() const {
  std::vector<std::string> out;
  // (DeLong's +- is a large-sample formula: 5 rows a side printed 1.0000 +-
  // 0.0000 in 23 of 40 draws of a set whose AUROC is 0.97, and its 95%
  // interval covered the truth in 17 of 40)
  constexpr int64_t kFewRows = 30;
  std::vector<std::string> few;
  if (n_in < kFewRows) few.push_back(in + " (" + std::to_string(n_in) + ")");
  for (const auto& s : sets)
    if (s.n < kFewRows) few.push_back(s.name + " (" + std::to_string(s.n) + ")");
  if (!few.empty()) {
    std::string names;
    for (const auto& f : few) names += (names.empty() ? "" : ", ") + f;
    out.push_back("few rows: " + names + "; under " + std::to_string(kFewRows) + " rows a side the AUROC is rough and " +
                  "its +- (DeLong's, a large-sample formula) understates the error (+- 0 at AUROC 1 or 0 says only "
                  "that these rows separate)");
  }
  // (a score of one value on every row ranks nothing: max_softmax of a
  // classifier whose margins pass float precision is 1 everywhere)
  // (per set: constant images of two values made every score one value
  // against one set and not the other, and the all-sets check said nothing)
  for (size_t j = 0; j < scores.size(); ++j) {
    std::string flat;
    int64_t count = 0;
    for (const auto& s : sets)
      if (j < s.constant.size() && s.constant[j]) flat += (count++ ? ", " : "") + s.name;
    if (count == int64_t(sets.size()) && count > 0)
      out.push_back(scores[j] + " is one value on every row: it carries no information here (AUROC 0.5 by ties)");
    else if (count > 0)
      out.push_back(scores[j] + " is one value on every row of " + in + " and " + flat +
                    ": it tells them apart not at all (AUROC 0.5 by ties)");
  }
  // (a classifier trained by cross entropy alone: rows shifted 20 sd
  // ranked at AUROC 0.17 by its energy, the Gaussian baseline's 1.000)
  if (!far_energy.empty())
    out.push_back(far_energy + ": the energy (and logsumexp) scores rank rows far from the data as in-distribution "
                  "(a classifier trained by cross entropy alone models no p(x); in other models energy.prior_std "
                  "bounds E)");
  // (a 784-value Gaussian fitted to 10 rows is its ridge: AUROC 0.85 against
  // MNIST with no word)
  if (!baseline_reference.empty() && reference_rows <= dim)  // (rank N - 1 < D: singular)
    out.push_back("the Gaussian baseline is fitted to " + std::to_string(reference_rows) + " rows of " +
                  std::to_string(dim) + " values: its covariance is mostly the regularisation added to it, not the "
                  "data's; give --reference more rows than a row has values");
  return out;
}

std::string OodResult::table() const {
  size_t w = 7;
  for (const auto& s : sets) w = std::max(w, s.name.size());
  std::ostringstream os;
  os << "OOD detection against " << in << " (" << n_in
     << " rows); higher score = more in-distribution, in = positive\n";
  os << std::left << std::setw(int(w)) << "out set" << std::right << std::setw(7) << "n"
     << "  " << std::left << std::setw(12) << "score" << std::right << std::setw(18) << "AUROC +- se"
     << std::setw(9) << "AUPR-in" << std::setw(10) << "AUPR-out" << std::setw(8) << "FPR95" << "\n";
  os << std::fixed << std::setprecision(4);
  auto row = [&](const OodSetResult& s, const std::string& score, const OodMetrics& m) {
    std::ostringstream a;
    a << std::fixed << std::setprecision(4) << m.auroc << " +- " << m.auroc_se;
    os << std::left << std::setw(int(w)) << s.name << std::right << std::setw(7) << s.n << "  " << std::left
       << std::setw(12) << score << std::right << std::setw(18) << a.str() << std::setw(9) << m.aupr_in
       << std::setw(10) << m.aupr_out << std::setw(8) << m.fpr95 << "\n";
  };
  for (const auto& s : sets) {
    for (size_t j = 0; j < scores.size(); ++j) row(s, scores[j], s.metrics[j]);
    if (s.baseline) row(s, "gaussian*", *s.baseline);
  }
  os << "FPR95: fraction of the out set scored at or above the threshold that keeps 95% of the in set\n";
  // (AUPR's chance level is the share of the positive side, far from 0.5
  // when the sets' sizes differ: 0.9989 at AUROC 0.65 was nearly chance)
  os << "AUPR by chance: AUPR-in = n_in / (n_in + n), AUPR-out = n / (n_in + n)";
  for (size_t i = 0; i < sets.size(); ++i)
    os << (i == 0 ? " (" : ", ") << sets[i].name << " " << double(n_in) / double(n_in + sets[i].n) << " / "
       << double(sets[i].n) / double(n_in + sets[i].n);
  os << (sets.empty() ? "" : ")") << "\n";
  for (const auto& w : warnings()) os << "warning: " << w << "\n";
  if (!baseline_reference.empty())
    os << "gaussian*: baseline without the model, the log-density of a Gaussian fitted to " << baseline_reference
       << "\n";
  else
    os << "no Gaussian baseline: " << baseline_why << " (--reference DATA gives its training rows)\n";
  return os.str();
}

std::vector<ConfigKey> ood_task_keys() {
  return {{"in_data", std::string(""), "in-distribution rows: a file, a folder, fashion_mnist or mnist (test split)"},
          {"out_data", std::string(""),
           "OOD sets, one SPEC per line (the CLI's repeated --out-data): a file, a folder, fashion_mnist, mnist, "
           "uniform, vflip:SPEC, hflip:SPEC, fit:SPEC (images of another size or channel count resized and "
           "converted to the model's)"},
          {"score", std::string(""),
           "scores, comma-separated: energy, grad_norm, max_logit, logsumexp, max_softmax (empty: all that apply)"},
          {"n", int64_t(0), "rows of each set at most (a seeded random subset); 0 = all"},
          {"seed", int64_t(0), "seed of the subsets and of the uniform set"},
          {"reference", std::string(""),
           "training rows for the Gaussian baseline (default: the model's own training data, when known); none = "
           "no baseline"},
          {"model", std::string(""), "the model file's path (named in messages)"},
          {"rows", std::string(""),
           "write every row's scores to this CSV (9 significant digits) or NPY (float64): set (0 = the in set, k = "
           "the k-th OOD set), row (0-based, in its set's order), one column per score (and gaussian, the "
           "baseline's); higher = more in-distribution; not with n (a random subset)"}};
}

EvalReport ood_task(const Config& c, EnergyImpl& energy, const ModelInfo& info) {
  OodOptions o(c.get_string("task.in_data"), split(c.get_string("task.out_data"), '\n'));
  o.scores(split(c.get_string("task.score"), ',')).n(c.get_int("task.n"));
  std::string why, ref = c.get_string("task.reference");
  const std::string model = c.get_string("task.model");
  torch::Tensor rows;
  if (ref.empty()) {
    // (the run's own training split, rebuilt: none of its held-out rows)
    if (auto split = model_data_split(info, model.empty() ? "the model" : model, &why)) {
      rows = split->train.x;
      ref = "the run's training split";
    }
  }
  if (ref == "none") {
    ref.clear();
    why = "--reference none";
  }
  o.reference(ref).reference_rows(rows).baseline_why(why);
  const std::string rows_out = c.get_string("task.rows");
  EBM_CHECK_USAGE(rows_out.empty() || file_extension(rows_out) == ".csv" || file_extension(rows_out) == ".npy",
                  "--rows ", rows_out, ": the per-row scores are a CSV or an NPY file (give a .csv or .npy path)");
  if (!rows_out.empty()) check_writable(rows_out);
  auto gen = make_generator(uint64_t(c.get_int("task.seed")), kStreamEval);
  auto r = evaluate_ood(energy, info, o, gen);
  if (!rows_out.empty()) {
    std::vector<std::string> header = {"set", "row"};
    for (const auto& name : r.scores) header.push_back(name);
    if (r.in_scores.size(1) > int64_t(r.scores.size())) header.push_back("gaussian");
    std::vector<torch::Tensor> parts;
    // (row: its index in its set, the --n subset's rows among all)
    auto block = [&](const torch::Tensor& scores, const torch::Tensor& rows, int64_t set) {
      const int64_t n = scores.size(0);
      parts.push_back(torch::cat({torch::full({n, 1}, double(set), torch::kDouble),
                                  rows.to(torch::kCPU, torch::kDouble).view({-1, 1}), scores.to(torch::kDouble)},
                                 1));
    };
    block(r.in_scores, r.in_rows, 0);
    for (size_t k = 0; k < r.sets.size(); ++k) block(r.sets[k].row_scores, r.sets[k].rows, int64_t(k) + 1);
    // (CSV keeps 9 significant digits: max_softmax near 1 ties there; NPY
    // keeps every bit, its columns in the CSV header's order)
    if (file_extension(rows_out) == ".npy")
      write_npy(rows_out, torch::cat(parts));
    else
      write_csv(rows_out, torch::cat(parts), header);
  }
  return {r.json(), r.table()};
}

}  // namespace ebm
