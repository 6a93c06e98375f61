#include "ebm/objectives/score_matching.h"
#include "ebm/sampling/tempering.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <vector>

#include "ebm/core/error.h"
#include "ebm/core/progress.h"
#include "ebm/core/rng.h"

namespace ebm {

namespace {
// The level of each row for a noise-conditional energy: the given sigma, or
// the energy's current level when none is given.
torch::Tensor levels_for(NoiseConditionalEnergyImpl& nc, const torch::Tensor& x,
                         const torch::Tensor& sigma) {
  if (sigma.defined()) return sigma.to(x.dtype());
  return torch::full({x.size(0)}, nc.noise_level(), x.options());
}

// E(x) per row, at the rows' levels for a noise-conditional energy.
torch::Tensor energy_rows(EnergyImpl& energy, const torch::Tensor& x, const torch::Tensor& sigma) {
  if (auto* nc = energy.noise_conditional()) return nc->energy_at(x, levels_for(*nc, x, sigma));
  return energy.energy(x);
}

// The energy's own score terms (EnergyImpl::score_terms); g undefined where
// it has none.
ScoreTerms own_score_terms(EnergyImpl& energy, const torch::Tensor& x, const torch::Tensor& v,
                           const torch::Tensor& sigma) {
  auto [g, q] = energy.score_terms(x, v, sigma);
  return {g, g.defined() && v.defined() ? q : torch::Tensor()};
}

torch::Tensor autograd_grad(const torch::Tensor& y, const torch::Tensor& x) {
  return torch::autograd::grad({y}, {x}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
}

// Sum over every dimension but the first: [N, ...] -> [N] (vectors and images).
torch::Tensor row_sum(const torch::Tensor& t) { return t.flatten(1).sum(1); }

// [N] -> [N, 1, ..., 1] broadcasting against rows shaped like x.
torch::Tensor per_row(const torch::Tensor& t, const torch::Tensor& x) {
  std::vector<int64_t> shape(size_t(x.dim()), 1);
  shape[0] = t.size(0);
  return t.reshape(shape);
}
}  // namespace

ScoreTerms score_terms(EnergyImpl& energy, const torch::Tensor& x, const torch::Tensor& v,
                       const torch::Tensor& sigma, bool analytic) {
  if (analytic) {
    auto t = own_score_terms(energy, x, v, sigma);
    if (t.g.defined()) return t;
  }
  torch::AutoGradMode enable(true);
  auto xr = x.detach().requires_grad_(true);
  auto g = autograd_grad(energy_rows(energy, xr, sigma).sum(), xr);  // [N, ...] as x
  torch::Tensor q;
  if (v.defined()) q = row_sum(autograd_grad((g * v).sum(), xr) * v);  // v^T H v
  return {g, q};
}

torch::Tensor exact_sm_loss(EnergyImpl& energy, const torch::Tensor& x, bool analytic) {
  const int64_t b = x.size(0), d = x.size(1);
  if (analytic) {
    // tr H = sum_j e_j^T H e_j: the D basis directions as D copies of the batch.
    auto xs = x.repeat({d, 1});                                          // [D B, D]
    auto vs = torch::eye(d, x.options()).repeat_interleave(b, 0);        // [D B, D]
    auto t = own_score_terms(energy, xs, vs, {});
    if (t.g.defined()) {
      auto g = t.g.narrow(0, 0, b);
      return 0.5 * g.pow(2).sum(1) - t.q.view({d, b}).sum(0);
    }
  }
  torch::AutoGradMode enable(true);
  auto xr = x.detach().requires_grad_(true);
  auto g = autograd_grad(energy_rows(energy, xr, {}).sum(), xr);  // [B, D]
  auto trace = torch::zeros({b}, x.options());
  for (int64_t j = 0; j < d; ++j)  // one extra backward pass per dimension
    trace = trace + autograd_grad(g.select(1, j).sum(), xr).select(1, j);
  return 0.5 * g.pow(2).sum(1) - trace;
}

torch::Tensor sliced_sm_loss(EnergyImpl& energy, const torch::Tensor& x, const torch::Tensor& v,
                             bool variance_reduced, bool analytic) {
  const int64_t b = x.size(0), m = v.dim() >= 2 ? v.size(1) : 0;
  TORCH_CHECK(v.dim() == x.dim() + 1 && v.size(0) == b && v.sizes().slice(2) == x.sizes().slice(1),
              "sliced_sm_loss: projections must be [B, M, event...] for rows ", x.sizes(), ", got ", v.sizes());
  // (M copies of each row, as rows of the energy's event shape)
  std::vector<int64_t> rows = x.sizes().vec();
  rows[0] = b * m;
  auto xs = x.unsqueeze(1).expand(v.sizes()).reshape(rows);
  auto t = score_terms(energy, xs, v.reshape(rows), {}, analytic);
  auto q = t.q.view({b, m});
  auto g = t.g.reshape({b, m, -1});
  if (variance_reduced) return 0.5 * g.select(1, 0).pow(2).sum(1) - q.mean(1);
  auto vg = (g * v.reshape({b, m, -1})).sum(2);  // [B, M]
  return (0.5 * vg.pow(2) - q).mean(1);
}

torch::Tensor denoising_sm_loss(EnergyImpl& energy, const torch::Tensor& x,
                                const torch::Tensor& eps, const torch::Tensor& sigma,
                                const torch::Tensor& r, bool analytic) {
  auto s = per_row(sigma.to(x.dtype()), x), rr = per_row(r.to(x.dtype()), x);
  auto xt = x + s * eps;
  auto g = score_terms(energy, xt, {}, sigma.to(x.dtype()), analytic).g;
  return 0.5 * row_sum((rr * g - (s / rr) * eps).pow(2));
}

namespace {
// The mean of denoising_sm_loss; the energy's own pass with its gradient
// (EnergyImpl::denoising_loss) where it has one.
torch::Tensor denoising_loss(EnergyImpl& energy, const torch::Tensor& x, const torch::Tensor& eps,
                             const torch::Tensor& sigma, const torch::Tensor& r, bool analytic) {
  if (analytic) {
    auto loss = energy.denoising_loss(x, eps, sigma, r);
    if (loss.defined()) return loss;
  }
  return denoising_sm_loss(energy, x, eps, sigma, r, analytic).mean();
}

// The mean of sliced_sm_loss: for the plain form, the energy's own pass
// (EnergyImpl::sliced_loss) where it has one, over the B M rows (x repeated
// per projection; every row weighs 1 / (B M), as in the mean of means).
torch::Tensor sliced_loss(EnergyImpl& energy, const torch::Tensor& x, const torch::Tensor& v,
                          bool variance_reduced, bool analytic) {
  if (analytic && !variance_reduced && x.dim() == 2) {
    const int64_t b = x.size(0), m = v.size(1), d = x.size(1);
    auto loss = energy.sliced_loss(x.unsqueeze(1).expand({b, m, d}).reshape({b * m, d}),
                                   v.reshape({b * m, d}));
    if (loss.defined()) return loss;
  }
  return sliced_sm_loss(energy, x, v, variance_reduced, analytic).mean();
}
}  // namespace

// ----- objectives -------------------------------------------------------------
ExactScoreMatching::ExactScoreMatching(const ExactScoreMatchingOptions& o) : options_(o) {
  EBM_CHECK_CONFIG(o.dim() >= 1, "exact score matching needs data of dimension >= 1, got ", o.dim());
  EBM_CHECK_CONFIG(o.dim() <= kExactScoreMatchingMaxDim, "objective.name = \"esm\": exact score ",
                   "matching costs D = ", o.dim(), " extra backward passes per step (limit ",
                   kExactScoreMatchingMaxDim, "); use objective.name = \"ssm\" (sliced) instead");
}

Output ExactScoreMatching::compute(EnergyImpl& energy, const Batch& batch, at::Generator&) {
  Output out;
  const auto& x = batch.x;
  // 1/2 |g|^2 - tr H is the sum over the D basis directions e_j of sliced
  // score matching's 1/2 (e_j . g)^2 - e_j^T H e_j: the energy's own sliced
  // pass (EnergyImpl::sliced_loss), where it has one, over the D B rows
  // (mean) times D.
  if (options_.analytic()) {
    const int64_t b = x.size(0), d = x.size(1);
    auto loss = energy.sliced_loss(x.repeat({d, 1}),
                                   torch::eye(d, x.options()).repeat_interleave(b, 0));
    if (loss.defined()) {
      out.loss = loss * double(d);
      return out;
    }
  }
  out.loss = exact_sm_loss(energy, x, options_.analytic()).mean();
  return out;
}

SlicedScoreMatching::SlicedScoreMatching(const SlicedScoreMatchingOptions& o) : options_(o) {
  EBM_CHECK_CONFIG(o.projections() >= 1, "objective.projections must be >= 1, got ",
                   o.projections());
  EBM_CHECK_CONFIG(o.projection() == "gaussian" || o.projection() == "rademacher",
                   "objective.projection must be gaussian or rademacher, got '", o.projection(),
                   "'");
  // 1/2 |g|^2 is the mean of 1/2 (v.g)^2 only for E[v v^T] = I, which both
  // satisfy; but SSM-VR is stated for Gaussian v and its variance claim is
  // for them, so keep the pairing explicit.
  EBM_CHECK_CONFIG(!o.variance_reduced() || o.projection() == "gaussian",
                   "objective.variance_reduced = true needs objective.projection = \"gaussian\", got '",
                   o.projection(), "'");
}

Output SlicedScoreMatching::compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) {
  const auto& x = batch.x;
  std::vector<int64_t> shape = x.sizes().vec();  // [B, M, event...]
  shape.insert(shape.begin() + 1, options_.projections());
  torch::Tensor v;
  if (options_.projection() == "gaussian")
    v = standard_normal(shape, gen, x.options());
  else
    v = at::randint(0, 2, shape, gen, x.options()).mul_(2).sub_(1);
  Output out;
  out.loss = sliced_loss(energy, x, v, options_.variance_reduced(), options_.analytic());
  return out;
}

double nn_spacing(const torch::Tensor& rows) {
  TORCH_CHECK(rows.dim() == 2, "nn_spacing: rows must be [N, D], got ", rows.sizes());
  const int64_t n = rows.size(0), d = rows.size(1);
  if (n < 2 || d < 1) return 0.0;
  torch::NoGradGuard no_grad;
  auto x = rows.detach().to(torch::kCPU, torch::kDouble);
  auto every = [&](int64_t m) {  // m evenly spaced row indices
    return torch::linspace(0, double(n - 1), std::min(n, m), torch::kDouble).round().to(torch::kLong);
  };
  auto ref = x.index_select(0, every(20000)), query = x.index_select(0, every(1000));
  std::vector<torch::Tensor> nearest;
  for (int64_t i = 0; i < query.size(0); i += 250) {
    // (exact differences: the matrix-product form leaves a row ~1e-8 from itself)
    auto dist = torch::cdist(query.narrow(0, i, std::min<int64_t>(250, query.size(0) - i)), ref, 2.0,
                             /*compute_mode: donot_use_mm_for_euclid_dist=*/2);
    dist.masked_fill_(dist <= 0, std::numeric_limits<double>::infinity());  // itself and duplicates
    nearest.push_back(std::get<0>(dist.min(1)));
  }
  auto m = torch::cat(nearest);
  m = m.masked_select(torch::isfinite(m));  // (rows with no distinct neighbour)
  if (m.numel() == 0) return 0.0;
  // (the upper median: the (n/2 + 1)-th smallest)
  return std::get<0>(m.kthvalue(m.numel() / 2 + 1)).item<double>() / std::sqrt(double(d));
}

DenoisingScoreMatching::DenoisingScoreMatching(const DenoisingScoreMatchingOptions& o)
    : options_(o), sigma_(o.sigma()) {
  EBM_CHECK_CONFIG(o.sigma() > 0 && std::isfinite(o.sigma()), "objective.sigma must be > 0, got ",
                   o.sigma());
}

void DenoisingScoreMatching::fit_data(const torch::Tensor& train) {
  sigma_ = options_.sigma();
  if (!options_.spacing_floor() || train.dim() != 2) return;
  const double floor = nn_spacing(train);
  if (floor <= sigma_) return;
  sigma_ = floor;
  announce_ = true;  // (on the first step: after the run's own checks)
}

Output DenoisingScoreMatching::compute(EnergyImpl& energy, const Batch& batch,
                                       at::Generator& gen) {
  if (announce_) {
    announce_ = false;
    notes() << "ebm: objective.sigma " << options_.sigma() << " is below the training rows' nearest-neighbour "
             << "spacing, " << sigma_ << " per dimension in the model's units: denoising at " << sigma_
             << " (objective.sigma_floor = \"none\" keeps " << options_.sigma() << ")\n";
  }
  const auto& x = batch.x;
  auto eps = standard_normal(x.sizes(), gen, x.options());
  auto sigma = torch::full({x.size(0)}, sigma_, x.options());
  Output out;
  out.loss = denoising_loss(energy, x, eps, sigma, sigma, options_.analytic());
  out.metrics["sigma"] = sigma_;
  return out;
}

MultiscaleScoreMatching::MultiscaleScoreMatching(const MultiscaleScoreMatchingOptions& o)
    : options_(o) {
  EBM_CHECK_CONFIG(o.sigma_min() > 0 && std::isfinite(o.sigma_min()),
                   "objective.sigma_min must be > 0, got ", o.sigma_min());
  EBM_CHECK_CONFIG(o.sigma_max() > o.sigma_min() && std::isfinite(o.sigma_max()),
                   "objective.sigma_max must be > objective.sigma_min (", o.sigma_min(), "), got ",
                   o.sigma_max());
  EBM_CHECK_CONFIG(o.levels() >= 2, "objective.levels must be >= 2, got ", o.levels());
  EBM_CHECK_CONFIG(o.form() == "ncsn" || o.form() == "li",
                   "objective.form must be ncsn or li, got '", o.form(), "'");
  EBM_CHECK_CONFIG(o.sigma_ref() > 0 && std::isfinite(o.sigma_ref()),
                   "objective.sigma must be > 0 (the reference scale of form li), got ",
                   o.sigma_ref());
  ladder_ = torch::tensor(geometric_ladder(o.sigma_max(), o.sigma_min(), o.levels()), torch::kDouble);
}

Output MultiscaleScoreMatching::compute(EnergyImpl& energy, const Batch& batch,
                                        at::Generator& gen) {
  const bool conditional = energy.noise_conditional() != nullptr;
  EBM_CHECK_CONFIG(options_.form() != "ncsn" || conditional,
                   "objective.form = \"ncsn\" needs a noise-conditional energy ",
                   "(energy.name = \"ncmlp\"; conv, resnet: energy.noise_conditional = true)");
  EBM_CHECK_CONFIG(options_.form() != "li" || !conditional,
                   "objective.form = \"li\" trains one energy for every level; use energy.name = ",
                   "\"mlp\" (conv, resnet: energy.noise_conditional = false) or objective.form = \"ncsn\"");
  const auto& x = batch.x;
  // (the level index and noise come from gen on x's device)
  auto idx = at::randint(ladder_.size(0), {x.size(0)}, gen, x.options().dtype(torch::kLong));
  auto sigma = ladder_.to(x.device()).index_select(0, idx).to(x.scalar_type());
  auto eps = standard_normal(x.sizes(), gen, x.options());
  auto r = options_.form() == "ncsn" ? sigma : torch::full_like(sigma, options_.sigma_ref());
  Output out;
  out.loss = denoising_loss(energy, x, eps, sigma, r, options_.analytic());
  return out;
}

}  // namespace ebm

