#include "ebm/core/error.h"
#include "ebm/core/spec.h"
#include "ebm/energy/energy.h"

namespace ebm {
namespace {
const double kLog2Pi = std::log(2.0 * M_PI);

torch::Tensor like(const torch::Tensor& t, const torch::Tensor& x) {
  return t.to(x.options());
}

void check_input(const torch::Tensor& x, int64_t dim, const char* who) {
  EBM_CHECK_DATA(x.dim() == 2 && x.size(1) == dim, who, " expects [B, ", dim,
                 "] input, got ", x.sizes());
}
}  // namespace

// ----- Gaussian -------------------------------------------------------------
GaussianEnergyImpl::GaussianEnergyImpl(torch::Tensor mean, torch::Tensor cov)
    : mean_(mean.to(torch::kDouble)), cov_(cov.to(torch::kDouble)) {
  int64_t d = mean_.size(0);
  EBM_CHECK_CONFIG(cov_.dim() == 2 && cov_.size(0) == d && cov_.size(1) == d,
                   "Gaussian covariance must be [", d, ", ", d, "]");
  chol_ = torch::linalg::cholesky(cov_);
  precision_ = torch::cholesky_inverse(chol_);
  log_z_ = 0.5 * d * kLog2Pi + chol_.diagonal().log().sum().item<double>();
  // Diagonal covariance: elementwise energy and gradient instead of a matmul.
  if (torch::equal(cov_, torch::diag(cov_.diagonal()))) {
    diag_precision_ = precision_.diagonal().clone();
    diag_precision_f_ = diag_precision_.to(torch::kFloat);  // float chains skip a cast per call
  }
  zero_mean_ = !mean_.any().item<bool>();
  mean_f_ = mean_.to(torch::kFloat);
}

std::pair<torch::Tensor, torch::Tensor> GaussianEnergyImpl::diagonal_quadratic(
    torch::ScalarType dtype) const {
  if (!diag_precision_.defined()) return {};
  if (dtype == torch::kFloat) return {mean_f_, diag_precision_f_};
  return {mean_.to(dtype), diag_precision_.to(dtype)};
}

torch::Tensor GaussianEnergyImpl::centred(const torch::Tensor& x) const {
  return zero_mean_ ? x : x - like(mean_, x);
}

torch::Tensor GaussianEnergyImpl::energy(const torch::Tensor& x) {
  check_input(x, dim(), "gaussian");
  auto d = centred(x);
  if (diag_precision_.defined()) return 0.5 * (d * d * like(diag_precision_, x)).sum(-1);
  return 0.5 * (torch::mm(d, like(precision_, x)) * d).sum(-1);
}

torch::Tensor GaussianEnergyImpl::grad(const torch::Tensor& x) {
  check_input(x, dim(), "gaussian");
  torch::NoGradGuard ng;
  if (diag_precision_.defined()) {
    // (the float copy lives on the CPU: on another device, a copy there)
    const bool cached = x.scalar_type() == torch::kFloat && x.device().is_cpu();
    return centred(x) * (cached ? diag_precision_f_ : like(diag_precision_, x));
  }
  return torch::mm(centred(x), like(precision_, x));
}

std::pair<torch::Tensor, torch::Tensor> GaussianEnergyImpl::energy_and_grad(const torch::Tensor& x) {
  torch::NoGradGuard ng;
  auto g = grad(x);
  return {0.5 * (centred(x) * g).sum(-1), g};
}

torch::Tensor GaussianEnergyImpl::sample(int64_t n, at::Generator& gen) const {
  auto z = at::normal(0.0, 1.0, {n, dim()}, gen, torch::kDouble);
  return mean_ + torch::mm(z, chol_.t());
}

// ----- Mixture --------------------------------------------------------------
MixtureEnergyImpl::MixtureEnergyImpl(torch::Tensor weights, torch::Tensor means,
                                     torch::Tensor stds)
    : weights_(weights.to(torch::kDouble)),
      means_(means.to(torch::kDouble)),
      stds_(stds.to(torch::kDouble)) {
  EBM_CHECK_CONFIG(means_.dim() == 2 && weights_.size(0) == means_.size(0) &&
                       stds_.size(0) == means_.size(0),
                   "mixture: weights [K], means [K, D], stds [K] must agree");
  weights_ = weights_ / weights_.sum();
}

torch::Tensor MixtureEnergyImpl::energy(const torch::Tensor& x) {
  check_input(x, dim(), "mixture");
  auto mu = like(means_, x), s = like(stds_, x), w = like(weights_, x);
  auto d2 = (x.unsqueeze(1) - mu.unsqueeze(0)).pow(2).sum(-1);  // [B, K]
  auto logp = w.log() - d2 / (2 * s * s) - 0.5 * dim() * (kLog2Pi + 2 * s.log());
  return -torch::logsumexp(logp, 1);
}

torch::Tensor MixtureEnergyImpl::mean() const {
  return torch::mv(means_.t(), weights_);
}

torch::Tensor MixtureEnergyImpl::covariance() const {
  auto m = mean();
  auto second = torch::mm(means_.t() * weights_, means_) +
                torch::eye(dim(), torch::kDouble) * (weights_ * stds_ * stds_).sum();
  return second - torch::outer(m, m);
}

torch::Tensor MixtureEnergyImpl::sample(int64_t n, at::Generator& gen) const {
  auto k = at::multinomial(weights_, n, true, gen);  // [n]
  auto z = at::normal(0.0, 1.0, {n, dim()}, gen, torch::kDouble);
  return means_.index_select(0, k) + z * stds_.index_select(0, k).unsqueeze(1);
}

// ----- Funnel ---------------------------------------------------------------
FunnelEnergyImpl::FunnelEnergyImpl(int64_t dim) : dim_(dim) {
  EBM_CHECK_CONFIG(dim >= 2, "funnel dimension must be >= 2, got ", dim);
}

torch::Tensor FunnelEnergyImpl::energy(const torch::Tensor& x) {
  check_input(x, dim_, "funnel");
  auto y = x.select(1, 0);
  auto rest = x.narrow(1, 1, dim_ - 1);
  return y * y / 18.0 + 0.5 * rest.pow(2).sum(-1) * torch::exp(-y) + 0.5 * (dim_ - 1) * y;
}

torch::Tensor FunnelEnergyImpl::mean() const { return torch::zeros({dim_}, torch::kDouble); }

torch::Tensor FunnelEnergyImpl::covariance() const {
  auto v = torch::full({dim_}, std::exp(4.5), torch::kDouble);  // E[exp(y)], y ~ N(0, 9)
  v[0] = 9.0;
  return torch::diag(v);
}

double FunnelEnergyImpl::log_z() const {
  return 0.5 * (kLog2Pi + std::log(9.0)) + 0.5 * (dim_ - 1) * kLog2Pi;
}

torch::Tensor FunnelEnergyImpl::sample(int64_t n, at::Generator& gen) const {
  auto y = at::normal(0.0, 3.0, {n, 1}, gen, torch::kDouble);
  auto z = at::normal(0.0, 1.0, {n, dim_ - 1}, gen, torch::kDouble);
  return torch::cat({y, z * torch::exp(0.5 * y)}, 1);
}

// ----- Banana ---------------------------------------------------------------
BananaEnergyImpl::BananaEnergyImpl(double s1, double s2, double b) : s1_(s1), s2_(s2), b_(b) {
  EBM_CHECK_CONFIG(s1 > 0 && s2 > 0, "banana scales must be > 0");
}

torch::Tensor BananaEnergyImpl::energy(const torch::Tensor& x) {
  check_input(x, 2, "banana");
  auto x1 = x.select(1, 0), x2 = x.select(1, 1);
  return x1 * x1 / (2 * s1_ * s1_) + (x2 - b_ * x1 * x1).pow(2) / (2 * s2_ * s2_);
}

torch::Tensor BananaEnergyImpl::mean() const {
  return torch::tensor({0.0, b_ * s1_ * s1_}, torch::kDouble);
}

torch::Tensor BananaEnergyImpl::covariance() const {
  double v2 = s2_ * s2_ + 2 * b_ * b_ * std::pow(s1_, 4);  // Var(b x1^2) = 2 b^2 s1^4
  return torch::tensor({s1_ * s1_, 0.0, 0.0, v2}, torch::kDouble).view({2, 2});
}

double BananaEnergyImpl::log_z() const { return std::log(2 * M_PI * s1_ * s2_); }

torch::Tensor BananaEnergyImpl::sample(int64_t n, at::Generator& gen) const {
  auto x1 = at::normal(0.0, s1_, {n}, gen, torch::kDouble);
  auto x2 = b_ * x1 * x1 + at::normal(0.0, s2_, {n}, gen, torch::kDouble);
  return torch::stack({x1, x2}, 1);
}

// ----- Double well ----------------------------------------------------------
DoubleWellEnergyImpl::DoubleWellEnergyImpl(int64_t dim, double barrier)
    : dim_(dim), a_(barrier) {
  EBM_CHECK_CONFIG(dim >= 1, "double_well dimension must be >= 1, got ", dim);
  EBM_CHECK_CONFIG(barrier > 0, "double_well barrier must be > 0, got ", barrier);
  // Trapezoid rule on a wide grid: exponentially accurate for this smooth,
  // super-Gaussian integrand (errors far below 1e-12).
  const int64_t n = 400001;
  const double lo = -8.0, h = 16.0 / (n - 1);
  double z = 0, m2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    double x = lo + i * h, u = x * x - 1;
    double p = std::exp(-a_ * u * u) * ((i == 0 || i == n - 1) ? 0.5 : 1.0);
    z += p;
    m2 += p * x * x;
  }
  log_z1_ = std::log(z * h);
  var1_ = m2 / z;
}

