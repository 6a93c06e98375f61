#include "ebm/sampling/diagnostics.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <limits>

#include "ebm/core/error.h"

namespace ebm {
namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// [chains, draws, D] as a contiguous float64 CPU tensor, with the shape checks.
torch::Tensor prepare(const torch::Tensor& draws) {
  EBM_CHECK_USAGE(draws.defined() && draws.dim() == 3,
                  "MCMC diagnostics expect draws [chains, draws, D], got ",
                  draws.defined() ? draws.sizes() : c10::IntArrayRef{});
  EBM_CHECK_USAGE(draws.size(0) >= 1, "MCMC diagnostics need at least one chain");
  EBM_CHECK_USAGE(draws.size(1) >= 4, "MCMC diagnostics need at least 4 draws per chain, got ",
                  draws.size(1));
  return draws.detach().to(torch::kCPU, torch::kDouble).contiguous();
}

// Dimensions where every draw is equal or some draw is non-finite: [D] bool.
torch::Tensor degenerate(const torch::Tensor& x) {
  auto flat = x.flatten(0, 1);  // [S, D]
  return (flat.amax(0) == flat.amin(0)) | ~torch::isfinite(flat).all(0);
}

// Each chain cut in two halves (the middle draw of an odd chain dropped):
// [C, N, D] -> [2C, N/2, D]. Halves expose chains that drift.
torch::Tensor split_chains(const torch::Tensor& x) {
  const int64_t n = x.size(1), half = n / 2;
  return torch::cat({x.narrow(1, 0, half), x.narrow(1, n - half, half)}, 0);
}

// Quantile with linear interpolation between order statistics (R's type 7)
// of pooled sorted draws [D, S].
torch::Tensor quantile_of_sorted(const torch::Tensor& sorted, double q) {
  const int64_t s = sorted.size(1);
  const double h = (s - 1) * q;
  const int64_t lo = static_cast<int64_t>(std::floor(h)), hi = std::min(lo + 1, s - 1);
  auto a = sorted.select(1, lo), b = sorted.select(1, hi);
  return a + (h - lo) * (b - a);  // [D]
}

// R-hat sqrt(((n-1)/n W + B/n) / W) of C chains of n draws from their
// means [C, D] and mean within-chain variance W [D].
torch::Tensor rhat_of(const torch::Tensor& means, const torch::Tensor& within, double n) {
  auto between_n = means.size(0) > 1 ? means.var(0) : torch::zeros_like(within);  // B / n
  return torch::sqrt(((n - 1) / n * within + between_n) / within);
}

// Split R-hat of already split (and normalised) chains [C, N, D] -> [D].
torch::Tensor rhat_basic(const torch::Tensor& x) { return rhat_of(x.mean(1), x.var(1).mean(0), double(x.size(1))); }

// Geyer's initial monotone sequence on the combined autocorrelations rho
// [N] of one dimension; returns tau (Stan's form) before the cap.
double geyer_tau(const double* rho, int64_t n) {
  // (under 6 draws a chain half has no pair of autocorrelations to sum: tau
  // came out 0 and the ESS as total x log10(total), 1,796 of 704 draws that
  // hardly moved; it is not estimable)
  if (n < 6) return std::numeric_limits<double>::quiet_NaN();
  std::vector<double> r(n, 0.0);
  r[0] = 1.0;
  double even = 1.0, odd = n > 1 ? rho[1] : 0.0;
  if (n > 1) r[1] = odd;
  int64_t t = 0;
  // Initial positive sequence: keep pairs while their sum is positive.
  while (t < n - 5 && std::isfinite(even + odd) && even + odd > 0) {
    t += 2;
    even = rho[t];
    odd = rho[t + 1];
    if (even + odd >= 0) {
      r[t] = even;
      r[t + 1] = odd;
    }
  }
  const int64_t max_t = t;
  // The first dropped even lag still carries information when positive
  // (Stan's improved estimate; it lowers the variance for antithetic chains).
  if (even > 0) r[max_t] = even;
  // Initial monotone sequence: no pair may exceed the pair before it.
  for (int64_t k = 2; k <= max_t - 2; k += 2) {
    if (r[k] + r[k + 1] > r[k - 2] + r[k - 1]) {
      r[k] = r[k + 1] = 0.5 * (r[k - 2] + r[k - 1]);
    }
  }
  double sum = 0.0;
  for (int64_t k = 0; k < max_t; ++k) sum += r[k];
  return -1.0 + 2.0 * sum + r[max_t];
}

// ESS of (already split) chains [C, N, D] -> [D], without the degenerate mask.
torch::Tensor ess_basic(const torch::Tensor& x) {
  const int64_t c = x.size(0), n = x.size(1), d = x.size(2);
  auto xt = x.permute({2, 0, 1});                       // [D, C, N]
  auto chain_mean = xt.mean(-1);                        // [D, C]
  auto centred = xt - chain_mean.unsqueeze(-1);
  // Autocovariance by FFT, zero-padded to avoid circular wrap-around.
  int64_t nfft = 1;
  while (nfft < 2 * n) nfft *= 2;
  auto f = torch::fft::rfft(centred, nfft, -1);
  auto power = torch::real(f * torch::conj(f));
  auto acov = torch::fft::irfft(power, nfft, -1).narrow(-1, 0, n) / double(n);  // [D, C, N]
  auto within = (acov.select(-1, 0) * (double(n) / (n - 1))).mean(-1);          // W [D]
  auto var_plus = within * (double(n - 1) / n);
  if (c > 1) var_plus = var_plus + chain_mean.var(-1);
  auto rho = (1.0 - (within.unsqueeze(-1) - acov.mean(1)) / var_plus.unsqueeze(-1)).contiguous();
  const double total = double(c) * n;
  const double min_tau = 1.0 / std::log10(total);
  auto out = torch::empty({d}, torch::kDouble);
  auto* o = out.data_ptr<double>();
  const auto* r = rho.data_ptr<double>();
  var_plus = var_plus.contiguous();
  const auto* vp = var_plus.data_ptr<double>();
  for (int64_t j = 0; j < d; ++j) {
    const double tau = vp[j] > 0 ? geyer_tau(r + j * n, n) : kNaN;  // no variance: no ESS
    o[j] = std::isfinite(tau) ? total / std::max(tau, min_tau) : kNaN;
  }
  return out;
}

// Draws [C, N, D] pooled over chains and sorted per dimension: values [D, S]
// and their positions in the pooled order.
struct Sorted {
  explicit Sorted(const torch::Tensor& x) {
    auto sorted = x.flatten(0, 1).t().contiguous().sort(-1);
    values = std::get<0>(sorted);
    order = std::get<1>(sorted).contiguous();
  }
  torch::Tensor values, order;
};

// Normal scores of pooled average ranks of x [C, N, D], given its sort.
torch::Tensor rank_normalize_sorted(const torch::Tensor& x, const Sorted& sorted) {
  const int64_t d = x.size(2), s = x.size(0) * x.size(1);
  auto rank = torch::empty({d, s}, torch::kDouble);
  const auto* v = sorted.values.data_ptr<double>();
  const auto* pos = sorted.order.data_ptr<int64_t>();
  auto* r = rank.data_ptr<double>();
  // One pass over each sorted row: a run of ties shares the mean of its ranks.
  at::parallel_for(0, d, 1, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const double* vj = v + j * s;
      const int64_t* pj = pos + j * s;
      double* rj = r + j * s;
      for (int64_t i = 0; i < s;) {
        int64_t k = i + 1;
        while (k < s && vj[k] == vj[i]) ++k;
        const double mean_rank = 0.5 * double(i + 1 + k);  // ranks i+1 .. k
        for (int64_t m = i; m < k; ++m) rj[pj[m]] = mean_rank;
        i = k;
      }
    }
  });
  auto z = torch::special::ndtri((rank - 0.375) / (s + 0.25));  // Blom's offset
  return z.t().reshape(x.sizes()).contiguous();
}

