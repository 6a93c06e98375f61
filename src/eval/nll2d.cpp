#include "ebm/core/error.h"
#include "ebm/energy/standardized.h"
#include "ebm/eval/box_units.h"
#include "ebm/eval/eval.h"
#include "ebm/io/io.h"

namespace ebm {
namespace {
constexpr int64_t kChunk = 1 << 16;

// A box of the model's units in the user's (a positive diagonal map).
Box2d box_to_user(const Box2d& b, const AffineMap& units) {
  if (!units.defined()) return b;
  Box2d out;
  for (int i = 0; i < 2; ++i) {
    const double shift = units.shift[i].item<double>(), scale = units.scale[i].item<double>();
    out.lo[i] = shift + scale * b.lo[i];
    out.hi[i] = shift + scale * b.hi[i];
  }
  return out;
}
}  // namespace

Box2d box_to_model(const Box2d& b, const AffineMap& units) {
  if (!units.defined()) return b;
  Box2d out;
  for (int i = 0; i < 2; ++i) {
    const double shift = units.shift[i].item<double>(), scale = units.scale[i].item<double>();
    out.lo[i] = (b.lo[i] - shift) / scale;
    out.hi[i] = (b.hi[i] - shift) / scale;
  }
  return out;
}

Nll2dResult nll2d(EnergyImpl& energy, const torch::Tensor& test, double tol, int64_t max_grid) {
  EBM_CHECK_DATA(test.dim() == 2 && test.size(1) == 2, "nll2d needs [N, 2] test data, got ",
                 test.sizes());
  EBM_CHECK_DATA(test.size(0) >= 1, "nll2d needs at least 1 test point");
  Nll2dResult r;
  // The quadrature runs in the model's units (data.standardize): the same
  // Z as the user's energy, whose Jacobian term makes up the difference, on
  // a grid that suits the model whether the data's spread is 1e-9 or 1e9.
  AffineMap units;
  EnergyImpl& model = sampling_view(energy, &units);
  const auto u = units.to_model(test.to(torch::kDouble));
  // The grid starts on the test rows' box less the farthest 0.2% on each
  // side: one stray row at 1,000 sd stretched it over a box where the grid
  // never converged (log Z 0.04 nats off for every row). A row outside
  // still gets its NLL (E(x) + log Z needs no grid there), and the
  // enlargement below finds any mass the box misses.
  Box2d box = u.size(0) >= 500 ? trimmed_bounding_box(u, 0.5, 1e-12) : bounding_box(u, 0.5);
  // A standardised model's training rows have sd 1 (or data.standardize_sd)
  // in its units: the box holds [-5, 5]^2 there whatever the test rows are
  // (two test rows of a 20-row run missed a mode: log Z 0.3 nats low).
  if (units.defined())
    for (int i = 0; i < 2; ++i) {
      box.lo[i] = std::min(box.lo[i], -5.0);
      box.hi[i] = std::max(box.hi[i], 5.0);
    }
  int64_t n = 256;
  double lz = log_z_grid(model, box, n);
  double d_refine = INFINITY, d_enlarge = INFINITY;
  r.converged = false;
  while (2 * n <= max_grid) {
    const double fine = log_z_grid(model, box, 2 * n);
    d_refine = std::abs(fine - lz);
    if (d_refine >= tol) {  // the grid is too coarse: refine
      n *= 2;
      lz = fine;
      continue;
    }
    // Fine enough: does mass lie outside the box? Enlarge 1.5x, same cell size.
    Box2d big = box;
    for (int i = 0; i < 2; ++i) {
      const double c = 0.5 * (box.lo[i] + box.hi[i]), h = 0.75 * (box.hi[i] - box.lo[i]);
      big.lo[i] = c - h;
      big.hi[i] = c + h;
    }
    const int64_t nb = (n * 3) / 2;
    const double wide = log_z_grid(model, big, nb);
    d_enlarge = std::abs(wide - lz);
    if (d_enlarge < tol) {
      r.converged = true;
      lz = fine;
      n *= 2;
      break;
    }
    box = big;
    n = nb;
    lz = wide;
  }
  r.log_z = lz;
  r.log_z_error = std::max(d_refine, d_enlarge);
  r.grid = n;
  r.box = box_to_user(box, units);
  torch::NoGradGuard ng;
  auto dtype = model.parameters().empty() ? torch::kDouble : model.parameters()[0].scalar_type();
  std::vector<torch::Tensor> parts;
  for (int64_t s = 0; s < u.size(0); s += kChunk)
    parts.push_back(model.energy(u.narrow(0, s, std::min(kChunk, u.size(0) - s)).to(dtype)).to(torch::kDouble));
  auto nll = torch::cat(parts) + units.log_det() + lz;
  r.mean_nll = nll.mean().item<double>();
  // (one row: its NLL has no sampling error, only the grid's)
  r.nll_se = test.size(0) > 1 ? nll.std().item<double>() / std::sqrt(double(test.size(0))) : 0.0;
  EBM_CHECK_DATA(std::isfinite(r.mean_nll), "nll2d: non-finite energy on the test data");
  return r;
}

// ----- Pictures -------------------------------------------------------------
namespace {
// A perceptually ordered dark-blue -> teal -> yellow ramp (viridis-like).
std::array<uint8_t, 3> ramp(double t) {
  static const double stops[5][3] = {
      {68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  if (!(t >= 0)) t = 0;  // (NaN: no density; int(NaN) indexed far outside the stops)
  t = std::min(t, 1.0) * 4;
  int i = std::min(int(t), 3);
  double f = t - i;
  std::array<uint8_t, 3> c;
  for (int k = 0; k < 3; ++k) c[k] = uint8_t(stops[i][k] + f * (stops[i + 1][k] - stops[i][k]));
  return c;
}
}  // namespace

void density_png(const std::string& path, EnergyImpl& energy, const Box2d& box, int64_t px) {
  auto e = grid_energy(energy, box, px);  // y slowest
  // (grid points of non-finite energy draw as no density: a training row at
  // 3e38 gave a box where every energy overflowed, and the NaN ratios
  // crashed the picture)
  const auto finite = torch::isfinite(e);
  const double lowest = finite.any().item<bool>() ? e.masked_select(finite).min().item<double>() : 0.0;
  auto p = torch::where(finite, torch::exp(-(e - lowest)), torch::zeros_like(e));
  const double top = p.max().item<double>();
  auto t = (top > 0 ? p / top : p).contiguous();
  auto img = torch::empty({px, px, 3}, torch::kUInt8);
  auto* d = img.data_ptr<uint8_t>();
  const double* tp = t.data_ptr<double>();
  for (int64_t row = 0; row < px; ++row) {
    int64_t gy = px - 1 - row;  // image rows go down, y goes up
    for (int64_t col = 0; col < px; ++col) {
      auto c = ramp(tp[gy * px + col]);
      for (int k = 0; k < 3; ++k) d[(row * px + col) * 3 + k] = c[k];
    }
  }
  write_png(path, img);
}

void decision_png(const std::string& path, EnergyImpl& energy, const Box2d& box, const torch::Tensor& points,
                  const torch::Tensor& labels, int64_t px) {
  const int64_t k = energy.num_classes();
  EBM_CHECK_DATA(k > 0, path, ": the model is not a classifier (no decision regions to draw)");
  // Light and dark colours of up to 10 classes (repeating beyond).
  static const uint8_t dark[10][3] = {{31, 119, 180}, {214, 39, 40},  {44, 160, 44},  {148, 103, 189}, {255, 127, 14},
                                      {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  auto palette = torch::empty({k, 3}, torch::kDouble);
  for (int64_t c = 0; c < k; ++c)
    for (int j = 0; j < 3; ++j) palette[c][j] = 255.0 - 0.35 * (255.0 - dark[c % 10][j]);
  auto probs = torch::empty({px * px, k}, torch::kDouble);
  {
    torch::NoGradGuard ng;
    const double hx = (box.hi[0] - box.lo[0]) / px, hy = (box.hi[1] - box.lo[1]) / px;
    auto xs = box.lo[0] + hx * (torch::arange(px, torch::kDouble) + 0.5);
    auto ys = box.hi[1] - hy * (torch::arange(px, torch::kDouble) + 0.5);  // image rows go down
    auto dtype = energy.parameters().empty() ? torch::kDouble : energy.parameters()[0].scalar_type();
    for (int64_t start = 0; start < px * px; start += kChunk) {
      const int64_t len = std::min(kChunk, px * px - start);
      auto idx = torch::arange(start, start + len, torch::kLong);
      auto pts = torch::stack({xs.index_select(0, idx % px), ys.index_select(0, torch::div(idx, px, "floor"))}, 1);
      probs.narrow(0, start, len).copy_(torch::softmax(-energy.class_energies(pts.to(dtype)).to(torch::kDouble), 1));
    }
  }
  auto arg = probs.argmax(1).view({px, px});
  auto img = probs.mm(palette).round().clamp(0, 255).to(torch::kUInt8).view({px, px, 3}).contiguous();
  auto edge = torch::zeros({px, px}, torch::kBool);
  edge.narrow(1, 0, px - 1) |= arg.narrow(1, 0, px - 1) != arg.narrow(1, 1, px - 1);
  edge.narrow(0, 0, px - 1) |= arg.narrow(0, 0, px - 1) != arg.narrow(0, 1, px - 1);
  img.masked_fill_(edge.unsqueeze(2), 0);
  if (points.defined() && labels.defined()) {
    auto* d = img.data_ptr<uint8_t>();
    auto p = points.to(torch::kDouble).contiguous();
    auto l = labels.to(torch::kLong).contiguous();
    const double* v = p.data_ptr<double>();
    for (int64_t i = 0; i < std::min<int64_t>(2000, p.size(0)); ++i) {
      const double fx = (v[2 * i] - box.lo[0]) / (box.hi[0] - box.lo[0]);
      const double fy = (v[2 * i + 1] - box.lo[1]) / (box.hi[1] - box.lo[1]);
      if (!(fx >= 0 && fx < 1 && fy >= 0 && fy < 1)) continue;
      const int64_t col = int64_t(fx * px), row = px - 1 - int64_t(fy * px);
      const int64_t c = ((l.data_ptr<int64_t>()[i] % 10) + 10) % 10;
      for (int64_t dr = 0; dr < 2; ++dr)
        for (int64_t dc = 0; dc < 2; ++dc) {
          const int64_t r = std::min(row + dr, px - 1), cc = std::min(col + dc, px - 1);
          for (int j = 0; j < 3; ++j) d[(r * px + cc) * 3 + j] = dark[c][j];
        }
    }
  }
  write_png(path, img);
}

void scatter_png(const std::string& path, const torch::Tensor& samples, const torch::Tensor& data,
                 const Box2d& box, int64_t px) {
  auto img = torch::full({px, px, 3}, 255, torch::kUInt8);
  auto* d = img.data_ptr<uint8_t>();
  auto plot = [&](const torch::Tensor& pts, std::array<uint8_t, 3> color) {
    auto p = pts.to(torch::kDouble).contiguous();
    const double* v = p.data_ptr<double>();
    for (int64_t i = 0; i < p.size(0); ++i) {
      double fx = (v[2 * i] - box.lo[0]) / (box.hi[0] - box.lo[0]);
      double fy = (v[2 * i + 1] - box.lo[1]) / (box.hi[1] - box.lo[1]);
      if (!(fx >= 0 && fx < 1 && fy >= 0 && fy < 1)) continue;
      int64_t col = int64_t(fx * px), row = px - 1 - int64_t(fy * px);
      for (int64_t dr = 0; dr < 2; ++dr)
        for (int64_t dc = 0; dc < 2; ++dc) {
          int64_t r = std::min(row + dr, px - 1), c = std::min(col + dc, px - 1);
          for (int k = 0; k < 3; ++k) d[(r * px + c) * 3 + k] = color[k];
        }
    }
  };
  if (data.defined()) plot(data, {170, 170, 170});
  plot(samples, {200, 30, 30});
  write_png(path, img);
}

}  // namespace ebm