torch::Tensor DoubleWellEnergyImpl::energy(const torch::Tensor& x) {
  check_input(x, dim_, "double_well");
  auto x1 = x.select(1, 0);
  auto e = a_ * (x1 * x1 - 1).pow(2);
  if (dim_ > 1) e = e + 0.5 * x.narrow(1, 1, dim_ - 1).pow(2).sum(-1);
  return e;
}

torch::Tensor DoubleWellEnergyImpl::mean() const { return torch::zeros({dim_}, torch::kDouble); }

torch::Tensor DoubleWellEnergyImpl::covariance() const {
  auto v = torch::ones({dim_}, torch::kDouble);
  v[0] = var1_;
  return torch::diag(v);
}

double DoubleWellEnergyImpl::log_z() const { return log_z1_ + 0.5 * (dim_ - 1) * kLog2Pi; }

torch::Tensor DoubleWellEnergyImpl::sample(int64_t n, at::Generator& gen) const {
  // Envelope N(0, 1): log[p~(x) / N~(x)] = -a (u-1)^2 + u/2 with u = x^2,
  // maximal at u* = 1 + 1/(4a).
  double us = 1 + 1 / (4 * a_);
  double fmax = -a_ * (us - 1) * (us - 1) + us / 2;
  std::vector<torch::Tensor> got;
  int64_t have = 0;
  while (have < n) {
    int64_t m = 2 * (n - have) + 16;
    auto x = at::normal(0.0, 1.0, {m}, gen, torch::kDouble);
    auto u = x * x;
    auto logr = -a_ * (u - 1).pow(2) + u / 2 - fmax;
    auto accept = at::rand({m}, gen, torch::kDouble).log() < logr;
    auto keep = x.masked_select(accept);
    got.push_back(keep);
    have += keep.size(0);
  }
  auto x1 = torch::cat(got).narrow(0, 0, n).unsqueeze(1);
  if (dim_ == 1) return x1;
  return torch::cat({x1, at::normal(0.0, 1.0, {n, dim_ - 1}, gen, torch::kDouble)}, 1);
}

