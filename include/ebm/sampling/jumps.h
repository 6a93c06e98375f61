// Independence Metropolis-Hastings moves between modes (Tierney 1994): a
// proposal q fixed in advance, here a kernel density of data rows, accepted
// with probability min(1, p(x') q(x) / (p(x) q(x'))). Each move leaves
// p = exp(-E) / Z invariant whatever q is, and moves a chain between
// separated modes in one step, which Langevin and HMC chains almost never
// do: persistent chains then hold each mode's share of the model's mass,
// which contrastive divergence needs to learn the modes' weights.
//
// q = (1 - broad) * [(1 - g) (1/M) sum_i N(c_i, h_i^2 I) + g sum_c w_c N(m_c, S_c)]
//     + broad * U(box):
// M data rows as centres, each with its own width h_i (the distance to its
// k-th nearest other centre), so narrow and wide modes are both proposed at
// their scale; k-means clusters of the rows (share w_c, mean m_c, their
// covariance shrunk towards its trace and widened by 1.5 in variance: S_c),
// which keep proposing where the mass is in more dimensions, where the
// kernels' widths approach the whole data's spread and almost no proposal is
// accepted (0.4% on a 10-d mixture, 21% with the clusters); the uniform part
// over the data's box keeps q > 0 wherever a chain can stray. g =
// cluster_weight from 3 to 256 dimensions, 0 in 2 (the kernels alone carry
// the masses there) and above.
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
  TORCH_ARG(int64_t, clusters) = 8;     // k-means clusters of the rows (at most)
  TORCH_ARG(double, cluster_weight) = 0.5;  // g above 2 dimensions, in [0, 1)
};

// The proposal jumps use when sampling a model (ebm sample, inpainting's and
// denoising's chains, a run's sample plot): 256 centres, widths to the 3rd
// nearest centre.
inline DataProposalOptions sampling_jump_options() { return DataProposalOptions().centers(256).neighbours(3); }

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
  const torch::Tensor& cluster_means() const { return cluster_means_; }  // [C, D] (C = 0: no clusters)

 private:
  DataProposalOptions options_;
  torch::Tensor centers_, widths_, sq_norms_;  // [M, D], [M], [M] float64, on the data's device
  torch::Tensor lo_, hi_;                      // [D] float64
  double log_box_volume_;
  // The clusters: means [C, D], Cholesky factors of S_c [C, D, D], log w_c
  // [C], log w_c - 1/2 log det(2 pi S_c) [C]; g in use (0 without clusters).
  torch::Tensor cluster_means_, cluster_chol_, cluster_log_w_, cluster_log_norm_;
  double cluster_weight_ = 0;
  void fit_clusters(const torch::Tensor& rows);
  torch::Tensor cluster_log_prob(const torch::Tensor& x) const;  // [n] float64
};

}  // namespace ebm
