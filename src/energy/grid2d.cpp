// 2D quadrature (include/ebm/energy/grid2d.h).
#include "ebm/energy/grid2d.h"

#include <cmath>

namespace ebm {
namespace {
constexpr int64_t kChunk = 1 << 16;
}  // namespace

torch::Tensor grid_energy(EnergyImpl& energy, const Box2d& box, int64_t n) {
  torch::NoGradGuard ng;
  const double hx = (box.hi[0] - box.lo[0]) / n, hy = (box.hi[1] - box.lo[1]) / n;
  auto xs = box.lo[0] + hx * (torch::arange(n, torch::kDouble) + 0.5);
  auto ys = box.lo[1] + hy * (torch::arange(n, torch::kDouble) + 0.5);
  auto out = torch::empty({n * n}, torch::kDouble);
  auto dtype = energy.parameters().empty() ? torch::kDouble : energy.parameters()[0].scalar_type();
  for (int64_t start = 0; start < n * n; start += kChunk) {
    int64_t len = std::min(kChunk, n * n - start);
    auto idx = torch::arange(start, start + len, torch::kLong);
    auto pts = torch::stack({xs.index_select(0, idx % n), ys.index_select(0, torch::div(idx, n, "floor"))}, 1);
    out.narrow(0, start, len).copy_(energy.energy(pts.to(dtype)).to(torch::kDouble));
  }
  return out;
}

double log_z_grid(EnergyImpl& energy, const Box2d& box, int64_t n) {
  auto e = grid_energy(energy, box, n);
  const double cell = (box.hi[0] - box.lo[0]) * (box.hi[1] - box.lo[1]) / double(n * n);
  return torch::logsumexp(-e, 0).item<double>() + std::log(cell);
}

Box2d trimmed_bounding_box(const torch::Tensor& points, double margin, double min_extent) {
  const auto p = points.to(torch::kDouble);
  const int64_t n = p.size(0), trim = n / 500;
  Box2d b;
  for (int i = 0; i < 2; ++i) {
    const auto c = p.select(1, i);
    const double lo = std::get<0>(c.kthvalue(trim + 1)).item<double>(),
                 hi = std::get<0>(c.kthvalue(n - trim)).item<double>(), ext = std::max(hi - lo, min_extent);
    b.lo[i] = lo - margin * ext;
    b.hi[i] = hi + margin * ext;
  }
  return b;
}

Box2d bounding_box(const torch::Tensor& points, double margin) {
  auto p = points.to(torch::kDouble);
  auto lo = std::get<0>(p.min(0)), hi = std::get<0>(p.max(0));
  Box2d b;
  for (int i = 0; i < 2; ++i) {
    double l = lo[i].item<double>(), h = hi[i].item<double>();
    double ext = std::max(h - l, 1e-3);
    b.lo[i] = l - margin * ext;
    b.hi[i] = h + margin * ext;
  }
  return b;
}

}  // namespace ebm
