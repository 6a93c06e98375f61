// Evenly spaced rows: a bounded sample for fits whose cost grows with the
// rows (covariances, energies along rays), the same rows on every call.
#pragma once

#include <torch/torch.h>

namespace ebm {

// Indices of m evenly spaced rows of n (first and last included), or of all
// n when m >= n: int64 [min(n, m)].
inline torch::Tensor evenly_spaced(int64_t n, int64_t m) {
  return torch::linspace(0, double(n - 1), std::min(n, m), torch::kDouble).round().to(torch::kLong);
}

// x itself when it has at most m rows, else m evenly spaced ones.
inline torch::Tensor evenly_spaced_rows(const torch::Tensor& x, int64_t m) {
  return x.size(0) <= m ? x : x.index_select(0, evenly_spaced(x.size(0), m).to(x.device()));
}

}  // namespace ebm
