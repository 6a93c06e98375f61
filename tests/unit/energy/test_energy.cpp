// MLP analytic input gradient vs autograd vs finite differences (float64), and
// the analytic targets' normalisation and gradients.
#include <gtest/gtest.h>

#include "ebm/core/device.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/core/simd.h"
#include "ebm/energy/conv.h"
#include "ebm/energy/energy.h"
#include "ebm/energy/resnet.h"
#include "ebm/energy/standardized.h"
#include "common/errors.h"
#include "common/nets.h"

using namespace ebm;

namespace {
torch::Tensor fd_grad(EnergyImpl& e, const torch::Tensor& x, double h = 1e-6) {
  torch::NoGradGuard ng;
  auto g = torch::zeros_like(x);
  for (int64_t j = 0; j < x.size(1); ++j) {
    auto xp = x.clone(), xm = x.clone();
    xp.select(1, j).add_(h);
    xm.select(1, j).add_(-h);
    g.select(1, j).copy_((e.energy(xp) - e.energy(xm)) / (2 * h));
  }
  return g;
}

struct MlpCase {
  std::string act;
  bool sn;
  double prior;
};
}  // namespace

class MlpGrad : public ::testing::TestWithParam<MlpCase> {};

namespace {
// A float64 MLP 3-16-8-1 of the case, in eval mode (no power iteration
// between evaluations); with spectral normalisation, u is past its initial guess.
MLPEnergy double_mlp(const MlpCase& c, at::Generator& gen) {
  MLPEnergy net(MLPEnergyOptions(3, {16, 8}).activation(c.act).spectral_norm(c.sn).prior_std(c.prior));
  reset_parameters(*net, gen);
  net->to(torch::kDouble);
  if (c.sn) {
    net->train();
    for (int i = 0; i < 3; ++i) net->energy(torch::zeros({1, 3}, torch::kDouble));
  }
  net->eval();
  return net;
}
}  // namespace

