// Mode masses: does the model put on each region of the data the share of
// mass the data have there? The regions are the Voronoi cells of a k-means
// clustering of the data; the model's mass of each is exact in 2D (the
// quadrature grid of nll2d, each point assigned to its nearest centre).
// Short-run or persistent Langevin chains do not cross between separated
// modes, so a model can draw good-looking samples and still hold the wrong
// masses; this check sees that, and the cell-level KL(data || model) is a
// lower bound on the whole KL (the data processing inequality).
// cell_shares (eval/cell_shares.h) compares draws with data over the same
// kind of cells in any dimension: a learned sampler's generator that drops a
// mode its energy keeps.
#include <cmath>
#include <iomanip>
#include <sstream>

#include "ebm/core/error.h"
#include "ebm/core/subsample.h"
#include "ebm/energy/standardized.h"
#include "ebm/eval/box_units.h"
#include "ebm/eval/cell_shares.h"
#include "ebm/eval/eval.h"

namespace ebm {

torch::Tensor kmeans(const torch::Tensor& points, int64_t k, at::Generator& gen, int64_t iterations) {
  auto x = points.to(torch::kCPU, torch::kDouble).reshape({points.size(0), -1});
  const int64_t n = x.size(0);
  EBM_CHECK_DATA(n >= k && k >= 1, "k-means: ", k, " clusters need at least as many points, got ", n);
  // k-means++ seeding (Arthur & Vassilvitskii 2007).
  std::vector<torch::Tensor> c{x[at::randint(n, {1}, gen, torch::kLong).item<int64_t>()]};
  auto d2 = ((x - c[0]).pow(2)).sum(1);
  for (int64_t j = 1; j < k; ++j) {
    auto w = d2.sum().item<double>() > 0 ? d2 : torch::ones_like(d2);
    const int64_t pick = at::multinomial(w, 1, false, gen).item<int64_t>();
    c.push_back(x[pick]);
    d2 = torch::minimum(d2, (x - c.back()).pow(2).sum(1));
  }
  auto centers = torch::stack(c);
  for (int64_t it = 0; it < iterations; ++it) {
    auto assign = torch::cdist(x, centers).argmin(1);
    auto sums = torch::zeros_like(centers).index_add_(0, assign, x);
    auto counts = torch::zeros({k}, torch::kDouble).index_add_(0, assign, torch::ones({n}, torch::kDouble));
    auto fresh = sums / counts.clamp_min(1).unsqueeze(1);
    fresh = torch::where((counts > 0).unsqueeze(1), fresh, centers);  // (an empty cell keeps its centre)
    const bool same = torch::allclose(fresh, centers, 0, 1e-12);
    centers = fresh;
    if (same) break;
  }
  return centers;
}

namespace {
// The Voronoi cells of k-means centres of rows [N, D] (float64, the user's
// units) in their standardised columns (centred, sd 1): in raw units a column
// in 1e4 beside one in 1e-4 would cut every cell as a slice along the first
// and merge modes that share it. mode_masses and cell_shares both use them.
struct DataCells {
  AffineMap map;
  torch::Tensor centers;  // [k, D], standardised
  DataCells(const torch::Tensor& raw, int64_t k, at::Generator& gen)
      : map(AffineMap::standardize(raw)), centers(kmeans(map.to_model(raw), k, gen)) {}
  // each row's cell [N]
  torch::Tensor cell_of(const torch::Tensor& rows) const { return torch::cdist(map.to_model(rows), centers).argmin(1); }
  // each cell's fraction of the rows [k]
  torch::Tensor shares(const torch::Tensor& rows) const {
    return torch::bincount(cell_of(rows), {}, centers.size(0)).to(torch::kDouble) / double(rows.size(0));
  }
};
}  // namespace

ModeMassResult mode_masses(EnergyImpl& energy, const torch::Tensor& data, int64_t clusters, double z,
                           double min_diff, at::Generator& gen, double tol) {
  EBM_CHECK_DATA(data.dim() == 2 && data.size(1) == 2, "modes: needs [N, 2] data for a 2D model, got ",
                 data.sizes());
  return mode_masses(energy, data, nll2d(energy, data.to(torch::kCPU, torch::kDouble), tol), clusters, z,
                     min_diff, gen);
}

ModeMassResult mode_masses(EnergyImpl& energy, const torch::Tensor& data, const Nll2dResult& q,
                           int64_t clusters, double z, double min_diff, at::Generator& gen) {
  EBM_CHECK_DATA(data.dim() == 2 && data.size(1) == 2, "modes: needs [N, 2] data for a 2D model, got ",
                 data.sizes());
  EBM_CHECK_USAGE(clusters >= 2, "--clusters must be >= 2, got ", clusters);
  EBM_CHECK_DATA(data.size(0) >= 10 * clusters, "modes: ", data.size(0), " points are too few for ", clusters,
                 " clusters (want 10 per cluster)");
  ModeMassResult r;
  const auto raw = data.to(torch::kCPU, torch::kDouble);
  const DataCells cells(raw, clusters, gen);
  r.centers = cells.map.to_user(cells.centers);
  const int64_t n = raw.size(0);
  r.data_fraction = cells.shares(raw);
  r.data_se = (r.data_fraction * (1 - r.data_fraction) / double(n)).sqrt();
  // The model's mass per cell on the converged quadrature grid of nll2d, in
  // the model's units as nll2d ran it (the cells are the user's).
  AffineMap units;
  EnergyImpl& model = sampling_view(energy, &units);
  const Box2d box = box_to_model(q.box, units);
  const int64_t g = q.grid;
  const double hx = (box.hi[0] - box.lo[0]) / g, hy = (box.hi[1] - box.lo[1]) / g;
  auto xs = box.lo[0] + hx * (torch::arange(g, torch::kDouble) + 0.5);
  auto ys = box.lo[1] + hy * (torch::arange(g, torch::kDouble) + 0.5);
  const auto dtype = model.parameters().empty() ? torch::kDouble : model.parameters()[0].scalar_type();
  auto mass = torch::zeros({clusters}, torch::kDouble);
  torch::NoGradGuard ng;
  const double log_cell = std::log(hx * hy);
  for (int64_t row = 0; row < g; row += 64) {  // 64 grid rows at a time
    const int64_t rows = std::min<int64_t>(64, g - row);
    auto pts = torch::stack({xs.repeat({rows}), ys.narrow(0, row, rows).repeat_interleave(g)}, 1);
    auto p = (-model.energy(pts.to(dtype)).to(torch::kDouble) - q.log_z + log_cell).exp();
    mass.index_add_(0, cells.cell_of(units.to_user(pts)), p);
  }
  r.model_mass = mass;
  r.log_z_error = q.log_z_error;
  // Flags: |mass - fraction| beyond z standard errors of the fraction and
  // beyond min_diff (a difference of no practical weight is not flagged).
  auto diff = (mass - r.data_fraction).abs();
  r.flagged = ((diff > z * r.data_se) & (diff > min_diff));
  r.ok = !r.flagged.any().item<bool>();
  auto f = r.data_fraction, m = mass.clamp_min(1e-300);
  r.kl = torch::where(f > 0, f * (f / m).log(), torch::zeros_like(f)).sum().item<double>();
  return r;
}

nlohmann::json mode_masses_json(const ModeMassResult& r) {
  nlohmann::json cells = nlohmann::json::array();
  for (int64_t i = 0; i < r.centers.size(0); ++i)
    cells.push_back({{"center", {r.centers[i][0].item<double>(), r.centers[i][1].item<double>()}},
                     {"data_fraction", r.data_fraction[i].item<double>()},
                     {"data_se", r.data_se[i].item<double>()},
                     {"model_mass", r.model_mass[i].item<double>()},
                     {"flagged", r.flagged[i].item<bool>()}});
  return {{"ok", r.ok}, {"kl_cells", r.kl}, {"log_z_error", r.log_z_error}, {"cells", cells}};
}

std::string ModeMassResult::table() const {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(4);
  os << "cell   centre                 data (+- se)          model     flag\n";
  for (int64_t i = 0; i < centers.size(0); ++i) {
    std::ostringstream c;  // (centres in the data's units, any scale: 4 significant digits)
    c << std::setprecision(4) << "(" << centers[i][0].item<double>() << ", " << centers[i][1].item<double>() << ")";
    os << "  " << i << "   " << c.str() << "   "
       << data_fraction[i].item<double>() << " +- " << data_se[i].item<double>() << "   "
       << model_mass[i].item<double>() << (flagged[i].item<bool>() ? "   WRONG MASS" : "") << "\n";
  }
  os << "KL(data || model) over the cells: " << kl << " nats (a lower bound on the model's excess NLL)\n";
  return os.str();
}

}  // namespace ebm

