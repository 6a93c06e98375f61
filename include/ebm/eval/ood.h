// Out-of-distribution detection (`ebm eval --task ood`): a score s(x), higher
// = more in-distribution, and the threshold-free measures of how well it tells
// an in-distribution set from an OOD one (Hendrycks & Gimpel 2017).
// Scores of an energy model:
//   energy     s = -E(x)                         (Liu et al. 2020)
//   grad_norm  s = -|dE/dx|_2 over the event     (Grathwohl et al. 2020, JEM)
//   max_logit  s = max_y -E(x, y)                (Hendrycks et al. 2022)
//   logsumexp  s = log sum_y exp(-E(x, y))       (class-conditional energies)
//   max_softmax s = max_y p(y | x), p = softmax(-E(x, .))   (Hendrycks & Gimpel 2017; JEM's baseline score)
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "ebm/core/config.h"
#include "ebm/energy/energy.h"
#include "ebm/eval/tasks.h"
#include "ebm/model/model.h"

namespace ebm {

// ---------------------------------------------------------------------------
// Metrics of two score vectors (any float dtype, taken in float64), in =
// positive. Each throws kBadData naming the set (`in_name` / `out_name`) for
// an empty set or a non-finite score. None depends on the rows' order.
struct OodMetrics {
  // P(s_in > s_out) + 1/2 P(s_in = s_out): Mann-Whitney U / (n_in n_out),
  // ties at midranks.
  double auroc = 0;
  // DeLong et al. (1988) standard error of auroc (from the data's placement
  // values); NaN when a set has one row.
  double auroc_se = 0;
  // Average precision with in as positive: sum over distinct thresholds t
  // (descending, "s >= t") of precision(t) times the recall gained at t; a
  // group of tied scores is one step.
  double aupr_in = 0;
  // The same with out as positive and -s as its score.
  double aupr_out = 0;
  // Fraction of out scored s >= t95, where t95 = the k-th largest in score,
  // k = ceil(0.95 n_in): the highest threshold that keeps at least 95% of in
  // (more when in has ties at t95; an out score tied with t95 counts as a
  // false positive).
  double fpr95 = 0;
};
OodMetrics ood_metrics(const torch::Tensor& in, const torch::Tensor& out, const std::string& in_name = "in",
                       const std::string& out_name = "out");

double auroc(const torch::Tensor& in, const torch::Tensor& out);
double auroc_standard_error(const torch::Tensor& in, const torch::Tensor& out);
// Positives are the rows of `pos`; a row is predicted positive when s >= t.
double average_precision(const torch::Tensor& pos, const torch::Tensor& neg);
// As fpr95 at another true-positive rate, 0 < tpr <= 1 (k = ceil(tpr n_in)).
double fpr_at_tpr(const torch::Tensor& in, const torch::Tensor& out, double tpr = 0.95);

// ---------------------------------------------------------------------------
// Scores: energy, grad_norm, max_logit, logsumexp, max_softmax.
const std::vector<std::string>& ood_score_names();
// `requested` checked (kUsage, one line: an unknown name, or a class score of
// an energy that is not class-conditional) with duplicates dropped; empty =
// every score that applies to `energy`.
std::vector<std::string> resolve_ood_scores(const EnergyImpl& energy, const std::vector<std::string>& requested);
// [N, S] float64 scores of x [N, ...event], column s for names[s], in batches
// of `batch` rows (eval mode; no graph kept: only grad_norm builds one, per
// batch, for dE/dx).
torch::Tensor ood_scores(EnergyImpl& energy, const torch::Tensor& x, const std::vector<std::string>& names,
                         int64_t batch = 256);

// ---------------------------------------------------------------------------
// The rows [N, ...event] (float32, the model's range) that a SPEC names:
//   FILE or DIR            read_model_input (the model's pixel conventions)
//   fashion_mnist, mnist   their test split (NAME:train for the other)
//   uniform                as many rows as `in`: uniform over the model's
//                          pixel range, or, for a model not trained on
//                          pixels, over in's per-coordinate min..max box
//   vflip:SPEC, hflip:SPEC SPEC's images turned upside down / mirrored
// kBadData naming the file when its rows are not the model's events; kUsage
// for uniform without `in` or a flip of a model that does not take images.
torch::Tensor ood_data(const std::string& spec, const ModelInfo& info, const torch::Tensor& in,
                       at::Generator& gen);

struct OodOptions {
  OodOptions(std::string in_data, std::vector<std::string> out_data)
      : in_data_(std::move(in_data)), out_data_(std::move(out_data)) {}
  TORCH_ARG(std::string, in_data);                // SPEC of the in-distribution set
  TORCH_ARG(std::vector<std::string>, out_data);  // SPECs of the OOD sets, each reported
  TORCH_ARG(std::vector<std::string>, scores) = {};  // empty = all that apply
  TORCH_ARG(int64_t, n) = 0;                      // rows per set at most (random subset); 0 = all
  TORCH_ARG(int64_t, batch) = 256;                // rows per forward pass
  // Training rows (a SPEC for read_model_data, split "train") for the
  // baseline: each set scored by the log-density of a Gaussian fitted to them
  // (the Mahalanobis distance; no model). "" = no baseline, `baseline_why`
  // saying why.
  TORCH_ARG(std::string, reference) = "";
  // The training rows themselves (then `reference` only names them).
  TORCH_ARG(torch::Tensor, reference_rows) = {};
  TORCH_ARG(std::string, baseline_why) = "";
};

// The baseline's fit: mean and the Cholesky factor of the covariance of
// rows flattened to [N, D], at most `max_rows` of them (evenly spaced), with
// a ridge: for vector rows ([N, D]) 1e-3 of each column's own variance (the
// same fit whatever each column's units), for images ([N, C, H, W]) 1e-3 of
// the mean variance; scores are -1/2 |L^-1 (x - mean)|^2.
struct GaussianFit {
  torch::Tensor mean, chol;  // [D], [D, D] (double)
  static GaussianFit fit(const torch::Tensor& rows, int64_t max_rows = 20000);
  torch::Tensor score(const torch::Tensor& x) const;  // [N] double
};

struct OodSetResult {
  std::string name;                 // its SPEC
  int64_t n = 0;                    // rows scored
  std::vector<OodMetrics> metrics;  // one per OodResult::scores
  std::optional<OodMetrics> baseline;  // the Gaussian fit's, when there is one
  std::vector<bool> constant;          // per score: one value on every row of both sets
  torch::Tensor row_scores;            // [n, S (+1: the baseline's, when there is one)], float64
  torch::Tensor rows;                  // [n]: the scored rows' indices in the set (its --n subset's)
};
struct OodResult {
  std::string in;
  int64_t n_in = 0;
  std::vector<std::string> scores;
  std::vector<OodSetResult> sets;
  torch::Tensor in_scores;         // the in set's rows, as OodSetResult::row_scores
  torch::Tensor in_rows;           // their indices, as OodSetResult::rows
  std::string baseline_reference;  // the rows the baseline was fitted to, or ""
  std::string baseline_why;        // why there is none
  int64_t reference_rows = 0;      // the rows the baseline was fitted to
  int64_t dim = 0;                 // values per row
  std::string far_energy;          // vectors: far_energy's description when E falls without bound, else ""
  // {task, in, n_in, sets: [{name, n, scores: {NAME: {auroc, auroc_se, aupr_in, aupr_out, fpr95}},
  //  baseline: {the same for the Gaussian fit}, aupr_in_chance, aupr_out_chance}],
  //  baseline: {kind, reference, rows} or {none: why},
  //  warnings: [...] when there are any}
  nlohmann::json json() const;
  std::string table() const;  // one row per set x score
  // Sets too small for the AUROC's +- (under 30 rows), scores of one value
  // on every row of the in set and an out set, a baseline fitted to fewer
  // rows than a row has values, an energy that falls without bound.
  std::vector<std::string> warnings() const;
};
// Subsets (--n) and uniform noise from `gen`: the in set first, then each OOD
// set in order.
OodResult evaluate_ood(EnergyImpl& energy, const ModelInfo& info, const OodOptions& options, at::Generator& gen);

// The `ood` eval task: its keys (task.in_data, task.out_data one SPEC per
// line, task.score comma-separated, task.n, task.seed) and its run.
std::vector<ConfigKey> ood_task_keys();
EvalReport ood_task(const Config& c, EnergyImpl& energy, const ModelInfo& info);

}  // namespace ebm
