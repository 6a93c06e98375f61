// Annealed importance sampling and its reverse (eval/partition.h).
#include "ebm/eval/partition.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

#include "ebm/core/covariance.h"
#include "ebm/core/subsample.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/eval/eval.h"
#include "ebm/sampling/sampling.h"

namespace ebm {

namespace {
const auto kF64 = torch::TensorOptions(torch::kDouble);

// E_b = (1 - b) E0 + b E, the path's intermediate energy at b.
class PathEnergyImpl : public EnergyImpl {
 public:
  PathEnergyImpl(EnergyImpl& target, const AisBase& base) : target_(target), base_(base) {}
  void set_beta(double b) { beta_ = b; }
  torch::Tensor energy(const torch::Tensor& x) override {
    torch::NoGradGuard ng;
    return combine(base_.energy(x), target_.energy(x).to(torch::kDouble)).to(x.scalar_type());
  }
  std::pair<torch::Tensor, torch::Tensor> energy_and_grad(const torch::Tensor& x) override {
    auto [e, g] = target_.energy_and_grad(x);
    return at_target(x, base_.energy(x), e, g);
  }
  // E_b and its gradient at x from the base's energy e0 and the target's (e, g) there.
  std::pair<torch::Tensor, torch::Tensor> at_target(const torch::Tensor& x, const torch::Tensor& e0,
                                                    const torch::Tensor& e, const torch::Tensor& g) const {
    auto g0 = base_.grad(x).to(g.scalar_type());
    return {combine(e0, e.to(torch::kDouble)).to(x.scalar_type()), (1 - beta_) * g0 + beta_ * g};
  }
  torch::Tensor grad(const torch::Tensor& x) override { return energy_and_grad(x).second; }
  std::vector<int64_t> event_shape() const override { return target_.event_shape(); }

