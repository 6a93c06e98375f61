// A Gaussian fitted to data rows through their leading principal components:
// the rows' mean plus `basis` z, z ~ N(0, I_k), where basis [D, k] holds the
// top k eigenvectors of the rows' covariance scaled by the square roots of
// their eigenvalues. The variance beyond the k components is left out, so the
// draws of an image set are smooth pictures in the data's colours and layout
// (and not independent per-pixel speckle). Chains that start from it
// (buffer.init = "fit"; informative initialisation, Yang & Ji, JEM++ 2021)
// begin near the data's second moments and have only the detail to find.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace ebm {

struct LowRankGaussian {
  torch::Tensor mean;   // [event...] float32
  torch::Tensor basis;  // [D, k] float32, D = mean.numel()

  bool defined() const { return mean.defined(); }
  int64_t components() const { return basis.defined() ? basis.size(1) : 0; }

  // Fits rows x [N, event...] (N >= 2): the mean over all rows; the
  // components from at most max_rows evenly spaced rows (the covariance's
  // eigendecomposition when D <= rows, the Gram matrix's otherwise), at most
  // max_components of them. Deterministic. kBadData on fewer than two rows
  // or non-finite values.
  static LowRankGaussian fit(const torch::Tensor& x, int64_t max_components = 256, int64_t max_rows = 2048);
  // n draws [n, event...] on the device of `mean`; `gen` must be that device's.
  torch::Tensor draw(int64_t n, at::Generator& gen) const;
  LowRankGaussian to(const c10::Device& device) const;
};

}  // namespace ebm
