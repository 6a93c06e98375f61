// VERA's entropy estimator on a generator whose entropy is known in closed
// form: a linear generator x = W z + b + sigma eps, z ~ N(0, I_L), so q(x) =
// N(b, S) with S = W W^T + sigma^2 I and H = 1/2 log det(2 pi e S).
//  - the score estimate c = sum_k w_k (x - g(z_k)) / sigma^2 approaches
//    -d log q / dx = S^-1 (x - b) as the posterior samples grow;
//  - the surrogate's gradient d mean(c . x) / d theta is dH / d theta:
//    S^-1 W for W and sigma^2 tr(S^-1) for log sigma.
#include <gtest/gtest.h>

#include "ebm/core/rng.h"
#include "ebm/energy/generator.h"
#include "ebm/objectives/learned.h"

using namespace ebm;

namespace {
class LinearGenerator : public GeneratorImpl {
 public:
  LinearGenerator(torch::Tensor w, torch::Tensor b, double sigma)
      : GeneratorImpl(GeneratorOptions({w.size(0)}).latent_dim(w.size(1)).init_sigma(sigma)) {
    w_ = register_parameter("w", std::move(w));
    b_ = register_parameter("b", std::move(b));
    to(torch::kDouble);
  }
  torch::Tensor mean(const torch::Tensor& z) override { return z.mm(w_.t()) + b_; }
  std::vector<torch::Tensor> batch_norm_scales() const override { return {}; }
  torch::Tensor w_, b_;
};

struct Setup {
  std::shared_ptr<LinearGenerator> g;
  std::unique_ptr<Vera> vera;
  torch::Tensor s;  // S = W W^T + sigma^2 I
};

// The proposal's scale: 1.5 times the exact posterior's largest std.
Setup make(int64_t k) {
  auto gen = make_generator(11, kStreamInit);
  auto opts = torch::TensorOptions(torch::kDouble);
  auto w = at::normal(0.0, 1.0, {3, 2}, gen, opts);
  auto b = at::normal(0.0, 1.0, {3}, gen, opts);
  const double sigma = 0.6;
  Setup st;
  st.g = std::make_shared<LinearGenerator>(w, b, sigma);
  st.vera = std::make_unique<Vera>(VeraOptions().posterior_samples(k).sigma_max(1.0), st.g);
  auto post_cov = torch::linalg_inv(torch::eye(2, opts) + w.t().mm(w) / (sigma * sigma));
  torch::NoGradGuard ng;
  // (wider than the posterior in every direction, so the weights are bounded)
  st.vera->post_log_sigma().fill_(std::log(1.5 * std::sqrt(torch::linalg_eigvalsh(post_cov).max().item<double>())));
  st.s = w.mm(w.t()) + sigma * sigma * torch::eye(3, opts);
  return st;
}
}  // namespace

TEST(VeraEntropy, ScoreEstimateApproachesTheExactScore) {
  auto st = make(20000);
  auto gen = make_generator(12, kStreamTrain);
  auto z = at::normal(0.0, 1.0, {64, 2}, gen, torch::TensorOptions(torch::kDouble));
  torch::Tensor x;
  {
    torch::NoGradGuard ng;
    x = st.g->mean(z) + st.g->sigma() * at::normal(0.0, 1.0, {64, 3}, gen, torch::TensorOptions(torch::kDouble));
  }
  double ess = -1;
  auto c = st.vera->score_estimate(x, z, gen, &ess);
  auto exact = torch::linalg_solve(st.s, (x - st.g->b_.detach()).t(), true).t();  // S^-1 (x - b)
  const double rel = ((c - exact).norm() / exact.norm()).item<double>();
  // (measured 0.009; the error falls as 1 / sqrt(K): 0.04 at K = 1000)
  EXPECT_LT(rel, 0.03) << "relative error of the score estimate";
  // Few samples from a poor proposal are further off: the test can fail.
  auto st2 = make(2);
  {
    torch::NoGradGuard ng;
    st2.vera->post_log_sigma().fill_(std::log(2.0));
  }
  double ess2 = -1;
  auto c2 = st2.vera->score_estimate(x, z, gen, &ess2);
  EXPECT_GT(((c2 - exact).norm() / exact.norm()).item<double>(), 0.1);
  // The weights' effective sample size (the post_ess metric), a fraction of
  // K in [1/K, 1]: a proposal 1.5 times the posterior's width keeps a good
  // part of its draws; one several times wider keeps few.
  EXPECT_GT(ess, 0.15);  // (measured 0.24; 0.035 at the wide scale below)
  EXPECT_LE(ess, 1.0);
  EXPECT_GE(ess2, 0.5 - 1e-12);
  EXPECT_LE(ess2, 1.0 + 1e-12);
  auto st3 = make(20000);
  {
    torch::NoGradGuard ng;
    st3.vera->post_log_sigma().fill_(std::log(4.0));
  }
  double ess3 = -1;
  st3.vera->score_estimate(x, z, gen, &ess3);
  EXPECT_LT(ess3, 0.5 * ess) << "a proposal far wider than the posterior wastes its draws";
}

TEST(VeraEntropy, SurrogateGradientIsTheEntropyGradient) {
  auto st = make(200);
  auto gen = make_generator(13, kStreamTrain);
  const int64_t n = 40000;
  auto opts = torch::TensorOptions(torch::kDouble);
  auto z = at::normal(0.0, 1.0, {n, 2}, gen, opts);
  auto x = st.g->mean(z) + st.g->sigma() * at::normal(0.0, 1.0, {n, 3}, gen, opts);
  auto c = st.vera->score_estimate(x.detach(), z, gen);
  auto surrogate = (c * x).sum(1).mean();
  auto grads = torch::autograd::grad({surrogate}, {st.g->w_, st.g->log_sigma()});
  auto s_inv = torch::linalg_inv(st.s);
  auto want_w = s_inv.mm(st.g->w_.detach());
  const double sigma2 = st.g->sigma().item<double>() * st.g->sigma().item<double>();
  const double want_ls = sigma2 * s_inv.trace().item<double>();
  // Monte Carlo over n = 40,000 draws: measured 2.7% (W) and 0.3% (log sigma)
  // relative error; the bounds are about twice that.
  EXPECT_LT(((grads[0] - want_w).norm() / want_w.norm()).item<double>(), 0.06);
  EXPECT_NEAR(grads[1].item<double>(), want_ls, 0.02 * std::abs(want_ls));
}