// ----- Factory --------------------------------------------------------------
const std::vector<std::string>& target_names() {
  static const std::vector<std::string> names = {"gaussian", "neal100", "mixture", "funnel",
                                                 "banana", "double_well"};
  return names;
}

AnalyticEnergy make_target(const std::string& text, int64_t default_dim) {
  Spec spec("target", text);
  const std::string& name = spec.name();
  // Each target's own default dimension applies when neither the spec nor the
  // caller gives one.
  auto dim_or = [&](int64_t fallback) {
    // (the spec's dim= and the caller's --dim must agree: 3 was taken
    // silently for gaussian:dim=3 with --dim 4)
    // (a spec's key is read once: reading takes it)
    const auto own = spec.integer("dim");
    if (own && default_dim > 0)
      EBM_CHECK_USAGE(*own == default_dim, "target '", text, "': dim=", *own, " disagrees with --dim ", default_dim);
    int64_t d = own.value_or(default_dim > 0 ? default_dim : fallback);
    EBM_CHECK_CONFIG(d >= 1, "target '", text, "': dim must be >= 1, got ", d);
    return d;
  };
  AnalyticEnergy out;
  if (name == "gaussian") {
    const int64_t dim = dim_or(2);
    if (auto cond = spec.number("cond")) {
      // Diagonal, variances log-spaced from 1/cond to 1 (condition number cond).
      EBM_CHECK_CONFIG(*cond >= 1 && *cond <= 1e12, "target '", text,
                       "': cond must be in [1, 1e12], got ", *cond);
      auto var = torch::logspace(-std::log10(*cond), 0.0, dim, 10.0, torch::kDouble);
      if (dim == 1) var = torch::ones({1}, torch::kDouble);
      out = std::make_shared<GaussianEnergyImpl>(torch::zeros({dim}, torch::kDouble), torch::diag(var));
    } else {
      // Correlated: cov_ij = rho^|i-j| (an AR(1) correlation matrix).
      double rho = spec.number("rho").value_or(0.5);
      EBM_CHECK_CONFIG(rho > -1 && rho < 1, "target '", text, "': rho must be in (-1, 1), got ", rho);
      auto idx = torch::arange(dim, torch::kDouble);
      auto lag = (idx.unsqueeze(0) - idx.unsqueeze(1)).abs();
      auto cov = torch::pow(torch::tensor(rho, torch::kDouble), lag);
      out = std::make_shared<GaussianEnergyImpl>(torch::zeros({dim}, torch::kDouble), cov);
    }
  } else if (name == "neal100") {
    // Neal (2011), section 5.4.4: independent, standard deviations 0.01, 0.02, ..., 1.00.
    auto sd = torch::arange(1, 101, torch::kDouble) / 100.0;
    out = std::make_shared<GaussianEnergyImpl>(torch::zeros({100}, torch::kDouble),
                                               torch::diag(sd * sd));
  } else if (name == "mixture") {
    const int64_t dim = dim_or(2);
    EBM_CHECK_CONFIG(dim >= 2, "mixture target needs dim >= 2, got ", dim);
    auto means = torch::zeros({3, dim}, torch::kDouble);
    means[0][0] = -2.0;
    means[1][0] = 2.0;
    means[2][1] = 2.5;
    out = std::make_shared<MixtureEnergyImpl>(torch::tensor({0.5, 0.3, 0.2}), means,
                                              torch::tensor({0.5, 0.7, 0.6}));
  } else if (name == "funnel") {
    // Neal's funnel: y ~ N(0, 3^2), x_1..9 | y ~ N(0, exp(y/2)^2) in 10 dimensions.
    out = std::make_shared<FunnelEnergyImpl>(dim_or(10));
  } else if (name == "banana") {
    EBM_CHECK_CONFIG(dim_or(2) == 2, "banana target is 2-dimensional");
    out = std::make_shared<BananaEnergyImpl>(1.0, 0.5, spec.number("b").value_or(0.5));
  } else if (name == "double_well") {
    const int64_t dim = dim_or(2);
    out = std::make_shared<DoubleWellEnergyImpl>(dim, spec.number("barrier").value_or(2.0));
  } else {
    std::string known;
    for (const auto& n : target_names()) known += (known.empty() ? "" : ", ") + n;
    fail(ExitCode::kBadConfig, "unknown target '", name, "' (known: ", known, ")");
  }
  spec.finish();
  return out;
}

}  // namespace ebm
