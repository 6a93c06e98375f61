// What the MLP energy's translation units share (internal to src/energy):
// the activation, the ATen reference form of the network, and the pieces the
// analytic passes and the blocked losses have in common.
#pragma once

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "mlp_blocked.h"

namespace ebm::detail {

constexpr double kLeakySlope = 0.2;

enum class Act { kSwish, kSoftplus, kElu, kLeaky };

// An activation name of MLPEnergyOptions (a config error otherwise).
Act parse_act(const std::string& name);
torch::Tensor apply_act(Act act, const torch::Tensor& z);

// Input dimensions up to this use hand-written loops for the first layer and
// the final input gradient: a GEMM with K or N = 2 is mostly overhead.
constexpr int64_t kSmallDim = 4;

// g[r, j] = sum_c back[r, c] deriv[r, c] wt[j, c]  (back may be null = ones);
// prod, when given, receives back * deriv. (float, row-major; wt = W_0^T [d, h])
void small_input_grad(const float* back, const float* deriv, const float* wt, float* g,
                      int64_t rows, int64_t d, int64_t h, float* prod = nullptr);

// E(x) of the network part (no base term) with autograd ops, from params =
// W_0, b_0, ..., W_n, b_n (the weights as used).
torch::Tensor reference_energy(const torch::Tensor& x, torch::TensorList params, Act act);

// A backward asked for a graph (create_graph): the gradient of y_of() seeded
// with gy, itself differentiable (unless create_graph is false), w.r.t. the
// params that require one, into out[offset + i]; y_of() is not evaluated
// when none does.
template <class F>
void graph_grads(F&& y_of, const torch::Tensor& gy, const std::vector<torch::Tensor>& params,
                 torch::autograd::variable_list& out, size_t offset, bool create_graph = true) {
  std::vector<torch::Tensor> wrt;
  std::vector<size_t> at;
  for (size_t i = 0; i < params.size(); ++i)
    if (params[i].requires_grad()) wrt.push_back(params[i]), at.push_back(i);
  if (wrt.empty()) return;
  auto d = torch::autograd::grad({y_of()}, wrt, {gy}, /*retain_graph=*/create_graph,
                                 create_graph, /*allow_unused=*/true);
  for (size_t k = 0; k < at.size(); ++k) out[offset + at[k]] = d[k];
}

// The blocked sweep's view of float swish parameters W_0, b_0, ..., W_n, b_n;
// false when it cannot read them in place.
bool blocked_view(torch::TensorList params, int64_t dim, SwishMLPView& view);

// The blocked passes' parallel split: rows 0..n in at most get_num_threads()
// chunks of whole 32-row blocks, at least two blocks a chunk. Returns the
// number of chunks and the rows of each (the last may be shorter).
std::pair<int64_t, int64_t> row_chunks(int64_t n);

// f(chunk) for each chunk, in parallel when there are several.
template <class F>
void for_chunks(int64_t chunks, F&& f) {
  if (chunks == 1) return f(0);
  at::parallel_for(0, chunks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) f(c);
  });
}

}  // namespace ebm::detail