namespace ebm {

int64_t CellShares::flagged_count() const { return flagged.defined() ? flagged.sum().item<int64_t>() : 0; }

std::string CellShares::worst(int max) const {
  if (flagged_count() == 0) return {};
  auto diff = (draw_fraction - data_fraction).abs().masked_fill(~flagged, -1.0);
  auto order = std::get<1>(diff.sort(0, /*descending=*/true));
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(3);
  const int64_t shown = std::min<int64_t>(max, flagged_count());
  for (int64_t i = 0; i < shown; ++i) {
    const int64_t c = order[i].item<int64_t>();
    os << (i ? "; " : "") << draw_fraction[c].item<double>() << " of the draws where the data have "
       << data_fraction[c].item<double>();
  }
  return os.str();
}

CellShares cell_shares(const torch::Tensor& draws, const torch::Tensor& data, int64_t clusters, double z,
                       double min_diff, double ratio, at::Generator& gen) {
  TORCH_CHECK(draws.dim() == 2 && data.dim() == 2 && draws.size(1) == data.size(1),
              "cell_shares: want [N, D] draws and data of one width, got ", draws.sizes(), " and ", data.sizes());
  CellShares s;
  auto raw = data.to(torch::kCPU, torch::kDouble);
  const int64_t k = std::min<int64_t>(clusters, raw.size(0) / 10);
  if (k < 2 || draws.size(0) < 1) return s;
  raw = evenly_spaced_rows(raw, 20000);
  const DataCells cells(raw, k, gen);
  s.centers = cells.map.to_user(cells.centers);
  s.data_fraction = cells.shares(raw);
  s.draw_fraction = cells.shares(draws.to(torch::kCPU, torch::kDouble));
  const auto& f = s.data_fraction;
  const auto& g = s.draw_fraction;
  // (the two-proportion test's pooled standard error: with each share's own
  // variance, no draw in a cell made its se the data's alone, and 10 draws
  // flagged a cell of 12%)
  const double n_data = double(raw.size(0)), n_draws = double(draws.size(0));
  const auto pooled = (f * n_data + g * n_draws) / (n_data + n_draws);
  auto se = (pooled * (1 - pooled) * (1 / n_data + 1 / n_draws)).sqrt();
  auto diff = (g - f).abs();
  s.flagged = (diff > z * se) & (diff > min_diff) & ((g * ratio < f) | (g > ratio * f));
  return s;
}

nlohmann::json cell_shares_json(const CellShares& s) {
  nlohmann::json cells = nlohmann::json::array();
  for (int64_t i = 0; s.centers.defined() && i < s.centers.size(0); ++i) {
    std::vector<double> c(s.centers.size(1));
    for (size_t j = 0; j < c.size(); ++j) c[j] = s.centers[i][int64_t(j)].item<double>();
    cells.push_back({{"center", c},
                     {"data_fraction", s.data_fraction[i].item<double>()},
                     {"draw_fraction", s.draw_fraction[i].item<double>()},
                     {"flagged", s.flagged[i].item<bool>()}});
  }
  return {{"flagged", s.flagged_count()}, {"cells", cells}};
}

}  // namespace ebm
