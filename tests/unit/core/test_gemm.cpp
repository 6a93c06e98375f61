// core/gemm.h: the raw float32 products against a float64 reference, within
// the classical rounding bound |fl(AB) - AB| <= gamma_k |A| |B| (gamma_k =
// k u / (1 - k u), u = 2^-24), for every operand layout and for the shapes
// that take each path (thin outputs stay on BLAS).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ebm/core/gemm.h"

namespace ebm {
namespace {

// max over entries of |got - ref| / (gamma_{k+1} (|A||B| + |beta C0|)_ij +
// tiny), ref = A B + beta C0: <= 1 passes.
double bound_ratio(const torch::Tensor& got, const torch::Tensor& a, const torch::Tensor& b,
                   const torch::Tensor& c0 = {}, double beta = 0) {
  auto ad = a.to(torch::kDouble), bd = b.to(torch::kDouble);
  auto ref = torch::mm(ad, bd);
  auto mag = torch::mm(ad.abs(), bd.abs());
  if (c0.defined()) {
    ref = ref + beta * c0.to(torch::kDouble);
    mag = mag + std::abs(beta) * c0.to(torch::kDouble).abs();
  }
  const double k = double(a.size(1)) + 1, u = std::ldexp(1.0, -24);
  auto bound = mag * (k * u / (1 - k * u)) + 1e-30;
  return ((got.to(torch::kDouble) - ref).abs() / bound).max().item<double>();
}

TEST(Gemm, EveryLayoutAndPathWithinTheRoundingBound) {
  auto gen = at::detail::createCPUGenerator(7);
  // (m, k, n): square MLP shapes, thin outputs (BLAS), thin inner dimension.
  const std::vector<std::array<int64_t, 3>> shapes = {
      {64, 128, 128}, {33, 70, 17}, {100, 128, 2}, {128, 1024, 2}, {50, 2, 128}, {1, 5, 40}};
  for (auto [m, k, n] : shapes) {
    for (int layout = 0; layout < 4; ++layout) {
      const bool ta = layout & 1, tb = layout & 2;
      auto a = ta ? torch::randn({k, m}, gen).t() : torch::randn({m, k}, gen);
      auto b = tb ? torch::randn({n, k}, gen).t() : torch::randn({k, n}, gen);
      auto c = fast_mm(a, b);
      EXPECT_LE(bound_ratio(c, a, b), 1.0) << m << "x" << k << "x" << n << " layout " << layout;
      // out = a b + beta out
      auto c0 = torch::randn({m, n}, gen);
      auto out = c0.clone();
      mm_into(out, a, b, 0.5f);
      EXPECT_LE(bound_ratio(out, a, b, c0, 0.5), 1.0)
          << m << "x" << k << "x" << n << " layout " << layout << " beta 0.5";
    }
  }
}

// Operands that are slices of larger arrays (leading dimension above the
// width, non-zero storage offset), plainly or transposed, and k or n of 1.
TEST(Gemm, SlicedOperandsUseTheirStridesAndOffsets) {
  auto gen = at::detail::createCPUGenerator(8);
  const std::vector<std::array<int64_t, 3>> shapes = {{40, 64, 48}, {40, 1, 48}, {40, 64, 1}};
  for (auto [m, k, n] : shapes) {
    auto big_a = torch::randn({m + 5, k + 7}, gen), big_b = torch::randn({k + 3, n + 9}, gen);
    auto a = big_a.narrow(0, 2, m).narrow(1, 3, k);        // ld k + 7, offset
    auto b = big_b.narrow(0, 1, k).narrow(1, 4, n);        // ld n + 9, offset
    auto at_ = big_a.t().narrow(0, 3, k).narrow(1, 2, m);  // a^T as a sliced transposed view
    for (const auto& [x, y] : {std::pair{a, b}, std::pair{at_.t(), b}}) {
      EXPECT_LE(bound_ratio(fast_mm(x, y), x, y), 1.0) << m << "x" << k << "x" << n;
    }
  }
}

TEST(Gemm, EmptyInnerDimensionScalesTheOutput) {
  auto a = torch::zeros({3, 0}), b = torch::zeros({0, 20});
  auto out = torch::ones({3, 20});
  mm_into(out, a, b, 0.25f);
  EXPECT_TRUE(torch::allclose(out, torch::full({3, 20}, 0.25f)));
  EXPECT_TRUE(torch::equal(fast_mm(a, b), torch::zeros({3, 20})));
}

TEST(Gemm, GraphBuildingProductsStayDifferentiable) {
  auto a = torch::randn({8, 32}).requires_grad_(true);
  auto b = torch::randn({32, 24});
  auto c = fast_mm(a, b);
  ASSERT_TRUE(c.requires_grad());
  c.sum().backward();
  EXPECT_TRUE(torch::allclose(a.grad(), b.sum(1).expand({8, 32}), 1e-5, 1e-5));
  // mm_into under grad mode records the product too (beta 0 and 1).
  for (float beta : {0.0f, 1.0f}) {
    a.mutable_grad() = torch::Tensor();
    auto out = torch::ones({8, 24});
    mm_into(out, a, b, beta);
    ASSERT_TRUE(out.requires_grad());
    out.sum().backward();
    EXPECT_TRUE(torch::allclose(a.grad(), b.sum(1).expand({8, 32}), 1e-5, 1e-5)) << beta;
  }
  // Other dtypes go through ATen and give the same answer.
  auto ad = torch::randn({5, 20}, torch::kDouble), bd = torch::randn({20, 30}, torch::kDouble);
  EXPECT_TRUE(torch::allclose(fast_mm(ad, bd), torch::mm(ad, bd)));
  // An output overlapping an input is refused, not silently garbage.
  auto sq = torch::randn({16, 16});
  EXPECT_THROW(mm_into(sq, sq, torch::randn({16, 16})), c10::Error);
}

}  // namespace
}  // namespace ebm
