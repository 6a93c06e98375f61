// Cache-blocked AVX-512 passes over a float swish MLP (internal to the energy
// module): the input gradient for sampling, and denoising score matching's
// loss with its parameter gradient.
#pragma once

#include <cstdint>
#include <vector>

namespace ebm::detail {

// Rows (chains) a block holds: one per lane of two 16-float vectors. Callers
// that split the rows (across threads) split at multiples of it.
constexpr int64_t kBlockRows = 32;

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

// Denoising score matching on a float swish MLP with a small input (dim <= 8)
// in one blocked pass: for rows n of x, eps [batch, dim] and per-row s, r,
// xt = x + s eps, g = dE/dx(xt) + prior_inv xt, and the loss
//   L = (1 / batch) sum_n 1/2 |r_n g_n - (s_n / r_n) eps_n|^2,
// returned with its gradient with respect to every parameter, written to
// grad_w[i] [width[i], in_i], grad_b[i] [width[i]] and grad_w_out [width.back()]
// (the output bias has none). Each block of chains runs the forward, the
// backward to g, then the two reverse sweeps of the parameter gradient
// (one up the layers, one down), with the weight gradients added as rank-32
// updates. Needs AVX-512F+DQ and hidden widths but the last a multiple of 16:
// dsm_blocked_supported() checks both.
bool dsm_blocked_supported(const SwishMLPView& net);
double swish_mlp_dsm_blocked(const SwishMLPView& net, const float* x, const float* eps,
                             const float* s, const float* r, int64_t batch, float prior_inv,
                             const std::vector<float*>& grad_w, const std::vector<float*>& grad_b,
                             float* grad_w_out, std::vector<float>& workspace);

// Sliced score matching on the same networks (dsm_blocked_supported()) in
// one blocked pass: for rows n of x and projections v [batch, dim], with g =
// dE/dx + prior_inv x and H its Jacobian,
//   L = (1 / batch) sum_n 1/2 (v_n . g_n)^2 - v_n^T H_n v_n,
// returned with its gradient as swish_mlp_dsm_blocked returns it. v . g and
// v^T H v come from the forward 2-jet along v, and the parameter gradient
// from one reverse sweep of that jet: nine products a hidden layer past the
// first, and no input gradient at all.
double swish_mlp_ssm_blocked(const SwishMLPView& net, const float* x, const float* v,
                             int64_t batch, float prior_inv, const std::vector<float*>& grad_w,
                             const std::vector<float*>& grad_b, float* grad_w_out,
                             std::vector<float>& workspace);

}  // namespace ebm::detail