namespace ebm {

WithMassTerm::WithMassTerm(std::shared_ptr<Objective> inner, const MassTermOptions& o)
    : inner_(std::move(inner)), options_(o) {
  EBM_CHECK_CONFIG(o.weight() >= 0 && std::isfinite(o.weight()), "objective.mass_weight must be >= 0, got ",
                   o.weight());
  EBM_CHECK_CONFIG(o.samples() >= 2, "objective.mass_samples must be >= 2, got ", o.samples());
  TORCH_INTERNAL_ASSERT(inner_);
}

void WithMassTerm::fit_data(const torch::Tensor& train) {
  inner_->fit_data(train);
  EBM_CHECK_CONFIG(train.dim() == 2, "objective.mass_weight needs vector data, got rows of shape ",
                   train.sizes().slice(1));
  auto [lo, hi] = data_box(train);
  proposal_ = std::make_unique<DataProposal>(options_.proposal(), train.detach(), lo, hi);
}

Output WithMassTerm::compute(EnergyImpl& energy, const Batch& batch, at::Generator& gen) {
  Output out = inner_->compute(energy, batch, gen);
  TORCH_CHECK(proposal_, "WithMassTerm: fit_data before the first step");
  const auto& x = batch.x;
  auto xq = proposal_->sample(options_.samples(), gen).to(x.device(), x.scalar_type());
  auto log_q = proposal_->log_prob(xq).to(x.device());
  auto e = energy.energy(torch::cat({x, xq}, 0));
  auto e_pos = e.narrow(0, 0, x.size(0)), e_q = e.narrow(0, x.size(0), xq.size(0));
  auto log_w = -e_q.to(torch::kDouble) - log_q;
  auto log_z = torch::logsumexp(log_w, 0) - std::log(double(options_.samples()));
  auto nll = e_pos.to(torch::kDouble).mean() + log_z;
  // (the importance weights' effective sample size, as a fraction of S)
  auto w = torch::softmax(log_w.detach(), 0);
  const double ess = 1.0 / (w * w).sum().item<double>();
  const bool trusted = ess >= options_.min_ess();
  if (trusted) out.loss = out.loss + options_.weight() * nll.to(out.loss.scalar_type());
  // Early steps, before the model covers the data, skip it often; a run
  // that still skips it on most steps later has no mass term: say so once,
  // from a window of steps (a 10-d mixture skipped it from step 1, and on
  // 99% of its last steps trusted it).
  constexpr int64_t kWindow = 500;
  ++window_steps_;
  if (!trusted) ++window_skips_;
  if (window_steps_ == kWindow) {
    if (2 * window_skips_ > kWindow && !warned_) {
      warned_ = true;
      notes() << "ebm: objective.mass_weight: the mass term was skipped on " << window_skips_ << " of the last "
               << kWindow << " steps (its importance weights had under " << options_.min_ess()
               << " effective samples of " << options_.samples() << "; metric mass_term): the proposal from the "
                  "data does not cover the model, and the term has no effect; set objective.mass_weight = 0 or "
                  "raise objective.mass_samples\n";
    }
    window_steps_ = window_skips_ = 0;
  }
  out.metrics["mass_term"] = trusted ? 1.0 : 0.0;
  out.metrics["nll_is"] = nll.item<double>();
  out.metrics["ess_fraction"] = ess / double(options_.samples());
  return out;
}

}  // namespace ebm
