#include "ebm/sampling/jumps.h"

#include <cmath>

#include "ebm/core/error.h"

namespace ebm {
namespace {
constexpr double kLog2Pi = 1.8378770664093453;
}

std::pair<torch::Tensor, torch::Tensor> data_box(const torch::Tensor& x, double margin) {
  auto d = x.detach().to(torch::kFloat);
  auto lo = std::get<0>(d.min(0)), hi = std::get<0>(d.max(0));
  auto ext = (hi - lo).clamp_min(1e-3);
  return {lo - margin * ext, hi + margin * ext};
}

DataProposal::DataProposal(const DataProposalOptions& o, const torch::Tensor& data, const torch::Tensor& lo,
                           const torch::Tensor& hi)
    : options_(o) {
  EBM_CHECK_CONFIG(o.centers() >= 2, "objective.jump_centers must be >= 2, got ", o.centers());
  EBM_CHECK_CONFIG(o.neighbours() >= 1 && o.neighbours() < o.centers(),
                   "objective.jump_neighbours must be in 1 .. objective.jump_centers - 1 = ", o.centers() - 1,
                   ", got ", o.neighbours());
  EBM_CHECK_CONFIG(o.broad() >= 0 && o.broad() < 1, "objective.jump_broad must be in [0, 1), got ",
                   o.broad());
  EBM_CHECK_DATA(data.dim() == 2 && data.size(0) >= 2, "mode jumps need rows of vectors [N, D], got ",
                 data.sizes());
  const int64_t m = std::min<int64_t>(o.centers(), data.size(0));
  centers_ = data.narrow(0, 0, m).to(torch::kDouble).contiguous();
  lo_ = lo.to(data.device(), torch::kDouble).reshape({-1});
  hi_ = hi.to(data.device(), torch::kDouble).reshape({-1});
  TORCH_CHECK(lo_.numel() == data.size(1) && hi_.numel() == data.size(1), "DataProposal: box of ", lo_.numel(),
              " coordinates for rows of ", data.size(1));
  log_box_volume_ = (hi_ - lo_).log().sum().item<double>();
  sq_norms_ = (centers_ * centers_).sum(1);
  // Each centre's width: distance to its k-th nearest other centre (floored
  // at 1e-3 of the data's spread, so repeated rows keep a width).
  auto d2 = (sq_norms_.unsqueeze(1) + sq_norms_.unsqueeze(0) - 2 * centers_.matmul(centers_.t())).clamp_min(0);
  d2.fill_diagonal_(INFINITY);
  const int64_t k = std::min<int64_t>(o.neighbours(), m - 1);
  auto kth = std::get<0>(d2.topk(k, 1, /*largest=*/false)).select(1, k - 1).sqrt();
  const double floor = 1e-3 * std::max(centers_.std(0).mean().item<double>(), 1e-12);
  widths_ = kth.clamp_min(floor).contiguous();
  EBM_CHECK_CONFIG(o.clusters() >= 1, "jump clusters must be >= 1, got ", o.clusters());
  EBM_CHECK_CONFIG(o.cluster_weight() >= 0 && o.cluster_weight() < 1, "jump cluster weight must be in [0, 1), got ",
                   o.cluster_weight());
  if (data.size(1) > 2 && o.cluster_weight() > 0 && data.size(1) <= 256)
    fit_clusters(data.narrow(0, 0, std::min<int64_t>(data.size(0), 4096)).to(torch::kDouble));
}

void DataProposal::fit_clusters(const torch::Tensor& rows) {
  const int64_t n = rows.size(0), d = rows.size(1);
  const int64_t k = std::min<int64_t>(options_.clusters(), std::max<int64_t>(1, n / (2 * d)));
  // Lloyd's k-means from the first k rows (the rows come shuffled).
  auto means = rows.narrow(0, 0, k).clone();
  auto sq = (rows * rows).sum(1, true);
  torch::Tensor assign;
  for (int it = 0; it < 30; ++it) {
    auto d2 = sq + (means * means).sum(1).unsqueeze(0) - 2 * rows.matmul(means.t());
    auto next = d2.argmin(1);
    if (assign.defined() && torch::equal(next, assign)) break;
    assign = next;
    for (int64_t c = 0; c < k; ++c) {
      auto in = rows.index({assign == c});
      if (in.size(0) > 0) means[c] = in.mean(0);
    }
  }
  std::vector<torch::Tensor> mu, chol;
  std::vector<double> log_w, log_det;  // log share; 1/2 log det(2 pi S_c)
  const double spread = std::max(rows.var(0).mean().item<double>(), 1e-12);
  for (int64_t c = 0; c < k; ++c) {
    auto in = rows.index({assign == c});
    const int64_t m = in.size(0);
    if (m < 2) continue;  // (a lone row: the kernels propose it)
    auto xc = in - in.mean(0);
    auto s = xc.t().mm(xc) / double(m - 1);
    // (shrunk towards its mean variance by d / (m + d): few rows in many
    // dimensions give a singular estimate; then widened for heavier tails
    // than the cluster's own, which an independence proposal needs)
    const double a = double(m) / double(m + d), iso = s.diagonal().mean().item<double>();
    s = 1.5 * (a * s + (1 - a) * iso * torch::eye(d, torch::kDouble)) + 1e-6 * spread * torch::eye(d, torch::kDouble);
    auto l = torch::linalg_cholesky(s);
    mu.push_back(in.mean(0));
    chol.push_back(l);
    log_w.push_back(std::log(double(m)));
    log_det.push_back(0.5 * double(d) * kLog2Pi + l.diagonal().log().sum().item<double>());
  }
  if (mu.empty()) return;
  const auto dev = centers_.device();
  cluster_means_ = torch::stack(mu).to(dev);
  cluster_chol_ = torch::stack(chol).to(dev);
  auto w = torch::tensor(log_w, torch::kDouble);
  cluster_log_w_ = (w - torch::logsumexp(w, 0)).to(dev);  // (the kept clusters' shares)
  cluster_log_norm_ = cluster_log_w_ - torch::tensor(log_det, torch::kDouble).to(dev);
  cluster_weight_ = options_.cluster_weight();
}

torch::Tensor DataProposal::cluster_log_prob(const torch::Tensor& x) const {
  const int64_t k = cluster_means_.size(0);
  std::vector<torch::Tensor> parts;
  for (int64_t c = 0; c < k; ++c) {
    auto diff = (x - cluster_means_[c]).t();  // [D, n]
    auto z = torch::linalg_solve_triangular(cluster_chol_[c], diff, /*upper=*/false);
    parts.push_back(cluster_log_norm_[c] - 0.5 * (z * z).sum(0));
  }
  return torch::logsumexp(torch::stack(parts, 1), 1);
}

torch::Tensor DataProposal::sample(int64_t n, at::Generator& gen) const {
  const auto opts = centers_.options();
  const int64_t m = centers_.size(0), d = centers_.size(1);
  auto pick = at::randint(m, {n}, gen, opts.dtype(torch::kLong));
  auto x = centers_.index_select(0, pick) +
           widths_.index_select(0, pick).unsqueeze(1) * at::normal(0.0, 1.0, {n, d}, gen, opts);
  if (cluster_weight_ > 0) {
    // (the cluster's share of the rows, then its Gaussian)
    auto c = at::multinomial(cluster_log_w_.exp(), n, /*replacement=*/true, gen);
    auto z = at::normal(0.0, 1.0, {n, d, 1}, gen, opts);
    auto g = cluster_means_.index_select(0, c) + cluster_chol_.index_select(0, c).bmm(z).squeeze(2);
    auto use = at::rand({n}, gen, opts) < cluster_weight_;
    x = torch::where(use.unsqueeze(1), g, x);
  }
  if (options_.broad() > 0) {
    auto u = at::rand({n}, gen, opts);
    auto flat = lo_ + (hi_ - lo_) * at::rand({n, d}, gen, opts);
    x = torch::where((u < options_.broad()).unsqueeze(1), flat, x);
  }
  return x.to(torch::kFloat);
}

torch::Tensor DataProposal::log_prob(const torch::Tensor& x_in) const {
  auto x = x_in.to(centers_.device(), torch::kDouble).reshape({x_in.size(0), -1});
  const int64_t m = centers_.size(0), d = centers_.size(1);
  auto d2 = ((x * x).sum(1, true) + sq_norms_.unsqueeze(0) - 2 * x.matmul(centers_.t())).clamp_min(0);
  auto h2 = (widths_ * widths_).unsqueeze(0);
  auto log_k = -0.5 * d2 / h2 - 0.5 * double(d) * (kLog2Pi + h2.log());
  auto lq = torch::logsumexp(log_k, 1) - std::log(double(m));
  if (cluster_weight_ > 0)
    lq = torch::logaddexp(lq + std::log1p(-cluster_weight_), cluster_log_prob(x) + std::log(cluster_weight_));
  if (options_.broad() <= 0) return lq;
  lq = lq + std::log1p(-options_.broad());
  auto inside = ((x >= lo_) & (x <= hi_)).all(1);
  auto lu = torch::full_like(lq, std::log(options_.broad()) - log_box_volume_);
  return torch::where(inside, torch::logaddexp(lq, lu), lq);
}

double DataProposal::jump(EnergyImpl& energy, torch::Tensor& x, int64_t moves, at::Generator& gen,
                          c10::IntArrayRef shape) const {
  if (moves <= 0 || x.size(0) == 0) return 0.0;
  torch::NoGradGuard ng;
  const auto dtype = x.scalar_type();
  // (the energy sees rows of its own shape; the proposal, flat rows)
  auto energy_of = [&](const torch::Tensor& rows) {
    return energy.energy(shape.empty() ? rows : rows.reshape(shape)).to(torch::kDouble);
  };
  auto e = energy_of(x);
  auto lq = log_prob(x).to(x.device());
  int64_t accepted = 0;
  for (int64_t k = 0; k < moves; ++k) {
    auto xp = sample(x.size(0), gen).to(x.device(), dtype);
    auto ep = energy_of(xp);
    auto lqp = log_prob(xp).to(x.device());
    auto log_a = (e - ep) + (lq - lqp);
    auto u = at::rand({x.size(0)}, gen, e.options().device(centers_.device())).to(x.device());
    auto acc = u.log() < torch::nan_to_num(log_a, -INFINITY);
    x = torch::where(acc.unsqueeze(1), xp, x);
    e = torch::where(acc, ep, e);
    lq = torch::where(acc, lqp, lq);
    accepted += acc.sum().item<int64_t>();
  }
  return double(accepted) / double(moves * x.size(0));
}

}  // namespace ebm