torch::Tensor rank_normalize_prepared(const torch::Tensor& x) {
  return rank_normalize_sorted(x, Sorted(x));
}

// Everything is computed on the split chains (for an even number of draws
// the pooled draws, hence ranks and quantiles, are those of the input).
struct Split {
  explicit Split(const torch::Tensor& draws) {
    auto x = prepare(draws);
    bad = degenerate(x);
    split = split_chains(x);
  }
  torch::Tensor split, bad;
};

torch::Tensor ess_tail_of(const Split& sp, const Sorted& sorted) {
  auto lo = ess_basic((sp.split <= quantile_of_sorted(sorted.values, 0.05)).to(torch::kDouble));
  auto hi = ess_basic((sp.split <= quantile_of_sorted(sorted.values, 0.95)).to(torch::kDouble));
  // An indicator that never changes (a few distinct values) has no ESS: NaN.
  return torch::minimum(lo, hi).masked_fill_(torch::isnan(lo) | torch::isnan(hi), kNaN);
}

torch::Tensor rhat_tail_of(const Split& sp, const Sorted& sorted) {
  auto folded = (sp.split - quantile_of_sorted(sorted.values, 0.5)).abs();
  return rhat_basic(rank_normalize_prepared(folded));
}

torch::Tensor masked(torch::Tensor v, const torch::Tensor& bad) {
  return v.masked_fill_(bad, kNaN);
}
}  // namespace