TEST_P(MlpGrad, AnalyticMatchesAutogradAndFiniteDifferences) {
  const auto c = GetParam();
  auto gen = make_generator(7, kStreamInit);
  auto net = double_mlp(c, gen);
  auto x = at::normal(0.0, 1.5, {32, 3}, gen, torch::kDouble);
  auto [e_fast, g_fast] = net->energy_and_grad(x);
  auto [e_auto, g_auto] = net->EnergyImpl::energy_and_grad(x);
  // Same math in a different order: agreement to float64 rounding.
  EXPECT_TRUE(torch::allclose(e_fast, e_auto, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(g_fast, g_auto, 1e-10, 1e-12))
      << (g_fast - g_auto).abs().max().item<double>();
  EXPECT_TRUE(torch::allclose(net->grad(x), g_auto, 1e-10, 1e-12));
  // Central differences: truncation O(h^2) ~ 1e-12, rounding ~ 1e-16/h ~ 1e-10;
  // leaky_relu / elu kinks are hit with probability ~0 at these points.
  auto g_fd = fd_grad(*net, x);
  EXPECT_TRUE(torch::allclose(g_fast, g_fd, 1e-6, 1e-7))
      << (g_fast - g_fd).abs().max().item<double>();
}

namespace {
// Gradients of sum_b w_b E(x_b) w.r.t. the parameters. With x requiring grad
// energy() takes its ATen form (the reference); without, the fast pass whose
// backward is hand-written. second: also the gradient of |grad|^2 (a
// create_graph backward, which the fast pass answers by recomputing).
std::vector<torch::Tensor> param_grads(MLPEnergyImpl& net, const torch::Tensor& x,
                                       const torch::Tensor& w, bool reference, bool second) {
  auto xin = reference ? x.clone().requires_grad_(true) : x;
  auto params = net.parameters();
  auto g = torch::autograd::grad({(net.energy(xin) * w).sum()}, params, {}, second, second);
  if (!second) return g;
  auto sq = torch::zeros({}, x.options());
  for (const auto& t : g) sq = sq + t.pow(2).sum();
  // (the output bias's gradient is constant: unused there)
  auto gg = torch::autograd::grad({sq}, params, {}, false, false, /*allow_unused=*/true);
  for (size_t i = 0; i < gg.size(); ++i)
    g.push_back(gg[i].defined() ? gg[i] : torch::zeros_like(params[i]));
  return g;
}
}  // namespace

TEST_P(MlpGrad, ParameterGradientMatchesAutograd) {
  const auto c = GetParam();
  auto gen = make_generator(8, kStreamInit);
  auto net = double_mlp(c, gen);
  auto x = at::normal(0.0, 1.5, {32, 3}, gen, torch::kDouble);
  auto w = at::normal(0.0, 1.0, {32}, gen, torch::kDouble);
  EXPECT_TRUE(torch::allclose(net->energy(x), net->energy(x.clone().requires_grad_(true)), 1e-12,
                              1e-12));
  for (bool second : {false, true}) {
    auto fast = param_grads(*net, x, w, false, second);
    auto ref = param_grads(*net, x, w, true, second);
    ASSERT_EQ(fast.size(), ref.size());
    for (size_t i = 0; i < ref.size(); ++i)
      EXPECT_TRUE(torch::allclose(fast[i], ref[i], 1e-10, 1e-12))
          << i << (second ? " second order " : " ") << (fast[i] - ref[i]).abs().max().item<double>();
  }
  // The accumulated .grad of a plain backward agrees too.
  net->zero_grad();
  (net->energy(x) * w).sum().backward();
  auto ref = param_grads(*net, x, w, true, false);
  auto params = net->parameters();
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_TRUE(torch::allclose(params[i].grad(), ref[i], 1e-10, 1e-12)) << i;
}

INSTANTIATE_TEST_SUITE_P(Activations, MlpGrad,
                         ::testing::Values(MlpCase{"swish", false, 0.0}, MlpCase{"softplus", false, 0.0},
                                           MlpCase{"elu", false, 0.0},
                                           MlpCase{"leaky_relu", false, 0.0},
                                           MlpCase{"swish", true, 0.0}, MlpCase{"swish", false, 2.0},
                                           MlpCase{"elu", true, 3.0}));

TEST(MlpEnergy, FloatFastPathMatchesAutograd) {
  auto gen = make_generator(1, kStreamInit);
  MLPEnergy net(MLPEnergyOptions(2, {128, 128}));
  reset_parameters(*net, gen);
  auto x = at::normal(0.0, 1.0, {1024, 2}, gen, torch::kFloat);
  for (int rep = 0; rep < 2; ++rep) {  // the second call reuses the workspace
    auto g = net->grad(x);
    auto g_auto = net->EnergyImpl::energy_and_grad(x).second;
    EXPECT_TRUE(torch::allclose(g, g_auto, 1e-4, 1e-6));
  }
  // A different batch size reallocates the workspace.
  auto x2 = x.narrow(0, 0, 7).contiguous();
  EXPECT_TRUE(torch::allclose(net->grad(x2), net->EnergyImpl::energy_and_grad(x2).second, 1e-4, 1e-6));
}

// Float paths: small input dimension (hand-written first and last layers),
// one or three hidden layers, every activation; and a wide input (GEMMs).
TEST(MlpEnergy, FloatPathsMatchAutogradForEveryShape) {
  auto gen = make_generator(2, kStreamInit);
  // Both kernel sets: the AVX-512 one (where the CPU has it) and the portable one.
  for (bool portable : {false, true}) {
    for (int64_t d : {1, 3, 4, 9}) {
      for (const auto& hidden : {std::vector<int64_t>{32}, std::vector<int64_t>{24, 16, 8}}) {
        for (const auto& act : mlp_activations()) {
          MLPEnergy net(
              MLPEnergyOptions(d, hidden).activation(act).prior_std(d == 3 ? 2.0 : 0.0));
          reset_parameters(*net, gen);
          auto x = at::normal(0.0, 1.0, {33, d}, gen, torch::kFloat);
          std::pair<torch::Tensor, torch::Tensor> eg;
          {
            ScopedPortableKernels scoped(portable);
            eg = net->energy_and_grad(x);
          }
          auto [e, g] = eg;
          auto [e_auto, g_auto] = net->EnergyImpl::energy_and_grad(x);
          const std::string what =
              std::to_string(d) + " " + act + (portable ? " portable" : "");
          EXPECT_TRUE(torch::allclose(e, e_auto, 1e-4, 1e-5)) << what;
          EXPECT_TRUE(torch::allclose(g, g_auto, 1e-4, 1e-5))
              << what << " " << (g - g_auto).abs().max().item<double>();
        }
      }
    }
  }
}

// The float swish sweep (on AVX-512 CPUs the cache-blocked one: chains in
// blocks of 32, output rows in register tiles of 8, 4, 3, 2 and 1, a directly
// formed first layer up to 8 inputs) against float64 on shapes that reach
// every tile and block edge. Yardstick: the error of ATen's float autograd
// against float64 on the same inputs; the sweep may be off by at most 4 times
// that, plus 1e-6 of the largest value (it sums in another order, and its
// sigmoid is within 1.5e-7 relative).
TEST(MlpEnergy, FloatSwishSweepMatchesFloat64OnEveryEdge) {
  auto gen = make_generator(5, kStreamInit);
  struct Shape {
    int64_t d;
    std::vector<int64_t> hidden;
    double prior;
    bool sn;
  };
  const std::vector<Shape> shapes = {{2, {128, 128}, 0.0, false}, {5, {13}, 0.0, false},
                                     {8, {7, 33, 6}, 1.5, false}, {12, {1}, 0.0, false},
                                     {1, {20, 3}, 0.0, true},     {64, {44, 36}, 0.0, false}};
  for (const auto& sh : shapes) {
    const auto opts = MLPEnergyOptions(sh.d, sh.hidden).prior_std(sh.prior).spectral_norm(sh.sn);
    MLPEnergy net(opts);
    reset_parameters(*net, gen);
    MLPEnergy ref = test_helpers::float64_copy(net);
    for (int64_t batch : {1, 31, 32, 97}) {
      auto x = at::normal(0.0, 1.5, {batch, sh.d}, gen, torch::kFloat);
      auto [e64, g64] = ref->EnergyImpl::energy_and_grad(x.to(torch::kDouble));
      auto [e_at, g_at] = net->EnergyImpl::energy_and_grad(x);
      auto [e, g] = net->energy_and_grad(x);
      auto g_only = net->grad(x);
      auto err = [](const torch::Tensor& a, const torch::Tensor& b) {
        return (a.to(torch::kDouble) - b).abs().max().item<double>();
      };
      const double e_tol = 4 * err(e_at, e64) + 1e-6 * e64.abs().max().item<double>();
      const double g_tol = 4 * err(g_at, g64) + 1e-6 * g64.abs().max().item<double>();
      const std::string what = std::to_string(sh.d) + " inputs, " +
                               std::to_string(sh.hidden.size()) + " layers, batch " +
                               std::to_string(batch);
      EXPECT_LE(err(e, e64), e_tol) << what;
      EXPECT_LE(err(g, g64), g_tol) << what;
      EXPECT_LE(err(g_only, g64), g_tol) << what;
    }
  }
}

// With several threads the sweep splits the rows into chunks of whole
// blocks; rows are independent, so the result is the same to the bit.
TEST(MlpEnergy, FloatSweepIsTheSameOnTwoThreads) {
  auto gen = make_generator(6, kStreamInit);
  MLPEnergy net(MLPEnergyOptions(2, {64, 48}));
  reset_parameters(*net, gen);
  auto x = at::normal(0.0, 1.5, {1000, 2}, gen, torch::kFloat);
  const int before = at::get_num_threads();
  at::set_num_threads(1);
  auto [e1, g1] = net->energy_and_grad(x);
  e1 = e1.clone(), g1 = g1.clone();
  at::set_num_threads(2);
  auto [e2, g2] = net->energy_and_grad(x);
  at::set_num_threads(before);
  EXPECT_TRUE(torch::equal(e1, e2));
  EXPECT_TRUE(torch::equal(g1, g2));
}

// The float training pass (fast forward, hand-written parameter gradient) on
// every shape the forward sweep distinguishes, with both kernel sets.
TEST(MlpEnergy, FloatParameterGradientMatchesAutogradForEveryShape) {
  auto gen = make_generator(3, kStreamInit);
  for (bool portable : {false, true}) {
    for (int64_t d : {1, 2, 9}) {
      for (const auto& hidden : {std::vector<int64_t>{32}, std::vector<int64_t>{24, 16, 8}}) {
        for (const auto& act : mlp_activations()) {
          MLPEnergy net(MLPEnergyOptions(d, hidden).activation(act));
          reset_parameters(*net, gen);
          auto x = at::normal(0.0, 1.0, {33, d}, gen, torch::kFloat);
          auto w = at::normal(0.0, 1.0, {33}, gen, torch::kFloat);
          std::vector<torch::Tensor> fast;
          {
            ScopedPortableKernels scoped(portable);
            fast = param_grads(*net, x, w, false, false);
          }
          auto ref = param_grads(*net, x, w, true, false);
          const std::string what = std::to_string(d) + " " + act + (portable ? " portable" : "");
          for (size_t i = 0; i < ref.size(); ++i)
            EXPECT_TRUE(torch::allclose(fast[i], ref[i], 1e-4, 1e-5))
                << what << " param " << i << " " << (fast[i] - ref[i]).abs().max().item<double>();
        }
      }
    }
  }
}

// Without a graph, inputs past 65536 rows are evaluated in chunks: the same
// energies as the ATen form, rows in order (the chunk boundary included).
TEST(MlpEnergy, LargeInputsWithoutAGraphMatchInChunks) {
  auto gen = make_generator(4, kStreamInit);
  MLPEnergy net(MLPEnergyOptions(2, {8, 8}));
  reset_parameters(*net, gen);
  auto x = at::normal(0.0, 1.0, {70001, 2}, gen, torch::kFloat);
  torch::Tensor e;
  {
    torch::NoGradGuard ng;
    e = net->energy(x);
  }
  auto e_ref = net->energy(x.clone().requires_grad_(true)).detach();
  ASSERT_EQ(e.size(0), 70001);
  EXPECT_TRUE(torch::allclose(e, e_ref, 1e-4, 1e-5)) << (e - e_ref).abs().max().item<double>();
}

TEST(MlpEnergy, BadOptionsAndShapesAreUserErrors) {
  auto code = [](auto f) {
    try {
      f();
    } catch (const Error& e) {
      return e.code();
    }
    return ExitCode::kOk;
  };
  EXPECT_EQ(code([] { MLPEnergy(MLPEnergyOptions(2, {})); }), ExitCode::kBadConfig);
  EXPECT_EQ(code([] { MLPEnergy(MLPEnergyOptions(2, {8}).activation("tanhh")); }),
            ExitCode::kBadConfig);
  EXPECT_EQ(code([] { MLPEnergy(MLPEnergyOptions(2, {8, -1})); }), ExitCode::kBadConfig);
  MLPEnergy net(MLPEnergyOptions(2, {8}));
  EXPECT_EQ(code([&] { net->grad(torch::zeros({4, 3})); }), ExitCode::kBadData);
}

TEST(ResetParameters, SameSeedSameWeights) {
  MLPEnergy a(MLPEnergyOptions(2, {8, 8})), b(MLPEnergyOptions(2, {8, 8}));
  auto g1 = make_generator(3, kStreamInit), g2 = make_generator(3, kStreamInit);
  reset_parameters(*a, g1);
  reset_parameters(*b, g2);
  auto pa = a->parameters(), pb = b->parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i]));
  // Bound 1/sqrt(fan_in) = 1/sqrt(8) for the second layer.
  EXPECT_LE(pa[2].abs().max().item<double>(), 1.0 / std::sqrt(8.0));
}

