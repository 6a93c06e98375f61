// The swish MLP's input gradient for sampling, as one cache-blocked AVX-512
// sweep (internal to the energy module).
#pragma once

#include <cstdint>
#include <vector>

namespace ebm::detail {

// A float swish MLP as raw row-major arrays: hidden layer i has weights
// w[i] [width[i], width[i-1]] (width[-1] = dim) and bias b[i] [width[i]];
// the output layer is E = b_out + w_out . h_last.
struct SwishMLPView {
  int64_t dim = 0;
  std::vector<int64_t> width;
  std::vector<const float*> w, b;
  const float* w_out = nullptr;
  float b_out = 0.0f;
};

// g [batch, dim] <- dE/dx and, when e is not null, e [batch] <- E(x), for x
// [batch, dim] (all row-major). Chains go in blocks of 32, held chain-minor
// (a chain per vector lane), and each block passes through every layer, the
// forward and the backward, while its activations stay in the L1/L2 caches:
// each layer is one register-blocked product with the activation (or the
// derivative's product) applied to the accumulators before they are stored,
// and no weight matrix is copied or transposed. Needs AVX-512F+DQ
// (cpu_has_avx512()). workspace is resized as needed and reused.
void swish_mlp_grad_blocked(const SwishMLPView& net, const float* x, int64_t batch, float* g,
                            float* e, std::vector<float>& workspace);

}  // namespace ebm::detail
