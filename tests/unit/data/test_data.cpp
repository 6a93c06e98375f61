// data: shapes, determinism and support of the toy sets and exact splits
// (the image sets, folders, pixel files, labels and the [data] section's
// filters: test_image_data.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>

#include "common/errors.h"
#include "common/tmp.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/data/data.h"
#include "ebm/data/images.h"
#include "ebm/data/labels.h"
#include "ebm/data/unbalanced.h"
#include "ebm/io/io.h"

namespace {

using ebm::test_helpers::code_of;
namespace fs = std::filesystem;

torch::Tensor make(const std::string& name, int64_t n, uint64_t seed) {
  auto gen = ebm::make_generator(seed, ebm::kStreamData);
  return ebm::toy2d(name, n, gen);
}

TEST(Toy2d, NamesAreTheNineOfTheHeaderAndTheUnbalancedFamily) {
  const std::set<std::string> want = {"8gaussians",   "25gaussians", "swissroll",   "moons",       "2spirals",
                                      "checkerboard", "pinwheel",    "rings",       "circles",     "unbalanced0",
                                      "unbalanced1",  "unbalanced2", "unbalanced3", "unbalanced4"};
  const auto& names = ebm::toy2d_names();
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), want);
  EXPECT_EQ(names.size(), want.size());
  for (const auto& n : names) EXPECT_TRUE(ebm::is_toy2d(n));
  EXPECT_FALSE(ebm::is_toy2d("foo"));
  EXPECT_TRUE(ebm::is_toy2d("unbalanced17"));  // (any variant, beyond the listed five)
  EXPECT_FALSE(ebm::is_toy2d("unbalanced"));
  EXPECT_FALSE(ebm::is_toy2d("unbalanced-1"));
}

// Every variant is what the family promises: weights spanning 10:1 or more,
// one narrow component, separated means, unequal correlated shapes.
TEST(Unbalanced, VariantsKeepTheFamilysPromises) {
  for (int64_t v = 0; v < 12; ++v) {
    const auto& m = ebm::unbalanced_mixture(v);
    ASSERT_GE(m.parts.size(), 4u);
    double lo = 1, hi = 0, total = 0;
    int narrow = 0;
    for (const auto& g : m.parts) {
      lo = std::min(lo, g.weight);
      hi = std::max(hi, g.weight);
      total += g.weight;
      narrow += g.s1 < 0.1;
      EXPECT_LE(g.s2, g.s1);
    }
    EXPECT_NEAR(total, 1.0, 1e-12) << v;
    EXPECT_GE(hi / lo, 10.0) << v;
    EXPECT_EQ(narrow, 1) << v;
    for (size_t i = 0; i < m.parts.size(); ++i)
      for (size_t j = 0; j < i; ++j) {
        const auto &a = m.parts[i], &b = m.parts[j];
        EXPECT_GE(std::hypot(a.mx - b.mx, a.my - b.my), 3 * (a.s1 + b.s1) + 0.4) << v;
      }
  }
  // (the same variant twice: the same mixture)
  EXPECT_EQ(ebm::unbalanced_mixture(3).parts[2].mx, ebm::unbalanced_mixture(3).parts[2].mx);
}

// Samples land in each component with its weight: the component of largest
// posterior for each draw (the modes are separated, so it is the one drawn
// from but for ~1e-5 of draws), counted, against the binomial; z = 4.89
// (false alarm 1e-6 per component).
TEST(Unbalanced, SamplesFollowTheWeights) {
  const auto& m = ebm::unbalanced_mixture(1);
  const int64_t n = 100000;
  auto x = make("unbalanced1", n, 5).to(torch::kDouble);
  std::vector<torch::Tensor> logs;
  for (const auto& g : m.parts) {
    ebm::Mixture2d one{{g}};
    one.parts[0].weight = 1;
    logs.push_back(one.log_density(x) + std::log(g.weight));
  }
  auto k = torch::stack(logs, 1).argmax(1);
  for (size_t c = 0; c < m.parts.size(); ++c) {
    const double f = (k == int64_t(c)).sum().item<double>() / n, w = m.parts[c].weight;
    EXPECT_NEAR(f, w, 4.89 * std::sqrt(w * (1 - w) / n)) << "component " << c;
  }
}