// log Z of each 2D target against a fine midpoint-rule quadrature.
TEST(AnalyticTargets, LogZMatchesQuadrature) {
  for (const auto& name : target_names()) {
    // The funnel's x scale exp(y/2) reaches ~90 at y = 9: no fixed grid
    // holds it; its log Z is a product of two Gaussian normalisers.
    if (name == "funnel" || name == "neal100") continue;
    auto t = make_target(name, 2);
    const double lo = -30, hi = 30;  // funnel mass reaches far in x
    const int64_t n = 3000;
    const double h = (hi - lo) / n;
    auto xs = lo + h * (torch::arange(n, torch::kDouble) + 0.5);
    auto grid = torch::stack(torch::meshgrid({xs, xs}, "ij"), -1).view({-1, 2});
    torch::NoGradGuard ng;
    double lz = torch::logsumexp(-t->energy(grid), 0).item<double>() + 2 * std::log(h);
    EXPECT_NEAR(lz, t->log_z(), 1e-6) << name;
  }
}

TEST(AnalyticTargets, AnalyticGradMatchesAutograd) {
  auto gen = make_generator(5, kStreamInit);
  for (const auto& name : target_names()) {
    auto t = make_target(name, 2);
    auto x = at::normal(0.0, 1.0, {16, t->dim()}, gen, torch::kDouble);
    // neal100 at its own scale: at unit scale its energy (~1e5) leaves the
    // finite differences with rounding errors above the tolerance.
    if (name == "neal100") x = x * t->covariance().diagonal().sqrt();
    auto g = t->grad(x);
    auto g_auto = t->EnergyImpl::energy_and_grad(x).second;
    EXPECT_TRUE(torch::allclose(g, g_auto, 1e-10, 1e-12)) << name;
    EXPECT_TRUE(torch::allclose(g, fd_grad(*t, x), 1e-6, 1e-7)) << name;
  }
}

