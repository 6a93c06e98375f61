// Spectral normalisation (Miyato et al. 2018): a weight used as
// W / sigma_max(W), sigma_max by power iteration on a persistent vector u:
//   v = W^T u / |W^T u|,  u <- W v / |W v|,  sigma = u^T W v.
// Any network can use it, on any weight [out, ...]: a Linear's [out, in] or a
// convolution's [out, in, kh, kw], seen as the matrix [out, -1].
#pragma once

#include <torch/torch.h>

#include <string>

namespace ebm {

class SpectralNorm {
 public:
  // Registers u [out] = 1 / sqrt(out) as buffer `name` of `owner` (the module
  // holding the weight), so that u is saved, loaded and moved with it.
  SpectralNorm(torch::nn::Module& owner, const std::string& name, int64_t out);
  // W / sigma, differentiable w.r.t. W (u and v held fixed, as in the paper).
  // update: first one power-iteration step on u (a training forward); else
  // sigma comes from u as it stands.
  torch::Tensor normalise(const torch::Tensor& weight, bool update);
  const torch::Tensor& u() const { return u_; }  // [out]

 private:
  torch::Tensor u_;  // the owner's buffer (its tensor: to() and load() keep it)
};

}  // namespace ebm