torch::Tensor rank_normalize(const torch::Tensor& draws) {
  return rank_normalize_prepared(prepare(draws));
}

torch::Tensor ess(const torch::Tensor& draws) {
  Split sp(draws);
  return masked(ess_basic(sp.split), sp.bad);
}

torch::Tensor ess_bulk(const torch::Tensor& draws) {
  Split sp(draws);
  return masked(ess_basic(rank_normalize_prepared(sp.split)), sp.bad);
}

torch::Tensor ess_tail(const torch::Tensor& draws) {
  Split sp(draws);
  return masked(ess_tail_of(sp, Sorted(sp.split)), sp.bad);
}

torch::Tensor rhat_bulk(const torch::Tensor& draws) {
  Split sp(draws);
  return masked(rhat_basic(rank_normalize_prepared(sp.split)), sp.bad);
}

torch::Tensor rhat_tail(const torch::Tensor& draws) {
  Split sp(draws);
  return masked(rhat_tail_of(sp, Sorted(sp.split)), sp.bad);
}

torch::Tensor rhat(const torch::Tensor& draws) {
  Split sp(draws);
  Sorted sorted(sp.split);
  auto bulk = rhat_basic(rank_normalize_sorted(sp.split, sorted));
  return masked(torch::maximum(bulk, rhat_tail_of(sp, sorted)), sp.bad);
}

std::vector<SummaryRow> summarize(const torch::Tensor& draws, int64_t max_dims) {
  auto x = prepare(draws);
  const int64_t d = max_dims > 0 ? std::min(max_dims, x.size(2)) : x.size(2);
  Split sp(x.narrow(2, 0, d));
  Sorted sorted(sp.split);  // one sort serves ranks, quantiles and the median
  auto z = rank_normalize_sorted(sp.split, sorted);
  auto flat = x.narrow(2, 0, d).flatten(0, 1);
  auto mean = flat.mean(0), sd = flat.std(0);
  auto e = masked(ess_basic(sp.split), sp.bad);
  auto eb = masked(ess_basic(z), sp.bad);
  auto et = masked(ess_tail_of(sp, sorted), sp.bad);
  auto r = masked(torch::maximum(rhat_basic(z), rhat_tail_of(sp, sorted)), sp.bad);
  auto mcse = sd / e.sqrt();
  std::vector<SummaryRow> rows;
  rows.reserve(d);
  for (int64_t j = 0; j < d; ++j) {
    rows.push_back({mean[j].item<double>(), sd[j].item<double>(), mcse[j].item<double>(),
                    eb[j].item<double>(), et[j].item<double>(), r[j].item<double>()});
  }
  return rows;
}