TEST(AnalyticTargets, SpecsWithOptions) {
  // gaussian:cond: diagonal, variances log-spaced from 1/cond to 1.
  auto g = make_target("gaussian:dim=100,cond=100");
  auto var = g->covariance().diagonal();
  EXPECT_EQ(g->dim(), 100);
  EXPECT_NEAR(var[0].item<double>(), 0.01, 1e-15);
  EXPECT_NEAR(var[99].item<double>(), 1.0, 1e-15);
  EXPECT_NEAR((var[1] / var[0]).item<double>(), std::pow(100.0, 1.0 / 99), 1e-12);
  EXPECT_EQ(g->covariance().count_nonzero().item<int64_t>(), 100);
  // neal100: standard deviations 0.01, 0.02, ..., 1.00.
  auto n = make_target("neal100");
  auto sd = n->covariance().diagonal().sqrt();
  EXPECT_EQ(n->dim(), 100);
  EXPECT_NEAR(sd[0].item<double>(), 0.01, 1e-15);
  EXPECT_NEAR(sd[49].item<double>(), 0.50, 1e-15);
  EXPECT_NEAR(sd[99].item<double>(), 1.00, 1e-15);
  // The diagonal fast path equals the dense formula, energy and gradient.
  auto gen = make_generator(6, kStreamInit);
  auto x = at::normal(0.0, 1.0, {8, 100}, gen, torch::kDouble);
  auto prec = torch::inverse(n->covariance());
  auto [e, gr] = n->energy_and_grad(x);
  EXPECT_TRUE(torch::allclose(e, 0.5 * (torch::mm(x, prec) * x).sum(1), 1e-12, 0));
  EXPECT_TRUE(torch::allclose(gr, torch::mm(x, prec), 1e-12, 0));
  EXPECT_TRUE(torch::allclose(n->energy(x), e, 1e-12, 0));
  // Each target's default dimension; an explicit dim wins.
  EXPECT_EQ(make_target("funnel")->dim(), 10);
  EXPECT_EQ(make_target("funnel:dim=5")->dim(), 5);
  EXPECT_EQ(make_target("gaussian", 7)->dim(), 7);
  for (const std::string bad : {"gaussian:cond=0.5", "gaussian:dim=x", "neal100:dim=3",
                                "gaussian:rho=1", "banana:dim=3"}) {
    try {
      make_target(bad);
      FAIL() << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ExitCode::kBadConfig) << bad;
    }
  }
}

TEST(AnalyticTargets, UnknownNameIsConfigError) {
  try {
    make_target("nope", 2);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadConfig);
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
  }
}

