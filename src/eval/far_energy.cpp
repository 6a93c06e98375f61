// far_energy (eval/far_energy.h).
#include "ebm/eval/far_energy.h"
#include "ebm/core/subsample.h"

#include <cmath>
#include <sstream>

namespace ebm {

std::string FarEnergy::describe() const {
  std::ostringstream s;
  s.precision(4);
  s << "E falls without bound away from the data: along a ray from the rows' mean it is " << at[0] << ", " << at[1]
    << " and " << at[2] << " at 10, 100 and 1,000 times their spread, below every row's (lowest " << rows_min << ")";
  return s.str();
}

FarEnergy far_energy(EnergyImpl& energy, const torch::Tensor& rows) {
  FarEnergy out;
  if (!rows.defined() || rows.dim() != 2 || rows.size(0) < 2) return out;
  torch::NoGradGuard ng;
  const auto dtype = [&] {
    auto p = energy.parameters();
    return p.empty() ? rows.scalar_type() : p[0].scalar_type();
  }();
  const auto device = [&] {
    auto p = energy.parameters();
    return p.empty() ? rows.device() : p[0].device();
  }();
  // (256 rows evenly spaced: a file sorted by class or time starts with one cluster)
  const auto x = evenly_spaced_rows(rows, 256).to(torch::kCPU, torch::kDouble);
  const auto m = x.mean(0);
  const auto d = x - m;
  const double radius = d.square().sum(1).mean().sqrt().item<double>();
  if (!(radius > 0) || !std::isfinite(radius)) return out;
  const auto norms = d.norm(2, 1, true);
  const auto keep = (norms.squeeze(1) > 0).nonzero().squeeze(1);
  if (keep.numel() == 0) return out;
  const auto dirs = (d.index_select(0, keep) / norms.index_select(0, keep)).narrow(0, 0, std::min<int64_t>(32, keep.numel()));
  const auto e_rows = energy.energy(x.to(device, dtype)).to(torch::kCPU, torch::kDouble);
  out.rows_min = e_rows.min().item<double>();
  std::vector<torch::Tensor> e;
  for (double t : {10.0, 100.0, 1000.0})
    e.push_back(energy.energy((m + t * radius * dirs).to(device, dtype)).to(torch::kCPU, torch::kDouble));
  const auto falling = (e[1] < e[0]) & (e[2] < e[1]) & (e[2] < out.rows_min) & torch::isfinite(e[2]);
  if (!falling.any().item<bool>()) return out;
  const int64_t j = torch::where(falling, e[2], torch::full_like(e[2], INFINITY)).argmin().item<int64_t>();
  out.unbounded = true;
  for (int k = 0; k < 3; ++k) out.at[k] = e[size_t(k)][j].item<double>();
  return out;
}

}  // namespace ebm
