// MCMC convergence diagnostics on stored draws [chains, draws, D] (any
// floating dtype, any device; computed in float64 on the CPU), one value per
// dimension D.
//
// Effective sample size (Geyer 1992; Stan reference manual, "Effective sample
// size"): each chain is split in half (the middle draw of an odd-length chain
// is dropped), autocovariances are combined across the 2M halves as
//   rho_t = 1 - (W - mean_chains(acov_t)) / var+,
//   var+ = (n-1)/n W + B/n,
// summed in pairs P_k = rho_2k + rho_2k+1 up to the first negative pair
// (initial positive sequence), pairs made non-increasing (initial monotone
// sequence), tau = -1 + 2 sum_{t < T} rho_t + rho_T (Stan's form, with the
// first discarded even lag added when it is positive), and
//   ESS = S / max(tau, 1 / log10(S)),  S = total draws used,
// i.e. capped at S log10(S) as Stan caps it (antithetic chains can exceed S).
//
// R-hat (Vehtari, Gelman, Simpson, Carpenter, Buerkner 2021, "Rank-
// normalization, folding, and localization"): draws are rank-normalised over
// all chains (average ranks for ties, normal scores Phi^-1((r - 3/8) / (S + 1/4)),
// Blom's offset), split R-hat sqrt(((n-1)/n W + B/n) / W) is computed on the
// rank-normalised split chains (bulk) and on the rank-normalised folded draws
// |x - median(x)| (tail), and R-hat = max(bulk, tail).
//
// Ranks, quantiles and the median are those of the pooled split draws (the
// input's own draws unless chains have an odd length). Cost: one FFT pass per
// ESS and one sort per rank normalisation; summarize() shares one sort (about
// 1.5 s for 64 chains x 2000 draws x 10 dims on one busy core).
//
// Degenerate input: a dimension whose draws are all equal (zero variance) gives
// NaN for ess, ess_bulk, ess_tail and rhat, never an exception; chains that are
// each constant at different values give rhat = +inf. Fewer than 4 draws per
// chain, or a tensor that is not [chains, draws, D], is a usage error
// (ExitCode::kUsage). Non-finite draws give NaN in that dimension.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace ebm {

// Basic ESS of the draws themselves (the one that belongs with the MCSE of the
// mean). [chains, draws, D] -> [D] float64.
torch::Tensor ess(const torch::Tensor& draws);
// ESS of the rank-normalised draws: efficiency in the bulk of the distribution,
// robust to heavy tails (Vehtari et al. 2021).
torch::Tensor ess_bulk(const torch::Tensor& draws);
// min over q in {0.05, 0.95} of the ESS of the indicator I(x <= quantile_q):
// efficiency for the tail quantiles (Vehtari et al. 2021).
torch::Tensor ess_tail(const torch::Tensor& draws);
// Rank-normalised split R-hat = max(bulk R-hat, folded tail R-hat).
torch::Tensor rhat(const torch::Tensor& draws);
// The two components separately (the classic split R-hat of raw draws is
// split_rhat below, for draws that are not kept).
torch::Tensor rhat_bulk(const torch::Tensor& draws);
torch::Tensor rhat_tail(const torch::Tensor& draws);

// Normal scores of the pooled ranks (average ranks for ties, Blom's offset),
// same shape as draws; used by ess_bulk and rhat.
torch::Tensor rank_normalize(const torch::Tensor& draws);

// One row of `ebm sample`'s summary table. sd is the pooled sample standard
// deviation; mcse = sd / sqrt(ess) is the Monte Carlo standard error of the
// mean, using the basic ess (not the rank-based ones).
struct SummaryRow {
  double mean, sd, mcse, ess_bulk, ess_tail, rhat;
};
// Rows for the first min(D, max_dims) dimensions (max_dims <= 0: all).
std::vector<SummaryRow> summarize(const torch::Tensor& draws, int64_t max_dims);

// Accumulates chain states for the diagnostics: record() is called after each
// transition with x [chains, ...] (flattened to D); every `thin`-th call
// (the thin-th, 2 thin-th, ...) is stored in a preallocated float64 CPU
// tensor [chains, n_draws, D]. Recording more than n_draws kept states is a
// usage error.
class DrawRecorder {
 public:
  DrawRecorder(int64_t chains, int64_t dim, int64_t n_draws, int64_t thin = 1);
  void record(const torch::Tensor& x);
  // The kept draws so far: [chains, size(), D] (a view of the buffer).
  torch::Tensor draws() const;
  int64_t size() const { return kept_; }
  int64_t capacity() const { return buffer_.size(1); }

 private:
  torch::Tensor buffer_;  // [chains, n_draws, D] float64
  int64_t thin_;
  int64_t calls_ = 0;
  int64_t kept_ = 0;
};

// Split R-hat over every dimension without keeping the draws: each chain's
// n_draws states (the middle one of an odd count dropped, as above) go into
// float64 running sums of its two halves, shifted by the chain's first state
// (no cancellation for values far from zero). halves() is [chains, 2, 2, D]:
// per half its mean and sample variance; chains of several recorders merge by
// concatenating halves() along dim 0. split_rhat() of it is the classic split
// R-hat sqrt(((n-1)/n W + B/n) / W) on the raw draws (not rank-normalised:
// `ebm sample` uses it where it keeps no draws, beyond the dimensions whose
// draws it keeps); NaN or inf where W is 0, as rhat() gives.
class SplitMoments {
 public:
  SplitMoments(int64_t chains, int64_t dim, int64_t n_draws);
  void record(const torch::Tensor& x);  // x [chains, ...] of D values per chain
  torch::Tensor halves() const;         // [chains, 2, 2, D] float64: (mean, variance) per half
  int64_t size() const { return calls_; }
  int64_t half_length() const { return half_; }

 private:
  torch::Tensor shift_, sums_;  // [chains, D]; [chains, 2 halves, 2 (sum, sum of squares), D]
  int64_t chains_, dim_, half_, n_, calls_ = 0;
};
// [chains, 2, 2, D] of halves of half_length draws each -> [D]
torch::Tensor split_rhat(const torch::Tensor& halves, int64_t half_length);

}  // namespace ebm
