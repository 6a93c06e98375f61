// Per-chain (per-row) helpers shared by the samplers: rows are chains.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace ebm::rows {

// [B] -> [B, 1, ...] broadcastable against `like` ([B, ...]).
inline torch::Tensor per_row(const torch::Tensor& v, const torch::Tensor& like) {
  std::vector<int64_t> shape(like.dim(), 1);
  shape[0] = like.size(0);
  return v.view(shape);
}

// Sum over everything but the chain dimension: [B, ...] -> [B].
inline torch::Tensor sum(const torch::Tensor& t) { return t.flatten(1).sum(1); }

// Chains whose entries are all finite: [B] bool.
inline torch::Tensor finite(const torch::Tensor& t) { return torch::isfinite(t).flatten(1).all(1); }

// Mean of the finite entries of per-chain energies [B]; NaN when none is.
inline double finite_mean(const torch::Tensor& e) {
  auto ok = torch::isfinite(e);
  auto n = ok.sum().item<int64_t>();
  return n ? torch::where(ok, e, torch::zeros_like(e)).sum().item<double>() / n : NAN;
}

// Chains whose energy or gradient has a non-finite entry cannot move: for
// this update their rows of g (and of *noise) become 0, so they stay where
// they are, and they count as divergent (DESIGN.md: not an exception).
struct Held {
  torch::Tensor rows;       // [B] bool; undefined when no chain is held
  int64_t count = 0;
  double energy_mean = 0;   // mean of the finite energies; NaN when none is
};
// e [B], g [B, ...]; g and *noise are replaced, never written in place.
Held hold_non_finite(const torch::Tensor& e, torch::Tensor& g, torch::Tensor* noise);

}  // namespace ebm::rows