DrawRecorder::DrawRecorder(int64_t chains, int64_t dim, int64_t n_draws, int64_t thin)
    : thin_(thin) {
  EBM_CHECK_USAGE(chains >= 1 && dim >= 1 && n_draws >= 1,
                  "DrawRecorder needs chains, dim and n_draws >= 1, got ", chains, ", ", dim,
                  ", ", n_draws);
  EBM_CHECK_USAGE(thin >= 1, "DrawRecorder thin must be >= 1, got ", thin);
  buffer_ = torch::empty({chains, n_draws, dim}, torch::kDouble);
}

void DrawRecorder::record(const torch::Tensor& x) {
  const int64_t chains = buffer_.size(0), dim = buffer_.size(2);
  EBM_CHECK_USAGE(x.dim() >= 1 && x.size(0) == chains && x.numel() == chains * dim,
                  "DrawRecorder expects states [", chains, ", ", dim, "], got ", x.sizes());
  if (++calls_ % thin_ != 0) return;
  EBM_CHECK_USAGE(kept_ < capacity(), "DrawRecorder is full: ", capacity(),
                  " draws kept (thin ", thin_, ")");
  buffer_.select(1, kept_).copy_(x.detach().reshape({chains, dim}));
  ++kept_;
}

torch::Tensor DrawRecorder::draws() const { return buffer_.narrow(1, 0, kept_); }

SplitMoments::SplitMoments(int64_t chains, int64_t dim, int64_t n_draws) : half_(n_draws / 2), n_(n_draws) {
  EBM_CHECK_USAGE(chains >= 1 && dim >= 1 && n_draws >= 4,
                  "SplitMoments needs chains and dim >= 1 and n_draws >= 4, got ", chains, ", ", dim, ", ", n_draws);
  chains_ = chains;
  dim_ = dim;
}

void SplitMoments::record(const torch::Tensor& x) {
  const int64_t chains = chains_, dim = dim_;
  EBM_CHECK_USAGE(x.dim() >= 1 && x.size(0) == chains && x.numel() == chains * dim,
                  "SplitMoments expects states [", chains, ", ", dim, "], got ", x.sizes());
  EBM_CHECK_USAGE(calls_ < n_, "SplitMoments is full: ", n_, " draws recorded");
  const int64_t k = calls_++;
  // (the sums stay on the chains' device: one copy to the CPU, in halves())
  auto v = x.detach().reshape({chains, dim}).to(torch::kDouble);
  if (k == 0) {
    shift_ = v.clone();
    sums_ = torch::zeros({chains, 2, 2, dim}, v.options());
  }
  // (an odd count's middle draw, index half_, belongs to neither half)
  const int64_t h = k < half_ ? 0 : k >= n_ - half_ ? 1 : -1;
  if (h < 0) return;
  auto d = v - shift_;
  sums_.select(1, h).select(1, 0).add_(d);
  sums_.select(1, h).select(1, 1).addcmul_(d, d);
}

torch::Tensor SplitMoments::halves() const {
  EBM_CHECK_USAGE(calls_ == n_, "SplitMoments: ", calls_, " of ", n_, " draws recorded");
  const double m = double(half_);
  const auto sums = sums_.cpu();
  auto s1 = sums.select(2, 0), s2 = sums.select(2, 1);             // [chains, 2, D]
  auto mean = s1 / m;
  auto var = ((s2 - s1 * mean) / (m - 1)).clamp_min(0);             // (rounding below 0)
  return torch::stack({mean + shift_.cpu().unsqueeze(1), var}, 2);  // [chains, 2, 2, D]
}

torch::Tensor split_rhat(const torch::Tensor& halves, int64_t half_length) {
  EBM_CHECK_USAGE(halves.dim() == 4 && halves.size(1) == 2 && halves.size(2) == 2,
                  "split_rhat expects [chains, 2, 2, D], got ", halves.sizes());
  auto h = halves.to(torch::kCPU, torch::kDouble).flatten(0, 1);  // [2 chains, 2, D]
  return rhat_of(h.select(1, 0), h.select(1, 1).mean(0), double(half_length));
}

}  // namespace ebm