 private:
  // (b = 1 takes E alone: a uniform base keeps its +inf outside the box)
  torch::Tensor combine(const torch::Tensor& e0, const torch::Tensor& e) const {
    auto mixed = (1 - beta_) * e0 + beta_ * e;
    if (base_.kind() == "uniform") mixed = torch::where(torch::isfinite(e0), mixed, e0);
    return mixed;
  }
  EnergyImpl& target_;
  const AisBase& base_;
  double beta_ = 0;
};

torch::ScalarType energy_dtype(EnergyImpl& energy) {
  auto p = energy.parameters();
  if (!p.empty()) return p[0].scalar_type();
  auto b = energy.buffers();
  return b.empty() ? torch::kDouble : b[0].scalar_type();
}

double bootstrap_se(const torch::Tensor& log_w, int64_t resamples, at::Generator& gen) {
  if (resamples < 2 || log_w.size(0) < 2) return 0;
  const int64_t n = log_w.size(0);
  auto idx = at::randint(0, n, {resamples, n}, gen, torch::TensorOptions(torch::kLong));
  auto lw = log_w.index_select(0, idx.flatten()).view({resamples, n});
  auto est = torch::logsumexp(lw, 1) - std::log(double(n));
  return est.std().item<double>();
}
}  // namespace

AisBase::AisBase(std::string kind, torch::Tensor a, torch::Tensor b, torch::Tensor log_w)
    : kind_(std::move(kind)), a_(a.to(torch::kDouble)), b_(b.to(torch::kDouble)), log_w_(std::move(log_w)) {}

AisBase AisBase::mixture(torch::Tensor weights, torch::Tensor means, torch::Tensor stds) {
  EBM_CHECK_CONFIG(weights.dim() == 1 && means.dim() == 2 && means.size(0) == weights.size(0) &&
                       stds.sizes() == means.sizes() && (stds > 0).all().item<bool>() &&
                       (weights > 0).all().item<bool>(),
                   "ais: a mixture base needs K positive weights and K means and positive stds of one dimension");
  const auto w = weights.to(torch::kDouble);
  return AisBase("mixture", means, stds, (w / w.sum()).log());
}

torch::Tensor AisBase::joint(const torch::Tensor& flat) const {
  const auto z = (flat.unsqueeze(1) - a_.unsqueeze(0)) / b_.unsqueeze(0);  // [N, K, D]
  const auto c = 0.5 * double(dim()) * std::log(2 * M_PI) + b_.log().sum(1);  // [K]
  return log_w_.unsqueeze(0) - 0.5 * z.pow(2).sum(2) - c.unsqueeze(0);
}

AisBase AisBase::gaussian(torch::Tensor mean, torch::Tensor std) {
  EBM_CHECK_CONFIG(mean.dim() == 1 && std.sizes() == mean.sizes() && (std > 0).all().item<bool>(),
                   "ais: a Gaussian base needs a mean and positive standard deviations of one dimension");
  return AisBase("gaussian", mean, std);
}

AisBase AisBase::uniform(torch::Tensor lo, torch::Tensor hi) {
  EBM_CHECK_CONFIG(lo.dim() == 1 && hi.sizes() == lo.sizes() && (hi > lo).all().item<bool>(),
                   "ais: a uniform base needs a box with hi > lo in every coordinate");
  return AisBase("uniform", lo, hi);
}

AisBase AisBase::fit(const std::string& kind, const torch::Tensor& x) {
  EBM_CHECK_DATA(x.size(0) >= 2, "ais: fitting the base needs at least 2 rows, got ", x.size(0));
  auto f = x.flatten(1).to(torch::kDouble);
  // Gaussians in the rows' principal axes, scaled to unit spread: the
  // covariance's ridge chosen by held-out rows (core/covariance.h). Axis by
  // axis a base misses correlated rows' shape: a probe's 256-d features on a
  // 16-d subspace (noise sd 0.01) were 1,000 nats from such a base, and AIS
  // from it came out 86 nats low with ESS 1 (29 low at 5,000 temperatures).
  if (kind != "uniform" && f.size(0) >= 4 && f.size(1) >= 2 && f.size(1) <= kMaxWhitened) {
    // (the covariance of at most 20,000 evenly spaced rows: as good, and
    // N D^2 stays bounded)
    const auto sub = evenly_spaced_rows(f, 20000);
    const auto m = sub.mean(0), xs = sub - m, xc = f - m;
    const auto target = ridge_target(xs.square().mean(0));
    const auto ridge = held_out_ridge(xs, target) * target;
    auto [values, vectors] = torch::linalg_eigh(xs.t().mm(xs) / double(sub.size(0) - 1) + torch::diag(ridge));
    const auto v = values.clamp_min(1e-12 * values.max().item<double>() + 1e-300);
    const auto s = v.sqrt();
    // (along each axis the ridge's share of the spread: where the rows have
    // none, fewer rows than values or a constant column, all of it, and a
    // cell's spread there is the ridge's, not the rows' nothing)
    const auto share = ((vectors.square() * ridge.unsqueeze(1)).sum(0) / v).clamp(0.0, 1.0).sqrt();
    const auto z = xc.mm(vectors) / s;
    AisBase b = gaussian(torch::zeros_like(s), torch::ones_like(s));
    // (k-means cells cut in the axes: in the rows' own coordinates a
    // funnel's widest columns decided the cells alone, and its AIS error
    // doubled (10.08 +- 0.08 against 10.23 +- 0.03, exact 10.29), though the
    // rows were likelier under that mixture)
    // (the ridge's share as the floor only along axes where it is nearly all
    // the spread: floored by it everywhere, a funnel's cells widened in its
    // neck and AIS lost half its ESS)
    if (kind != "gaussian")
      b = fit_axes(kind, z, z, torch::where(share > 0.95, share, torch::full_like(share, 1e-3)));
    b.shift_ = m;
    b.rot_ = vectors;
    b.scale_ = s;
    b.log_jac_ = s.log().sum().item<double>();
    return b;
  }
  const auto sd = f.std(0);
  return fit_axes(kind, f, f, torch::full_like(sd, 1e-3 * sd.max().item<double>() + 1e-12));
}

AisBase AisBase::fit_axes(const std::string& kind, const torch::Tensor& f, const torch::Tensor& cells_of,
                          const torch::Tensor& floor) {
  const auto sd = f.std(0).max(floor);
  if (kind == "gaussian") return gaussian(f.mean(0), sd);
  if (kind == "mixture") {
    const int64_t k = std::min<int64_t>(8, f.size(0) / 50);
    if (k < 2) return gaussian(f.mean(0), sd);
    auto gen = make_generator(0, kStreamEval);  // (the same base every call)
    const auto centers = kmeans(cells_of, k, gen);
    const auto cell = torch::cdist(cells_of, centers).argmin(1);
    std::vector<torch::Tensor> w, mean, std;
    for (int64_t j = 0; j < k; ++j) {
      const auto rows = f.index_select(0, (cell == j).nonzero().reshape({-1}));
      if (rows.size(0) < 2) continue;  // (a cell of one row has no spread: its row's share is left out)
      w.push_back(torch::tensor(double(rows.size(0)), torch::kDouble));
      mean.push_back(rows.mean(0));
      std.push_back(rows.std(0).max(floor));
    }
    if (w.size() < 2) return gaussian(f.mean(0), sd);
    return mixture(torch::stack(w), torch::stack(mean), torch::stack(std));
  }
  EBM_CHECK_CONFIG(kind == "uniform", "ais: --base must be gaussian, mixture or uniform, got '", kind, "'");
  auto lo = std::get<0>(f.min(0)), hi = std::get<0>(f.max(0));
  auto pad = 0.05 * (hi - lo) + 1e-6;
  return uniform(lo - pad, hi + pad);
}

torch::Tensor AisBase::to_axes(const torch::Tensor& x) const {
  auto f = x.flatten(1).to(torch::kDouble);
  EBM_CHECK_DATA(f.size(1) == dim(), "ais: the base has ", dim(), " dimensions, the points ", f.size(1));
  return rot_.defined() ? (f - shift_).mm(rot_) / scale_ : f;
}

torch::Tensor AisBase::energy(const torch::Tensor& x) const {
  const auto f = to_axes(x);
  return rot_.defined() ? axes_energy(f) + log_jac_ : axes_energy(f);
}

torch::Tensor AisBase::axes_energy(const torch::Tensor& f) const {
  if (kind_ == "gaussian") {
    const double c = 0.5 * double(dim()) * std::log(2 * M_PI) + b_.log().sum().item<double>();
    return 0.5 * ((f - a_) / b_).pow(2).sum(1) + c;
  }
  if (kind_ == "mixture") return -torch::logsumexp(joint(f), 1);
  const double logv = (b_ - a_).log().sum().item<double>();
  auto inside = ((f >= a_) & (f <= b_)).all(1);
  return torch::where(inside, torch::full({f.size(0)}, logv, kF64),
                      torch::full({f.size(0)}, std::numeric_limits<double>::infinity(), kF64));
}

torch::Tensor AisBase::grad(const torch::Tensor& x) const {
  if (kind_ == "uniform") return torch::zeros_like(x);
  const auto f = to_axes(x);
  torch::Tensor g;
  if (kind_ == "mixture") {  // (each component's gradient, weighted by its responsibility)
    const auto r = torch::softmax(joint(f), 1);                                        // [N, K]
    const auto gk = (f.unsqueeze(1) - a_.unsqueeze(0)) / b_.pow(2).unsqueeze(0);        // [N, K, D]
    g = (r.unsqueeze(2) * gk).sum(1);
  } else {
    g = (f - a_) / b_.pow(2);
  }
  if (rot_.defined()) g = (g / scale_).mm(rot_.t());  // (z = (x - m) V / s: dE/dx = (dE/dz / s) V^T)
  return g.view(x.sizes()).to(x.scalar_type());
}

torch::Tensor AisBase::sample(int64_t n, const std::vector<int64_t>& event_shape, at::Generator& gen) const {
  std::vector<int64_t> shape = event_shape;
  shape.insert(shape.begin(), n);
  torch::Tensor f;
  if (kind_ == "gaussian") {
    f = a_ + b_ * standard_normal({n, dim()}, gen, kF64);
  } else if (kind_ == "mixture") {
    const auto k = at::multinomial(log_w_.exp(), n, /*replacement=*/true, gen);
    f = a_.index_select(0, k) + b_.index_select(0, k) * standard_normal({n, dim()}, gen, kF64);
  } else {
    f = a_ + (b_ - a_) * at::rand({n, dim()}, gen, kF64);
  }
  if (rot_.defined()) f = (f * scale_).mm(rot_.t()) + shift_;
  return f.view(shape);
}

std::vector<double> ais_schedule(const std::string& kind, int64_t temps) {
  EBM_CHECK_USAGE(temps >= 1, "ais: --temps must be >= 1, got ", temps);
  std::vector<double> b(temps + 1);
  for (int64_t k = 0; k <= temps; ++k) {
    const double t = double(k) / double(temps);
    if (kind == "linear") {
      b[k] = t;
    } else if (kind == "geometric") {
      b[k] = k == 0 ? 0.0 : std::pow(1e-4, 1.0 - double(k - 1) / double(std::max<int64_t>(temps - 1, 1)));
    } else if (kind == "sigmoid") {
      const double d = 4.0, lo = 1 / (1 + std::exp(d)), hi = 1 / (1 + std::exp(-d));
      b[k] = (1 / (1 + std::exp(-d * (2 * t - 1))) - lo) / (hi - lo);
    } else {
      EBM_CHECK_USAGE(false, "ais: --schedule must be linear, geometric or sigmoid, got '", kind, "'");
    }
  }
  b.front() = 0.0;
  b.back() = 1.0;
  return b;
}

double log_mean_exp(const torch::Tensor& log_w) {
  return torch::logsumexp(log_w.to(torch::kDouble), 0).item<double>() - std::log(double(log_w.size(0)));
}

double log_mean_exp_se(const torch::Tensor& log_w) {
  const int64_t n = log_w.size(0);
  if (n < 2) return std::numeric_limits<double>::infinity();
  auto w = (log_w.to(torch::kDouble) - log_w.max()).exp();
  return (w.std() / (std::sqrt(double(n)) * w.mean())).item<double>();
}

double effective_sample_size(const torch::Tensor& log_w) {
  auto w = (log_w.to(torch::kDouble) - log_w.max()).exp();
  return (w.sum().pow(2) / w.pow(2).sum()).item<double>();
}

AnnealedImportanceSampling::AnnealedImportanceSampling(AisBase base, AisOptions options, AisProgress progress)
    : base_(std::move(base)), options_(std::move(options)), progress_(std::move(progress)) {
  EBM_CHECK_USAGE(options_.chains() >= 1, "ais: --chains must be >= 1, got ", options_.chains());
  EBM_CHECK_USAGE(options_.transition() == "hmc" || options_.transition() == "mala",
                  "ais: --transition must be hmc or mala, got '", options_.transition(), "'");
  EBM_CHECK_USAGE(options_.moves() >= 1, "ais: --moves must be >= 1, got ", options_.moves());
  EBM_CHECK_USAGE(options_.leapfrog() >= 1, "ais: leapfrog steps must be >= 1, got ", options_.leapfrog());
  EBM_CHECK_USAGE(options_.step() > 0, "ais: the step size must be > 0, got ", options_.step());
  EBM_CHECK_USAGE(options_.spread() >= 0 && options_.spread() <= 10, "ais: --spread must be in [0, 10], got ",
                  options_.spread());
  ais_schedule(options_.schedule(), options_.temps());  // (checks both)
}

namespace {
// One pass along `betas` (increasing: forward; decreasing: reverse) from x,
// each increment's weight then a transition at the new b (none at b = 0).
PartitionEstimate anneal(EnergyImpl& energy, const AisBase& base, const AisOptions& o, const std::vector<double>& betas,
                         torch::Tensor x, const AisProgress& progress, at::Generator& gen) {
  const auto shape = energy.event_shape();
  EBM_CHECK_DATA(c10::multiply_integers(shape) == base.dim(), "ais: the base has ", base.dim(),
                 " dimensions, the energy's samples ", c10::IntArrayRef(shape));
  PathEnergyImpl path(energy, base);
  std::unique_ptr<Sampler> sampler;
  double target = 0;
  if (o.transition() == "hmc") {
    // (spread 0: the sampler's usual +-20% jitter)
    sampler = std::make_unique<HMCSampler>(
        HMCOptions(o.step()).n_leapfrog(o.leapfrog()).jitter(0.2).log_spread(o.spread()));
    target = 0.65;
  } else {
    sampler = std::make_unique<MALASampler>(MALAOptions(o.step()));
    target = 0.57;
  }
  const int64_t n = x.size(0), k_max = int64_t(betas.size()) - 1;
  auto log_w = torch::zeros({n}, kF64);
  ChainState chains(x);
  double accepted = 0;
  int64_t moves = 0;
  torch::NoGradGuard ng;
  for (int64_t k = 1; k <= k_max; ++k) {
    const double db = betas[k] - betas[k - 1];
    // One pass of the target per temperature: its energy gives the increment
    // of the log weight (on a uniform base E0 is finite at every chain), and
    // with its gradient the new temperature's cached state for the move.
    auto [e, g] = energy.energy_and_grad(chains.x);
    auto e0 = base.energy(chains.x);
    log_w += db * (e0 - e.to(torch::kDouble));
    path.set_beta(betas[k]);
    std::tie(chains.energy, chains.grad) = path.at_target(chains.x, e0, e, g);
    for (int64_t m = 0; betas[k] > 0 && m < o.moves(); ++m) {
      const double rate = sampler->step(path, chains, gen).accept_rate;
      accepted += rate;
      ++moves;
      // (adapted on the acceptance of the previous transition)
      sampler->set_step_size(std::clamp(sampler->step_size() * std::exp(rate - target), 1e-8, 1e3));
    }
    if (progress) progress(k, k_max, betas[k]);
  }
  PartitionEstimate r;
  r.log_w = log_w;
  r.x = chains.x;
  r.accept = moves > 0 ? accepted / double(moves) : 1.0;
  r.final_step = sampler->step_size();
  r.ess = effective_sample_size(log_w);
  return r;
}
}  // namespace

PartitionEstimate AnnealedImportanceSampling::estimate(EnergyImpl& energy, at::Generator& gen) {
  auto x0 = base_.sample(options_.chains(), energy.event_shape(), gen).to(energy_dtype(energy));
  auto r = anneal(energy, base_, options_, ais_schedule(options_.schedule(), options_.temps()), x0, progress_, gen);
  r.log_z = log_mean_exp(r.log_w);
  r.se = log_mean_exp_se(r.log_w);
  r.se_bootstrap = bootstrap_se(r.log_w, options_.bootstrap(), gen);
  return r;
}

PartitionEstimate AnnealedImportanceSampling::reverse(EnergyImpl& energy, const torch::Tensor& x, at::Generator& gen) {
  EBM_CHECK_DATA(x.size(0) >= 1, "ais: reverse AIS needs samples of the model");
  auto betas = ais_schedule(options_.schedule(), options_.temps());
  std::reverse(betas.begin(), betas.end());
  auto r = anneal(energy, base_, options_, betas, x.to(energy_dtype(energy)), progress_, gen);
  // (the increments above are (b_k - b_{k-1}) (E0 - E) with b decreasing,
  // which is log w_rev; E[w_rev] = Z0 / Z)
  r.log_z = -log_mean_exp(r.log_w);
  r.se = log_mean_exp_se(r.log_w);
  r.se_bootstrap = bootstrap_se(r.log_w, options_.bootstrap(), gen);
  return r;
}

PartitionEstimate merge_estimates(const std::vector<PartitionEstimate>& parts, bool reverse, int64_t bootstrap,
                                  at::Generator& gen) {
  TORCH_INTERNAL_ASSERT(!parts.empty());
  std::vector<torch::Tensor> lw, xs;
  PartitionEstimate r;
  double n = 0;
  for (const auto& p : parts) {
    const double k = double(p.log_w.size(0));
    lw.push_back(p.log_w.to(torch::kDouble));
    if (p.x.defined() && p.x.numel()) xs.push_back(p.x);
    r.accept += p.accept * k;
    r.final_step += p.final_step * k;
    n += k;
  }
  r.accept /= n;
  r.final_step /= n;
  r.log_w = torch::cat(lw);
  if (!xs.empty()) r.x = torch::cat(xs);
  r.log_z = reverse ? -log_mean_exp(r.log_w) : log_mean_exp(r.log_w);
  r.se = log_mean_exp_se(r.log_w);
  r.ess = effective_sample_size(r.log_w);
  r.se_bootstrap = bootstrap_se(r.log_w, bootstrap, gen);
  return r;
}

}  // namespace ebm
