// PGD attacks (eval/robustness.h): the loss rises monotonically on a linear
// model, the attacked points never leave the epsilon ball or the pixel
// range, and a linear classifier's robust accuracy equals its closed form
// (correct, and margin / dual norm of the weight difference > eps).
#include <gtest/gtest.h>

#include "common/errors.h"
#include "common/nets.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/eval/robustness.h"

using namespace ebm;

namespace {
// Logits f(x) = W x + b, E(x, y) = -f(x)[y], E(x) = -logsumexp f(x).
class LinearClassifier : public EnergyImpl {
 public:
  LinearClassifier(torch::Tensor w, torch::Tensor b) {
    w_ = register_parameter("w", std::move(w));
    b_ = register_parameter("b", std::move(b));
  }
  torch::Tensor class_energies(const torch::Tensor& x) override { return -(x.flatten(1).mm(w_.t()) + b_); }
  torch::Tensor energy(const torch::Tensor& x) override { return -torch::logsumexp(-class_energies(x), 1); }
  int64_t num_classes() const override { return w_.size(0); }
  std::vector<int64_t> event_shape() const override { return {w_.size(1)}; }
  torch::Tensor w_, b_;
};

std::shared_ptr<LinearClassifier> binary_linear(int64_t d, at::Generator& gen) {
  return std::make_shared<LinearClassifier>(at::normal(0.0, 1.0, {2, d}, gen, torch::TensorOptions(torch::kDouble)),
                                            at::normal(0.0, 0.5, {2}, gen, torch::TensorOptions(torch::kDouble)));
}
}  // namespace

TEST(Pgd, LossRisesMonotonicallyOnALinearModel) {
  auto gen = make_generator(3, kStreamEval);
  auto net = binary_linear(6, gen);
  auto x = at::normal(0.0, 1.0, {300, 6}, gen, torch::TensorOptions(torch::kDouble));
  auto y = at::randint(0, 2, {300}, gen, torch::TensorOptions(torch::kLong));
  for (const std::string norm : {"linf", "l2"}) {
    AttackOptions o;
    o.norm = norm;
    o.eps = 0.4;
    o.steps = 12;
    auto r = pgd_attack(*net, x, y, o, gen, 128);
    ASSERT_EQ(r.trace.size(), 13u);
    for (size_t s = 0; s + 1 < r.trace.size(); ++s)
      EXPECT_GE(r.trace[s + 1], r.trace[s] - 1e-12) << norm << " step " << s;
    EXPECT_GT(r.trace.back(), r.trace.front() + 0.1) << norm;
  }
}

TEST(Pgd, StaysInTheBallAndThePixelRange) {
  auto gen = make_generator(4, kStreamEval);
  auto means = at::rand({3, 16}, gen, torch::kDouble) * 2 - 1;
  test_helpers::ClassQuadratics net(means, {1, 4, 4});
  auto x = at::rand({50, 1, 4, 4}, gen, torch::kDouble) * 2 - 1;
  auto y = at::randint(0, 3, {50}, gen, torch::TensorOptions(torch::kLong));
  for (const std::string norm : {"linf", "l2"})
    for (double eps : {0.0, 0.3, 1.5}) {
      AttackOptions o;
      o.norm = norm;
      o.eps = eps;
      o.steps = 6;
      o.restarts = 3;
      o.lo = -1;
      o.hi = 1;
      o.step_size = 0.5;  // (large steps: the projection does the work)
      auto r = pgd_attack(net, x, y, o, gen, 16);
      auto d = (r.x - x).flatten(1);
      EXPECT_GE(r.x.min().item<double>(), -1.0);
      EXPECT_LE(r.x.max().item<double>(), 1.0);
      if (norm == "linf")
        EXPECT_LE(d.abs().max().item<double>(), eps + 1e-12) << eps;
      else
        EXPECT_LE(d.norm(2, 1).max().item<double>(), eps * (1 + 1e-12) + 1e-12) << eps;
      if (eps == 0) {
        EXPECT_TRUE(torch::equal(r.x, x));
      }
      // Robust rows are classified correctly at the point returned.
      auto pred = net.class_energies(r.x).argmin(1);
      EXPECT_TRUE((pred.eq(y) | r.robust.logical_not()).all().item<bool>());
    }
}

TEST(Pgd, LinearClassifierMatchesTheClosedForm) {
  auto gen = make_generator(5, kStreamEval);
  const int64_t d = 5, n = 2000;
  auto net = binary_linear(d, gen);
  auto x = at::normal(0.0, 1.0, {n, d}, gen, torch::TensorOptions(torch::kDouble));
  // Labels from another linear rule: some rows are misclassified to begin with.
  auto v = at::normal(0.0, 1.0, {d}, gen, torch::TensorOptions(torch::kDouble));
  auto y = (x.mv(v) > 0).to(torch::kLong);
  auto logits = -net->class_energies(x).detach();
  const auto wdiff = (net->w_[1] - net->w_[0]).detach();
  // Signed margin of the true class: f_y - f_other.
  auto sign = (y * 2 - 1).to(torch::kDouble);
  auto margin = sign * (logits.select(1, 1) - logits.select(1, 0));
  for (const std::string norm : {"linf", "l2"}) {
    const double dual = norm == "linf" ? wdiff.abs().sum().item<double>() : wdiff.norm().item<double>();
    for (double eps : {0.05, 0.2, 0.6}) {
      AttackOptions o;
      o.norm = norm;
      o.eps = eps;
      o.steps = 20;
      auto r = pgd_attack(*net, x, y, o, gen);
      auto want = margin / dual > eps;  // (correct rows have margin > 0)
      auto clear = ((margin / dual - eps).abs() > 1e-9);  // (no rows on the boundary)
      EXPECT_TRUE((r.robust.eq(want) | clear.logical_not()).all().item<bool>()) << norm << " eps " << eps;
      const double acc = r.robust.to(torch::kDouble).mean().item<double>();
      const double closed = want.to(torch::kDouble).mean().item<double>();
      EXPECT_NEAR(acc, closed, 1e-12) << norm << " eps " << eps;
      EXPECT_GT(closed, 0.05);
      EXPECT_LT(closed, 0.95);
    }
  }
}

TEST(Pgd, BadOptionsAndNonClassifiersAreUsageErrors) {
  auto gen = make_generator(6, kStreamEval);
  auto net = binary_linear(3, gen);
  auto x = torch::zeros({4, 3}, torch::kDouble);
  auto y = torch::zeros({4}, torch::kLong);
  auto code = [&](auto edit) {
    AttackOptions o;
    edit(o);
    return test_helpers::code_of([&] { pgd_attack(*net, x, y, o, gen); });
  };
  EXPECT_EQ(code([](AttackOptions& o) { o.eps = -0.1; }), ExitCode::kUsage);
  EXPECT_EQ(code([](AttackOptions& o) { o.steps = 0; }), ExitCode::kUsage);
  EXPECT_EQ(code([](AttackOptions& o) { o.restarts = 0; }), ExitCode::kUsage);
  EXPECT_EQ(code([](AttackOptions& o) { o.norm = "l1"; }), ExitCode::kUsage);
  GaussianEnergyImpl g(torch::zeros({3}, torch::kDouble), torch::eye(3, torch::kDouble));
  EXPECT_EQ(test_helpers::code_of([&] { pgd_attack(g, x, y, AttackOptions(), gen); }), ExitCode::kUsage);
}
