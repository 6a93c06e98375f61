#include "ebm/energy/spectral_norm.h"

#include <cmath>

namespace ebm {

SpectralNorm::SpectralNorm(torch::nn::Module& owner, const std::string& name, int64_t out) {
  TORCH_CHECK(out > 0, "SpectralNorm: the weight needs >= 1 output, got ", out);
  u_ = owner.register_buffer(name, torch::ones({out}) / std::sqrt(double(out)));
}

torch::Tensor SpectralNorm::normalise(const torch::Tensor& weight, bool update) {
  TORCH_CHECK(weight.dim() >= 2 && weight.size(0) == u_.size(0), "SpectralNorm: weight ",
              weight.sizes(), " does not have ", u_.size(0), " outputs");
  // (a matrix as it is: a reshape would add a node to every training graph)
  const auto w = weight.dim() == 2 ? weight : weight.reshape({weight.size(0), -1});
  const auto unit = torch::nn::functional::NormalizeFuncOptions().dim(0);
  torch::Tensor v;
  {
    torch::NoGradGuard ng;
    const auto wd = w.detach();
    v = torch::nn::functional::normalize(torch::mv(wd.t(), u_), unit);
    if (update) {
      u_.copy_(torch::nn::functional::normalize(torch::mv(wd, v), unit));
      v = torch::nn::functional::normalize(torch::mv(wd.t(), u_), unit);
    }
  }
  return weight / torch::dot(u_, torch::mv(w, v));
}

}  // namespace ebm
