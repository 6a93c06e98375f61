// data: shapes, determinism and support of the toy sets, and exact splits.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "common/errors.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/data/data.h"

namespace {

using ebm::test_helpers::code_of;

torch::Tensor make(const std::string& name, int64_t n, uint64_t seed) {
  auto gen = ebm::make_generator(seed, ebm::kStreamData);
  return ebm::toy2d(name, n, gen);
}

TEST(Toy2d, NamesAreTheNineOfTheHeader) {
  const std::set<std::string> want = {"8gaussians",   "25gaussians", "swissroll", "moons",  "2spirals",
                                      "checkerboard", "pinwheel",    "rings",     "circles"};
  const auto& names = ebm::toy2d_names();
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), want);
  EXPECT_EQ(names.size(), want.size());
  for (const auto& n : names) EXPECT_TRUE(ebm::is_toy2d(n));
  EXPECT_FALSE(ebm::is_toy2d("foo"));
}

TEST(Toy2d, ExactlyNFiniteRowsForAnyN) {
  for (const auto& name : ebm::toy2d_names()) {
    for (int64_t n : {1, 2, 3, 4, 5, 6, 7, 9, 10, 1001}) {
      const auto x = make(name, n, 7);
      ASSERT_EQ(x.sizes(), (std::vector<int64_t>{n, 2})) << name << " n=" << n;
      EXPECT_EQ(x.scalar_type(), torch::kFloat32) << name;
      EXPECT_TRUE(torch::isfinite(x).all().item<bool>()) << name << " n=" << n;
    }
  }
}

TEST(Toy2d, SameSeedSameBitsOtherSeedOtherBits) {
  for (const auto& name : ebm::toy2d_names()) {
    const auto a = make(name, 500, 11), b = make(name, 500, 11), c = make(name, 500, 12);
    EXPECT_TRUE(torch::equal(a, b)) << name;
    EXPECT_FALSE(torch::equal(a, c)) << name;
  }
}

TEST(Toy2d, BadArguments) {
  auto gen = ebm::make_generator(1, ebm::kStreamData);
  EXPECT_EQ(code_of([&] { ebm::toy2d("rings", 0, gen); }), ebm::ExitCode::kBadConfig);
  EXPECT_EQ(code_of([&] { ebm::toy2d("rings", -3, gen); }), ebm::ExitCode::kBadConfig);
  std::string msg;
  EXPECT_EQ(code_of([&] { ebm::toy2d("foo", 10, gen); }, &msg), ebm::ExitCode::kBadConfig);
  EXPECT_NE(msg.find("unknown dataset 'foo'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("8gaussians"), std::string::npos) << msg;
  EXPECT_EQ(code_of([&] { ebm::toy2d_entropy("foo"); }), ebm::ExitCode::kBadConfig);
}

TEST(Toy2d, EntropiesArePlausible) {
  for (const auto& name : ebm::toy2d_names()) {
    const double h = ebm::toy2d_entropy(name);
    EXPECT_TRUE(std::isfinite(h) && h > 1.0 && h < 4.0) << name << " " << h;
  }
  EXPECT_NEAR(ebm::toy2d_entropy("checkerboard"), std::log(32.0), 1e-3);  // uniform on area 32
}

// |x| = |c + 0.5 z| / 1.414 with |c| = 4: a Rice(nu = 4, sigma = 0.5) variable
// scaled by 1/1.414, with mean sigma sqrt(pi/2) L_{1/2}(-nu^2 / (2 sigma^2))
// = 2.85104 (not 4 / 1.414 = 2.83: the noise pushes points outwards) and
// E|x|^2 = (nu^2 + 2 sigma^2) / 1.414^2. Tolerance 4.89 standard errors: a
// false alarm once in 1e6 runs.
TEST(Toy2d, EightGaussiansMeanRadius) {
  const double nu = 4, sigma = 0.5, scale = 1.414;
  const double q = nu * nu / (4 * sigma * sigma);  // L_{1/2}(-2q) = e^{-q}((1+2q) I0(q) + 2q I1(q))
  const double rice_mean = sigma * std::sqrt(M_PI / 2) * std::exp(-q) *
                           ((1 + 2 * q) * std::cyl_bessel_i(0.0, q) + 2 * q * std::cyl_bessel_i(1.0, q));
  const double mean = rice_mean / scale;
  const double sd = std::sqrt((nu * nu + 2 * sigma * sigma) / (scale * scale) - mean * mean);
  ASSERT_NEAR(mean, 2.85104, 1e-5);
  const int64_t n = 200000;
  const auto r = make("8gaussians", n, 3).to(torch::kFloat64).norm(2, 1);  // [n]
  const double tol = 4.89 * sd / std::sqrt(static_cast<double>(n));        // ~0.0039
  EXPECT_NEAR(r.mean().item<double>(), mean, tol);
}

TEST(Toy2d, CheckerboardPointsLieOnBlackSquares) {
  const auto x = make("checkerboard", 100000, 5) / 2;  // unit squares
  EXPECT_TRUE((x >= -2).all().item<bool>());
  EXPECT_TRUE((x < 2).all().item<bool>());
  const auto parity = (x.select(1, 0).floor() + x.select(1, 1).floor()).remainder(2);
  EXPECT_TRUE((parity == 0).all().item<bool>());
  // All 8 black squares are used.
  const auto cell = (x.select(1, 0).floor() + 2) * 4 + (x.select(1, 1).floor() + 2);
  EXPECT_EQ(std::get<0>(at::_unique(cell)).numel(), 8);
}

TEST(SplitRows, PartitionsTheRowsExactly) {
  const int64_t n = 103;
  const auto data = torch::arange(2 * n, torch::kFloat32).reshape({n, 2});
  auto gen = ebm::make_generator(9, ebm::kStreamData);
  const auto s = ebm::split_rows(data, 0.25, gen);
  EXPECT_EQ(s.test.size(0), std::llround(0.25 * n));
  EXPECT_EQ(s.train.size(0) + s.test.size(0), n);
  EXPECT_EQ(s.train.size(1), 2);
  // Rows stay whole and together cover every row once.
  const auto all = torch::cat({s.train, s.test});
  EXPECT_TRUE(torch::equal(all.select(1, 1), all.select(1, 0) + 1));
  EXPECT_TRUE(torch::equal(std::get<0>(all.select(1, 0).sort()), data.select(1, 0)));
  EXPECT_FALSE(torch::equal(all, data));  // actually permuted

  auto gen2 = ebm::make_generator(9, ebm::kStreamData);
  EXPECT_TRUE(torch::equal(ebm::split_rows(data, 0.25, gen2).test, s.test));

  auto gen3 = ebm::make_generator(9, ebm::kStreamData);
  const auto none = ebm::split_rows(data, 0.0, gen3);
  EXPECT_EQ(none.test.size(0), 0);
  EXPECT_EQ(none.train.size(0), n);
}

TEST(SplitRows, RejectsBadFraction) {
  const auto data = torch::zeros({10, 2});
  auto gen = ebm::make_generator(1, ebm::kStreamData);
  for (double f : {-0.1, 1.0, 1.5, std::nan("")}) {
    std::string msg;
    EXPECT_EQ(code_of([&] { ebm::split_rows(data, f, gen); }, &msg), ebm::ExitCode::kBadConfig) << f;
    EXPECT_NE(msg.find("data.test_fraction"), std::string::npos) << msg;
  }
}

}  // namespace
