// Independence Metropolis-Hastings moves between modes (Tierney 1994): a
// proposal q fixed in advance, here a kernel density of data rows, accepted
// with probability min(1, p(x') q(x) / (p(x) q(x'))). Each move leaves
// p = exp(-E) / Z invariant whatever q is, and moves a chain between
// separated modes in one step, which Langevin and HMC chains almost never
// do: persistent chains then hold each mode's share of the model's mass,
// which contrastive divergence needs to learn the modes' weights.
//
// q = (1 - broad) * (1/M) sum_i N(c_i, h_i^2 I) + broad * U(box): M data rows
// as centres, each with its own width h_i (the distance to its k-th nearest
// other centre), so narrow and wide modes are both proposed at their scale;
// the uniform part over the data's box keeps q > 0 wherever a chain can stray.
#pragma once

#include <torch/torch.h>

#include "ebm/energy/energy.h"

namespace ebm {

// The box of rows x [N, ...]: each coordinate's range, widened by `margin`
// of it (at least 1e-3) on either side; lo, hi [...] float32 on x's device.
std::pair<torch::Tensor, torch::Tensor> data_box(const torch::Tensor& x, double margin = 0.1);

struct DataProposalOptions {
  TORCH_ARG(int64_t, centers) = 512;    // data rows used as kernel centres (M)
  TORCH_ARG(int64_t, neighbours) = 8;   // k: h_i = distance to the k-th nearest centre
  TORCH_ARG(double, broad) = 0.1;       // weight of the uniform part in [0, 1)
};

class DataProposal {
 public:
  // data [N, D] (its first `centers` rows are the centres: pass shuffled
  // rows); box lo, hi [D].
  DataProposal(const DataProposalOptions& options, const torch::Tensor& data, const torch::Tensor& lo,
               const torch::Tensor& hi);
  torch::Tensor sample(int64_t n, at::Generator& gen) const;  // [n, D] float32
  torch::Tensor log_prob(const torch::Tensor& x) const;        // [n] float64
  // `moves` independence moves of every chain x [n, D] (updated in place);
  // returns the acceptance rate. `shape` [n, event...]: the energy's input
  // shape when its rows are not vectors (x holds them flattened).
  double jump(EnergyImpl& energy, torch::Tensor& x, int64_t moves, at::Generator& gen,
              c10::IntArrayRef shape = {}) const;
  const torch::Tensor& centers() const { return centers_; }
  const torch::Tensor& widths() const { return widths_; }

 private:
  DataProposalOptions options_;
  torch::Tensor centers_, widths_, sq_norms_;  // [M, D], [M], [M] float64, on the data's device
  torch::Tensor lo_, hi_;                      // [D] float64
  double log_box_volume_;
};

}  // namespace ebm