// The quadrature entropy against -mean log p over exact samples: z = 4.89
// standard errors (false alarm 1e-6 per variant).
TEST(Unbalanced, EntropyMatchesMonteCarlo) {
  for (int64_t v : {0, 2, 4}) {
    const std::string name = "unbalanced" + std::to_string(v);
    auto x = make(name, 200000, 11 + v);
    auto lp = ebm::unbalanced_mixture(v).log_density(x);
    const double mc = -lp.mean().item<double>(), se = lp.std().item<double>() / std::sqrt(200000.0);
    EXPECT_NEAR(ebm::toy2d_entropy(name), mc, 4.89 * se) << name;
  }
}

// The closed-form densities the generator task scores draws under: -mean
// log p over the sets' own samples is their entropy (z = 4.89 standard
// errors, false alarm 1e-6 per set); the other sets have none.
TEST(Toy2d, MixtureDensityMatchesTheEntropy) {
  for (const std::string name : {"8gaussians", "25gaussians"}) {
    auto m = ebm::toy2d_mixture(name);
    ASSERT_TRUE(m.has_value()) << name;
    auto x = make(name, 200000, 21);
    auto lp = m->log_density(x);
    const double mc = -lp.mean().item<double>(), se = lp.std().item<double>() / std::sqrt(200000.0);
    EXPECT_NEAR(ebm::toy2d_entropy(name), mc, 4.89 * se) << name;
  }
  EXPECT_FALSE(ebm::toy2d_mixture("moons").has_value());
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
    // (the unbalanced sets' narrow components take their entropy lower)
    const double lo = name.rfind("unbalanced", 0) == 0 ? -2.0 : 1.0;
    EXPECT_TRUE(std::isfinite(h) && h > lo && h < 4.0) << name << " " << h;
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


// moons and circles carry the label of the part each row was drawn from.
TEST(Toy2d, MoonsAndCirclesCarryTheirPartsLabels) {
  auto schema = std::make_shared<ebm::Schema>();
  schema->add(ebm::data_section());
  ebm::Config c{std::shared_ptr<const ebm::Schema>(schema)};
  for (const char* name : {"moons", "circles"}) {
    c.set(std::string("data.name=") + name);
    c.set("data.n=4001");
    auto gen = ebm::make_generator(3, ebm::kStreamData);
    ebm::Dataset d = ebm::build_dataset(c, gen);
    auto gen2 = ebm::make_generator(3, ebm::kStreamData);
    EXPECT_TRUE(torch::equal(d.x, ebm::toy2d(name, 4001, gen2))) << name;  // (the points are unchanged)
    ASSERT_TRUE(d.has_labels()) << name;
    EXPECT_EQ(d.y.sum().item<int64_t>(), 4001 - 4001 / 2) << name;
    auto a = d.x.index({d.y == 0}), b = d.x.index({d.y == 1});
    if (std::string(name) == "moons") {
      // upper moon: mean height 2 * 2/pi - 0.2 = 1.07; lower: 2 * (0.5 - 2/pi) - 0.2 = -0.47 (noise sd 0.2)
      EXPECT_NEAR(a.select(1, 1).mean().item<double>(), 1.073, 0.03);
      EXPECT_NEAR(b.select(1, 1).mean().item<double>(), -0.473, 0.03);
    } else {
      // radii 3 and 1.5 (noise sd 0.24)
      EXPECT_NEAR(a.norm(2, 1).mean().item<double>(), 3.0, 0.05);
      EXPECT_NEAR(b.norm(2, 1).mean().item<double>(), 1.5, 0.05);
    }
  }
  c.set("data.name=8gaussians");
  auto gen = ebm::make_generator(3, ebm::kStreamData);
  EXPECT_FALSE(ebm::build_dataset(c, gen).has_labels());
}
