// note_collinear_columns (train/data_notes.h).
#include <c10/util/StringUtil.h>

#include <iomanip>
#include <sstream>

#include "ebm/core/progress.h"
#include "ebm/core/subsample.h"
#include "ebm/train/data_notes.h"

namespace ebm {

namespace {
// Vector rows x of 2 to 2,048 columns and more rows than columns, centred
// (float64, at most 20,000 evenly spaced rows); undefined otherwise.
torch::Tensor centred_rows(const DataSplit& split, const torch::Tensor& x) {
  if (split.train.pixels || !x.defined() || x.dim() != 2 || x.size(1) < 2 || x.size(1) > 2048 ||
      x.size(0) <= x.size(1))
    return {};
  const auto rows = evenly_spaced_rows(x.to(torch::kCPU, torch::kDouble), 20000);
  return rows - rows.mean(0);
}
}  // namespace

void note_collinear_columns(const DataSplit& split) {
  torch::NoGradGuard ng;
  auto c = centred_rows(split, split.train.x);
  if (!c.defined()) return;
  const auto sd = c.square().mean(0).sqrt();
  const auto spread = (sd > 0).nonzero().reshape({-1});  // (constant columns: note_constant_columns's)
  if (spread.numel() < 2) return;
  c = c.index_select(1, spread) / sd.index_select(0, spread);
  const auto corr = c.t().mm(c) / double(c.size(0));
  auto [values, vectors] = torch::linalg_eigh(corr);
  // (float32's rounding leaves a combination that is exactly constant in
  // the file with a variance near 1e-15 of the columns'; a column equal to
  // another plus noise of 1e-5 of its sd, near float32's resolution at an
  // offset of 50 sds, 2.5e-11)
  const auto flat = values < 1e-12 * values[-1];
  if (!flat.any().item<bool>()) return;
  // (every such combination's columns: A, 2A beside C, 3C names all four)
  const auto involved =
      (vectors.index_select(1, flat.nonzero().reshape({-1})).abs() > 0.05).any(1).nonzero().reshape({-1});
  std::ostringstream list;
  for (int64_t i = 0; i < involved.numel() && i < 10; ++i)
    list << (i ? ", " : "") << spread[involved[i].item<int64_t>()].item<int64_t>() + 1;
  if (involved.numel() > 10) list << ", ... (" << involved.numel() << " in all)";
  notes() << "ebm: note: " << split.train.description << ": columns " << list.str()
          << " are a linear function of one another in every training row (one a multiple of another, say the "
             "same length in two units, or indicator columns that sum to one): the rows lie on a thinner set than the columns span, where no density "
             "exists (the energy sharpens there without end and the NLL means nothing); drop the redundant "
             "column(s)\n";
}

void note_thin_direction(const DataSplit& split, double sigma) {
  if (!(sigma > 0) || split.train.pixels || !split.train.x.defined()) return;
  torch::NoGradGuard ng;
  const auto c = centred_rows(split, split.model_train().x);
  if (!c.defined()) return;
  const auto values = torch::linalg_eigvalsh(c.t().mm(c) / double(c.size(0)));
  const double thin = values[0].clamp_min(0).sqrt().item<double>(), wide = values[-1].sqrt().item<double>();
  // (columns that are functions of one another: note_collinear_columns's)
  if (!(thin > 1e-6 * wide) || thin >= 2.0 * sigma) return;
  notes() << "ebm: note: " << split.train.description << ": the training rows' thinnest direction has sd "
          << std::setprecision(3) << thin << " in the model's units, under twice objective.sigma = " << sigma
          << ": denoising score matching learns the data blurred by sigma across it (a probe's thin rotated "
             "mixture lost 0.72 nats at sigma 0.03, 0.30 at 0.005, PCD 0.14); train by PCD "
             "(configs/toy2d-pcd.toml), or set objective.sigma to about "
          << thin / 5 << std::setprecision(6) << "\n";
}

}  // namespace ebm
