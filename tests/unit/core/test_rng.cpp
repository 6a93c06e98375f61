// The fast normal generator (core/rng.h) and the vectorisable elementary
// functions it is built from (core/simd.h).
//
// Statistical checks use fixed seeds and tolerances of z = 4.9 standard errors
// (two-sided false-alarm rate 1e-6 per check, ~1e-5 for the file); the KS
// bound is the asymptotic critical value at alpha = 1e-6.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>

#include "ebm/core/device.h"
#include "ebm/core/rng.h"
#include "ebm/core/simd.h"

namespace ebm {
namespace {
constexpr double kZ = 4.9;

double normal_cdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

#if EBM_AVX512_KERNELS
EBM_AVX512_BEGIN
// sigmoid_avx512 over the first min(16, n) of x.
EBM_TARGET_AVX512 void sigmoid_block(const float* x, float* out, size_t n) {
  const __mmask16 m = lanes_mask(int64_t(n));
  _mm512_mask_storeu_ps(out, m, sigmoid_avx512(_mm512_maskz_loadu_ps(m, x)));
}
EBM_AVX512_END
#endif

// Both sigmoids (the portable one and the AVX-512 one the swish kernels take
// on CPUs that have it) against float64 over [-100, 100], saturated ends
// included: relative error within a few float ulps.
TEST(SimdMath, SigmoidsMatchFloat64) {
  std::vector<float> v;
  for (int i = -2000000; i <= 2000000; ++i) v.push_back(float(i) * 5e-5f);  // [-100, 100]
  for (float x : {-1e30f, -1e4f, -88.5f, -87.9f, 87.9f, 88.5f, 1e4f, 1e30f}) v.push_back(x);
  auto check = [&](const char* name, auto f) {
    double worst = 0;
    float at = 0;
    for (float x : v) {
      const double ref = 1.0 / (1.0 + std::exp(-double(x)));
      const double got = f(x);
      // Relative error where the sigmoid is a normal float; else absolute.
      const double err = std::abs(got - ref) / std::max(ref, 1e-37);
      if (ref < 1e-37) {
        EXPECT_LT(std::abs(got - ref), 1e-37) << name << " at " << x;
      }
      if (ref >= 1e-37 && err > worst) worst = err, at = x;
    }
    EXPECT_LT(worst, 5e-7) << name << " worst at " << at;
  };
  check("sigmoid_approx", [](float x) { return double(sigmoid_approx(x)); });
#if EBM_AVX512_KERNELS
  if (cpu_has_avx512()) {
    std::vector<float> out(v.size() + 16);
    for (size_t i = 0; i < v.size(); i += 16) sigmoid_block(v.data() + i, out.data() + i, v.size() - i);
    size_t k = 0;
    check("sigmoid_avx512", [&](float) { return double(out[k++]); });
  }
#endif
}

TEST(SimdMath, LogAndSinCosMatchLibm) {
  double worst_log = 0, worst_trig = 0;
  for (int i = 1; i <= 200000; ++i) {
    // log over (0, 1], including tiny arguments
    const float x = std::ldexp(float(i) / 200000.0f, -(i % 40));
    const double ref = std::log(double(x));
    worst_log = std::max(worst_log, std::abs(double(log_approx(x)) - ref) / std::max(1.0, std::abs(ref)));
    const float t = float(i) / 200000.0f - 0.5f;  // [-0.5, 0.5]
    float s, c;
    sincos_turns(t, s, c);
    worst_trig = std::max(worst_trig, std::abs(double(s) - std::sin(2 * M_PI * double(t))));
    worst_trig = std::max(worst_trig, std::abs(double(c) - std::cos(2 * M_PI * double(t))));
  }
  EXPECT_LT(worst_log, 3e-7);  // absolute below |log x| = 1, relative above
  EXPECT_LT(worst_trig, 1e-6);
  EXPECT_EQ(log_approx(1.0f), 0.0f);
}

TEST(StandardNormal, DeterministicAndAdvancesTheGenerator) {
  auto g1 = make_generator(3, kStreamSample), g2 = make_generator(3, kStreamSample);
  auto a = standard_normal({1001}, g1, torch::kFloat);
  auto b = standard_normal({1001}, g2, torch::kFloat);
  EXPECT_TRUE(torch::equal(a, b));
  auto c = standard_normal({1001}, g1, torch::kFloat);
  EXPECT_FALSE(torch::equal(a, c));
  // odd sizes, a single element and empty tensors are filled completely
  for (int64_t n : {0, 1, 2, 7, 33}) {
    auto t = torch::full({n}, std::nan(""), torch::kFloat);
    normal_fill_(t, g1);
    EXPECT_TRUE(torch::isfinite(t).all().item<bool>()) << n;
    auto d = torch::full({n}, std::nan(""), torch::kDouble);
    normal_fill_(d, g1);
    EXPECT_TRUE(torch::isfinite(d).all().item<bool>()) << n;
  }
  auto nc = torch::empty({4, 4}).t();
  EXPECT_THROW(normal_fill_(nc, g1), c10::Error);
}

void check_standard_normal(torch::ScalarType dtype, bool fast = true) {
  FastPathsGuard guard(fast);
  const int64_t n = int64_t(1) << 21;
  auto gen = make_generator(11, kStreamSample);
  auto z = standard_normal({n}, gen, torch::TensorOptions().dtype(dtype)).to(torch::kDouble);
  const double se = 1.0 / std::sqrt(double(n));
  EXPECT_NEAR(z.mean().item<double>(), 0.0, kZ * se);
  EXPECT_NEAR(z.var().item<double>(), 1.0, kZ * std::sqrt(2.0) * se);
  // fourth moment 3, sd of z^4 is sqrt(105 - 9) = 9.80
  EXPECT_NEAR(z.pow(4).mean().item<double>(), 3.0, kZ * 9.80 * se);
  // tail mass beyond 3 and 4.5 sd
  for (double c : {3.0, 4.5}) {
    const double p = 2 * normal_cdf(-c);
    const double got = (z.abs() > c).to(torch::kDouble).mean().item<double>();
    EXPECT_NEAR(got, p, kZ * std::sqrt(p * (1 - p) / n)) << c;
  }
  // Kolmogorov-Smirnov distance to Phi, alpha = 1e-6: sqrt(-ln(alpha/2)/2)/sqrt(n)
  auto sorted = std::get<0>(z.sort());
  auto s = sorted.accessor<double, 1>();
  double d = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double f = normal_cdf(s[i]);
    d = std::max({d, f - double(i) / n, double(i + 1) / n - f});
  }
  EXPECT_LT(d, std::sqrt(-std::log(0.5e-6) / 2) * se);
  // The two halves (cosine and sine of one pair) and neighbours are uncorrelated.
  const int64_t h = n / 2;
  auto corr = [&](const torch::Tensor& a, const torch::Tensor& b) {
    return ((a - a.mean()) * (b - b.mean())).mean().item<double>() /
           (a.std().item<double>() * b.std().item<double>());
  };
  const double se_h = 1.0 / std::sqrt(double(h));
  EXPECT_NEAR(corr(z.slice(0, 0, h), z.slice(0, h, n)), 0.0, kZ * se_h);
  EXPECT_NEAR(corr(z.slice(0, 0, h).pow(2), z.slice(0, h, n).pow(2)), 0.0, kZ * se_h);
  EXPECT_NEAR(corr(z.slice(0, 0, n - 1), z.slice(0, 1, n)), 0.0, kZ * se);
}

TEST(StandardNormal, FloatMatchesTheNormalDistribution) { check_standard_normal(torch::kFloat); }
TEST(StandardNormal, DoubleMatchesTheNormalDistribution) { check_standard_normal(torch::kDouble); }

// The ATen path (what a CUDA tensor takes): ATen's normal_ with the generator
// passed in, standard normal in both dtypes.
TEST(StandardNormal, AtenPathIsNormalFromTheGenerator) {
  FastPathsGuard guard(false);
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    auto g1 = make_generator(5, kStreamSample), g2 = make_generator(5, kStreamSample);
    auto z = standard_normal({4, 7}, g1, dtype);
    EXPECT_TRUE(torch::equal(z, torch::empty({4, 7}, dtype).normal_(0.0, 1.0, g2)));
    // Non-contiguous tensors are fine here.
    auto nc = torch::empty({4, 4}, dtype).t();
    normal_fill_(nc, g1);
    EXPECT_TRUE(torch::isfinite(nc).all().item<bool>());
  }
}
TEST(StandardNormal, AtenPathFloatMatchesTheNormalDistribution) {
  check_standard_normal(torch::kFloat, false);
}
TEST(StandardNormal, AtenPathDoubleMatchesTheNormalDistribution) {
  check_standard_normal(torch::kDouble, false);
}

// CPU generators are what they were before devices became an option: a
// CPUGeneratorImpl seeded with mix_seed(seed, stream), whichever overload.
TEST(MakeGenerator, CpuStreamsAreUnchanged) {
  for (uint64_t seed : {0ULL, 7ULL, 123456789ULL})
    for (uint64_t stream : {uint64_t(kStreamInit), uint64_t(kStreamTrain), uint64_t(kStreamSample)}) {
      auto reference = at::make_generator<at::CPUGeneratorImpl>(mix_seed(seed, stream));
      auto by_device = make_generator(seed, stream, torch::Device(torch::kCPU));
      auto by_default = make_generator(seed, stream);
      EXPECT_TRUE(by_device.device().is_cpu());
      EXPECT_EQ(by_device.current_seed(), mix_seed(seed, stream));
      auto expected = at::rand({16}, reference, torch::kDouble);
      EXPECT_TRUE(torch::equal(at::rand({16}, by_device, torch::kDouble), expected));
      EXPECT_TRUE(torch::equal(at::rand({16}, by_default, torch::kDouble), expected));
    }
}

}  // namespace
}  // namespace ebm