// An energy in the user's units: E_u((x - shift) / scale) + sum log scale,
// its gradient by the chain rule, and the inner energy for samplers.
TEST(StandardizedEnergy, UnitsAndJacobian) {
  torch::manual_seed(5);
  auto inner = std::make_shared<MLPEnergyImpl>(MLPEnergyOptions(2, {8}).prior_std(2.0));
  inner->to(torch::kDouble);
  AffineMap map{torch::tensor({1000.0, -3.0}, torch::kDouble), torch::tensor({100.0, 0.5}, torch::kDouble)};
  auto outer = std::make_shared<StandardizedEnergyImpl>(inner, map);
  auto x = torch::tensor({{1010.0, -3.2}, {950.0, -2.0}, {1000.0, -3.0}}, torch::kDouble);
  auto u = (x - map.shift) / map.scale;
  const double log_det = std::log(100.0) + std::log(0.5);
  EXPECT_TRUE(torch::allclose(outer->energy(x), inner->energy(u) + log_det, 1e-12, 1e-12));
  auto xg = x.clone().requires_grad_(true);
  auto want = torch::autograd::grad({outer->energy(xg).sum()}, {xg})[0];
  EXPECT_TRUE(torch::allclose(outer->grad(x), want, 1e-10, 1e-12));
  auto [e, g] = outer->energy_and_grad(x);
  EXPECT_TRUE(torch::allclose(e, outer->energy(x), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(g, want, 1e-10, 1e-12));
  EXPECT_EQ(outer->event_shape(), std::vector<int64_t>{2});
  auto [view, m] = sampling_view(Energy(outer));
  EXPECT_EQ(view.get(), inner.get());
  EXPECT_TRUE(torch::allclose(m.to_user(m.to_model(x)), x, 1e-12, 1e-9));
  auto [same, none] = sampling_view(Energy(inner));
  EXPECT_EQ(same.get(), inner.get());
  EXPECT_FALSE(none.defined());
  // (the weights are the inner energy's: one set of parameters)
  EXPECT_EQ(outer->parameters().size(), inner->parameters().size());
  // rows of another width: one error, not a broadcast ([B, 1] was read as (v, v))
  for (const auto& wrong : {torch::ones({3, 1}, torch::kDouble), torch::ones({3, 3}, torch::kDouble),
                            torch::ones({2}, torch::kDouble)}) {
    EXPECT_THROW(outer->energy(wrong), Error);
    EXPECT_THROW(outer->grad(wrong), Error);
    EXPECT_THROW(outer->energy_and_grad(wrong), Error);
  }
  AffineMap bad{torch::tensor({0.0, 0.0}, torch::kDouble), torch::tensor({1.0, 0.0}, torch::kDouble)};
  EXPECT_THROW(StandardizedEnergyImpl(inner, bad), Error);
  AffineMap fit = AffineMap::standardize(torch::tensor({{1.0, 5.0}, {3.0, 5.0}}));
  EXPECT_TRUE(torch::allclose(fit.shift, torch::tensor({2.0, 5.0}, torch::kDouble)));
  EXPECT_TRUE(torch::allclose(fit.scale, torch::tensor({std::sqrt(2.0), 1.0}, torch::kDouble)));  // (a constant column: 1)
}

// ----- Image energies: conv and resnet, conditional and labelled ---------------
namespace {
// Central differences of E over every pixel of x [B, C, H, W] (rows are
// independent: one pixel is moved in every row at once), float64.
torch::Tensor fd_image_grad(EnergyImpl& e, const torch::Tensor& x, double h = 1e-6) {
  torch::NoGradGuard ng;
  const int64_t b = x.size(0);
  auto flat = x.reshape({b, -1});
  auto g = torch::zeros_like(flat);
  for (int64_t j = 0; j < flat.size(1); ++j) {
    auto xp = flat.clone(), xm = flat.clone();
    xp.select(1, j).add_(h);
    xm.select(1, j).add_(-h);
    g.select(1, j).copy_((e.energy(xp.view(x.sizes())) - e.energy(xm.view(x.sizes()))) / (2 * h));
  }
  return g.view(x.sizes());
}

// The input gradient (grad and energy_and_grad) against central differences.
// With h = 1e-6 truncation is O(h^2) ~ 1e-12 and rounding ~ eps |E| / h ~
// 1e-10: the tolerance is 1e-6 of the largest gradient element plus 1e-9.
void expect_grad_matches_fd(EnergyImpl& e, const torch::Tensor& x, const std::string& tag) {
  auto g = e.grad(x);
  auto [e2, g2] = e.energy_and_grad(x);
  ASSERT_EQ(g.sizes(), x.sizes()) << tag;
  torch::Tensor e_ref;
  {
    torch::NoGradGuard ng;
    e_ref = e.energy(x);
  }
  EXPECT_TRUE(torch::allclose(e2, e_ref, 1e-12, 1e-12)) << tag;
  EXPECT_TRUE(torch::equal(g, g2)) << tag;
  auto g_fd = fd_image_grad(e, x);
  const double scale = g.abs().max().item<double>();
  EXPECT_GT(scale, 0.0) << tag;
  const double err = (g - g_fd).abs().max().item<double>();
  EXPECT_LE(err, 1e-6 * scale + 1e-9) << tag << ": max |g - g_fd| = " << err << ", max |g| = " << scale;
}

// A float64 network in eval mode (fixed power-iteration vectors, past their
// initial guess when spectrally normalised), weights from a fixed seed.
template <class Net>
void prepare(Net& net, const std::vector<int64_t>& shape, uint64_t seed) {
  auto gen = make_generator(seed, kStreamInit);
  reset_parameters(*net, gen);
  net->to(torch::kDouble);
  net->train();
  std::vector<int64_t> s{2};
  s.insert(s.end(), shape.begin(), shape.end());
  for (int i = 0; i < 3; ++i) net->energy(torch::zeros(s, torch::kDouble));
  net->eval();
}

torch::Tensor image_batch(int64_t b, const std::vector<int64_t>& shape, uint64_t seed) {
  auto gen = make_generator(seed, kStreamData);
  std::vector<int64_t> s{b};
  s.insert(s.end(), shape.begin(), shape.end());
  return at::rand(s, gen, torch::kDouble) * 2 - 1;
}
}  // namespace

// The first-layer convolution with the hand-written input gradient is
// ATen's convolution: outputs and the gradients of x, W and b agree to float32
// rounding (relative 1e-5 of each tensor's largest entry), for one and three
// channels, strides 1 and 2, with and without padding.
TEST(SmallInputConv, MatchesAtenConvolutionAndItsGradients) {
  torch::manual_seed(3);
  struct Case { int64_t c, k, s, p, h; };
  for (const Case& c : {Case{1, 5, 2, 4, 28}, Case{1, 3, 1, 1, 28}, Case{3, 3, 2, 0, 9}, Case{2, 4, 3, 2, 11}}) {
    auto x = torch::randn({5, c.c, c.h, c.h}), w = torch::randn({7, c.c, c.k, c.k}), b = torch::randn({7});
    ASSERT_TRUE(ebm::small_input_conv_applies(x, w));
    auto go = torch::randn_like(torch::conv2d(x, w, b, {c.s, c.s}, {c.p, c.p}));
    auto grads = [&](bool fast) {
      auto xr = x.clone().requires_grad_(true), wr = w.clone().requires_grad_(true), br = b.clone().requires_grad_(true);
      auto y = fast ? ebm::small_input_conv2d(xr, wr, br, c.s, c.p) : torch::conv2d(xr, wr, br, {c.s, c.s}, {c.p, c.p});
      auto g = torch::autograd::grad({y}, {xr, wr, br}, {go});
      return std::vector<torch::Tensor>{y.detach(), g[0], g[1], g[2]};
    };
    auto fast = grads(true), ref = grads(false);
    for (size_t i = 0; i < ref.size(); ++i) {
      const double scale = ref[i].abs().max().item<double>();
      EXPECT_LE((fast[i] - ref[i]).abs().max().item<double>(), 1e-5 * scale) << "case k" << c.k << " s" << c.s << " tensor " << i;
    }
  }
  EXPECT_FALSE(ebm::small_input_conv_applies(torch::zeros({1, 4, 8, 8}), torch::zeros({2, 4, 3, 3})));
  {
    ebm::FastPathsGuard off(false);  // (the ATen fallback)
    EXPECT_FALSE(ebm::small_input_conv_applies(torch::zeros({1, 1, 8, 8}), torch::zeros({2, 1, 3, 3})));
  }
  EXPECT_FALSE(ebm::small_input_conv_applies(torch::zeros({1, 1, 8, 8}, torch::kDouble), torch::zeros({2, 1, 3, 3}, torch::kDouble)));
}

TEST(ConvEnergy, InputGradientMatchesFiniteDifferences) {
  for (int64_t classes : {int64_t(0), int64_t(3)}) {
    for (const std::string act : {"swish", "softplus"}) {
      for (bool sn : {false, true}) {
        const std::vector<int64_t> shape{1, 12, 12};
        ConvEnergy net(ConvEnergyOptions(shape)
                           .channels({4, 6})
                           .kernels({3, 3})
                           .strides({2, 2})
                           .paddings({1, 1})
                           .hidden({8})
                           .activation(act)
                           .spectral_norm(sn)
                           .prior_std(sn ? 3.0 : 0.0)
                           .classes(classes));
        prepare(net, shape, 11);
        const std::string tag = "classes " + std::to_string(classes) + " " + act + (sn ? " sn" : "");
        expect_grad_matches_fd(*net, image_batch(3, shape, 12), tag);
      }
    }
  }
  // RGB input, no dense hidden layer.
  const std::vector<int64_t> rgb{3, 8, 8};
  ConvEnergy net(
      ConvEnergyOptions(rgb).channels({5}).kernels({3}).strides({2}).paddings({1}).hidden({}).classes(2));
  prepare(net, rgb, 13);
  expect_grad_matches_fd(*net, image_batch(2, rgb, 14), "rgb");
}

TEST(ResNetEnergy, InputGradientMatchesFiniteDifferences) {
  for (int64_t classes : {int64_t(0), int64_t(3)}) {
    for (bool sn : {true, false}) {
      const std::vector<int64_t> shape{3, 8, 8};
      // (two stages: a 1x1 skip, average pooling and an identity skip)
      ResNetEnergy net(
          ResNetEnergyOptions(shape).channels({4, 6}).blocks({1, 2}).spectral_norm(sn).classes(classes));
      prepare(net, shape, 21);
      const std::string tag = "classes " + std::to_string(classes) + (sn ? " sn" : "");
      expect_grad_matches_fd(*net, image_batch(2, shape, 22), tag);
    }
  }
}

TEST(LabelledEnergy, InputGradientMatchesFiniteDifferences) {
  const std::vector<int64_t> shape{1, 12, 12};
  auto conv = std::make_shared<ConvEnergyImpl>(
      ConvEnergyOptions(shape).channels({4, 6}).kernels({3, 3}).strides({2, 2}).paddings({1, 1}).hidden({8})
          .classes(3));
  auto gen = make_generator(31, kStreamInit);
  reset_parameters(*conv, gen);
  conv->to(torch::kDouble);
  conv->eval();
  LabelledEnergyImpl labelled(conv);
  auto x = image_batch(4, shape, 32);
  labelled.set_labels(torch::tensor({2, 0, 1, 2}, torch::kLong));
  expect_grad_matches_fd(labelled, x, "labels [B]");
  labelled.set_labels(torch::tensor({1}, torch::kLong));
  expect_grad_matches_fd(labelled, x, "label [1]");
  auto res =
      std::make_shared<ResNetEnergyImpl>(ResNetEnergyOptions({3, 8, 8}).channels({4}).blocks({1}).classes(2));
  reset_parameters(*res, gen);
  res->to(torch::kDouble);
  res->eval();
  LabelledEnergyImpl labelled_res(res);
  labelled_res.set_labels(torch::tensor({1, 0}, torch::kLong));
  expect_grad_matches_fd(labelled_res, image_batch(2, {3, 8, 8}, 33), "resnet labels [B]");
}

// A conditional energy's marginal is -logsumexp_y(-E(x, y)); its features are
// the penultimate activations; an unconditional one has neither classes nor
// class energies.
TEST(ConvEnergy, ConditionalEnergyIsTheMarginalOfTheClassEnergies) {
  const std::vector<int64_t> shape{1, 12, 12};
  auto x = image_batch(5, shape, 41);
  for (bool resnet : {false, true}) {
    Energy e = resnet ? Energy(std::make_shared<ResNetEnergyImpl>(
                            ResNetEnergyOptions(shape).channels({4, 6}).blocks({1, 1}).classes(3)))
                      : Energy(std::make_shared<ConvEnergyImpl>(ConvEnergyOptions(shape)
                                                                    .channels({4, 6})
                                                                    .kernels({3, 3})
                                                                    .strides({2, 2})
                                                                    .paddings({1, 1})
                                                                    .hidden({8})
                                                                    .classes(3)));
    const std::string tag = resnet ? "resnet" : "conv";
    auto gen = make_generator(42, kStreamInit);
    reset_parameters(*e, gen);
    e->to(torch::kDouble);
    e->eval();
    torch::NoGradGuard ng;
    EXPECT_EQ(e->num_classes(), 3) << tag;
    auto ce = e->class_energies(x);
    ASSERT_TRUE(ce.defined()) << tag;
    EXPECT_EQ(ce.sizes(), (c10::IntArrayRef{5, 3})) << tag;
    auto en = e->energy(x);
    EXPECT_EQ(en.sizes(), (c10::IntArrayRef{5})) << tag;
    EXPECT_TRUE(torch::allclose(en, -torch::logsumexp(-ce, 1), 1e-12, 1e-12)) << tag;
    // (the marginal is below every class energy: exp(-E) sums over classes)
    EXPECT_TRUE((en.unsqueeze(1) <= ce).all().item<bool>()) << tag;
    EXPECT_TRUE(torch::allclose(marginal_energy(ce, 3), en, 1e-12, 1e-12)) << tag;
    auto f = e->features(x);
    ASSERT_TRUE(f.defined()) << tag;
    EXPECT_EQ(f.sizes(), (c10::IntArrayRef{5, resnet ? 6 : 8})) << tag;
  }
  ConvEnergy plain(ConvEnergyOptions(shape).channels({4}).kernels({3}).strides({2}).paddings({1}).hidden({7}));
  torch::NoGradGuard ng;
  EXPECT_EQ(plain->num_classes(), 0);
  EXPECT_FALSE(plain->class_energies(x.to(torch::kFloat)).defined());
  EXPECT_EQ(plain->features(x.to(torch::kFloat)).sizes(), (c10::IntArrayRef{5, 7}));
  EXPECT_EQ(plain->energy(x.to(torch::kFloat)).sizes(), (c10::IntArrayRef{5}));
  // Without dense hidden layers the features are the flattened convolutions.
  ConvEnergy flat(ConvEnergyOptions(shape).channels({4}).kernels({3}).strides({2}).paddings({1}).hidden({}));
  EXPECT_EQ(flat->features(x.to(torch::kFloat)).sizes(), (c10::IntArrayRef{5, 4 * 6 * 6}));
  EXPECT_TRUE(torch::equal(marginal_energy(torch::tensor({{1.5}, {-2.0}}), 0), torch::tensor({1.5, -2.0})));
}

TEST(LabelledEnergy, PicksEachRowsClassEnergy) {
  const std::vector<int64_t> shape{1, 12, 12};
  auto conv = std::make_shared<ConvEnergyImpl>(
      ConvEnergyOptions(shape).channels({4}).kernels({3}).strides({2}).paddings({1}).hidden({8}).classes(3));
  auto x = image_batch(4, shape, 51).to(torch::kFloat);
  torch::NoGradGuard ng;
  auto ce = conv->class_energies(x);  // [4, 3]
  LabelledEnergyImpl labelled(conv);
  EXPECT_EQ(labelled.event_shape(), shape);
  EXPECT_EQ(&labelled.inner(), conv.get());
  EXPECT_THROW(labelled.energy(x), c10::Error);  // (no labels yet)
  labelled.set_labels(torch::tensor({2, 0, 1, 2}, torch::kLong));
  EXPECT_TRUE(torch::equal(labelled.energy(x), torch::stack({ce[0][2], ce[1][0], ce[2][1], ce[3][2]})));
  // One label for every row; other integer types are taken as int64.
  labelled.set_labels(torch::tensor({1}, torch::kInt));
  EXPECT_EQ(labelled.labels().scalar_type(), torch::kLong);
  EXPECT_TRUE(torch::equal(labelled.energy(x), ce.select(1, 1)));
  // Labels outside [0, K), of another shape or count, and an unconditional
  // inner energy are refused.
  EXPECT_THROW(labelled.set_labels(torch::tensor({0, 3}, torch::kLong)), c10::Error);
  EXPECT_THROW(labelled.set_labels(torch::tensor({-1}, torch::kLong)), c10::Error);
  EXPECT_THROW(labelled.set_labels(torch::zeros({2, 2}, torch::kLong)), c10::Error);
  EXPECT_THROW(labelled.set_labels(torch::zeros({0}, torch::kLong)), c10::Error);
  EXPECT_TRUE(torch::equal(labelled.energy(x), ce.select(1, 1)));  // (the last good labels stay)
  labelled.set_labels(torch::tensor({0, 1}, torch::kLong));
  EXPECT_THROW(labelled.energy(x), c10::Error);
  auto plain =
      std::make_shared<ConvEnergyImpl>(ConvEnergyOptions(shape).channels({4}).kernels({3}).strides({2}).paddings({1}));
  EXPECT_THROW(LabelledEnergyImpl{plain}, c10::Error);
}

TEST(ResNetEnergy, DefaultsScoreFashionMnistShapedImages) {
  ResNetEnergy net(ResNetEnergyOptions({1, 28, 28}));
  EXPECT_TRUE(net->options().spectral_norm());
  EXPECT_EQ(net->num_classes(), 0);
  // (one power-iteration vector per weight: the stem, two convs per block,
  // the 1x1 skips where the width changes (16 -> 32), the head)
  EXPECT_EQ(net->buffers().size(), 1u + 3 * 2 + 1 + 1);
  auto x = torch::rand({3, 1, 28, 28}) * 2 - 1;
  torch::NoGradGuard ng;
  auto e = net->energy(x);
  EXPECT_EQ(e.sizes(), (c10::IntArrayRef{3}));
  EXPECT_TRUE(torch::isfinite(e).all().item<bool>());
  EXPECT_EQ(net->features(x).sizes(), (c10::IntArrayRef{3, 32}));
  EXPECT_FALSE(net->class_energies(x).defined());
  // Another input shape is refused.
  EXPECT_THROW(net->energy(torch::zeros({3, 1, 27, 28})), c10::Error);
}

TEST(ImageEnergies, BadOptionsAreConfigErrors) {
  using test_helpers::code_of;
  const std::vector<int64_t> shape{1, 28, 28};
  std::string msg;
  EXPECT_EQ(code_of([&] { ResNetEnergy(ResNetEnergyOptions(shape).channels({16, 32}).blocks({1})); }, &msg),
            ExitCode::kBadConfig);
  EXPECT_NE(msg.find("energy.blocks"), std::string::npos) << msg;
  EXPECT_EQ(code_of([&] { ResNetEnergy(ResNetEnergyOptions(shape).channels({})); }), ExitCode::kBadConfig);
  EXPECT_EQ(code_of([&] { ResNetEnergy(ResNetEnergyOptions(shape).channels({16}).blocks({0})); }),
            ExitCode::kBadConfig);
  EXPECT_EQ(code_of([&] { ResNetEnergy(ResNetEnergyOptions(shape).classes(-1)); }), ExitCode::kBadConfig);
  EXPECT_EQ(code_of([&] { ResNetEnergy(ResNetEnergyOptions(shape).activation("tanhh")); }),
            ExitCode::kBadConfig);
  EXPECT_EQ(code_of([&] { ResNetEnergy(ResNetEnergyOptions({784})); }), ExitCode::kBadConfig);
  // (six stages pool a 28-pixel side to 14, 7, 3, 1, then below one pixel)
  const std::vector<int64_t> six{4, 4, 4, 4, 4, 4}, ones{1, 1, 1, 1, 1, 1};
  EXPECT_EQ(code_of([&] { ResNetEnergy(ResNetEnergyOptions(shape).channels(six).blocks(ones)); }),
            ExitCode::kBadConfig);
  EXPECT_EQ(code_of([&] { ConvEnergy(ConvEnergyOptions(shape).channels({4, 8}).kernels({3})); }, &msg),
            ExitCode::kBadConfig);
  EXPECT_NE(msg.find("energy.kernels"), std::string::npos) << msg;
  EXPECT_EQ(code_of([&] { ConvEnergy(ConvEnergyOptions(shape).classes(-2)); }), ExitCode::kBadConfig);
  auto too_wide = ConvEnergyOptions({1, 4, 4}).channels({4}).kernels({7}).strides({1}).paddings({0});
  EXPECT_EQ(code_of([&] { ConvEnergy{too_wide}; }), ExitCode::kBadConfig);
  EXPECT_EQ(code_of([&] { ConvEnergy(ConvEnergyOptions({16})); }), ExitCode::kBadConfig);
}
