// Chains that start from a Gaussian fitted to the data (data/low_rank_gaussian.h;
// buffer.init = "fit"): the fit against known covariances, its draws' moments,
// the replay buffer's fresh chains, and model.pt keeping it for `ebm sample`.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/errors.h"
#include "common/tmp.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/data/low_rank_gaussian.h"
#include "ebm/energy/registry.h"
#include "ebm/model/inputs.h"
#include "ebm/model/model.h"
#include "ebm/sampling/registry.h"
#include "ebm/sampling/sampling.h"
#include "ebm/train/train.h"

using ebm::LowRankGaussian;
using ebm::test_helpers::code_of;
using ebm::test_helpers::fresh_dir;

namespace {
torch::Tensor cov_of(const torch::Tensor& rows) {
  auto x = rows.flatten(1).to(torch::kDouble);
  auto c = x - x.mean(0);
  return c.t().mm(c) / double(x.size(0) - 1);
}
torch::Tensor outer(const LowRankGaussian& g) {
  auto b = g.basis.to(torch::kDouble);
  return b.mm(b.t());
}
}  // namespace

// Rows x = mu + A z (z ~ N(0, I_2)) in 6 dimensions: the two components span
// A A^T. With all 20,000 rows, each covariance entry (entries of order 1) has
// a standard error near 0.01; 0.06 is six of them.
TEST(LowRankGaussian, RecoversALowRankCovariance) {
  torch::manual_seed(11);
  auto a = torch::tensor({{1.0, 0.0}, {0.5, 1.0}, {-1.0, 0.5}, {0.0, -0.8}, {0.3, 0.3}, {0.7, -0.2}}, torch::kDouble);
  auto mu = torch::tensor({2.0, -1.0, 0.0, 0.5, 3.0, -2.0}, torch::kDouble);
  auto x = (mu + torch::randn({20000, 2}, torch::kDouble).mm(a.t())).to(torch::kFloat).reshape({20000, 1, 2, 3});
  auto g = LowRankGaussian::fit(x, 2, 20000);
  ASSERT_EQ(g.components(), 2);
  EXPECT_EQ(g.mean.sizes(), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_LT((g.mean.flatten().to(torch::kDouble) - mu).abs().max().item<double>(), 0.05);
  EXPECT_LT((outer(g) - a.mm(a.t())).abs().max().item<double>(), 0.06);
  // Components are the leading ones: asked for 1, the larger eigenvalue's.
  auto g1 = LowRankGaussian::fit(x, 1, 20000);
  auto l = torch::linalg_eigvalsh(cov_of(x));
  EXPECT_NEAR(g1.basis.to(torch::kDouble).pow(2).sum().item<double>(), l[-1].item<double>(), 1e-3);
}

// More dimensions than rows takes the Gram matrix's route: 40 rows of exact
// rank 3 in 50 dimensions give back their sample covariance exactly (to float).
TEST(LowRankGaussian, GramRouteMatchesTheSampleCovariance) {
  torch::manual_seed(12);
  auto x = torch::randn({40, 3}, torch::kDouble).mm(torch::randn({3, 50}, torch::kDouble)).to(torch::kFloat);
  auto g = LowRankGaussian::fit(x, 3, 40);
  auto c = cov_of(x);
  EXPECT_LT((outer(g) - c).abs().max().item<double>(), 1e-4 * c.abs().max().item<double>());
  // Asked for more components than the rows allow: at most rows - 1.
  EXPECT_EQ(LowRankGaussian::fit(x, 256, 40).components(), 39);
  // Every row counts toward the mean even when the components use a subset.
  auto g2 = LowRankGaussian::fit(x, 3, 10);
  EXPECT_LT((g2.mean - x.mean(0)).abs().max().item<double>(), 1e-5);
}

// Draws carry the fitted mean and covariance: 20,000 draws, tolerances of
// five standard errors or more (entries of order 1).
TEST(LowRankGaussian, DrawsHaveTheFittedMoments) {
  torch::manual_seed(13);
  auto x = torch::randn({3000, 4}, torch::kDouble).mm(torch::randn({4, 5}, torch::kDouble)).to(torch::kFloat);
  auto g = LowRankGaussian::fit(x, 4);
  auto gen = ebm::make_generator(5, 0, torch::kCPU);
  auto d = g.draw(20000, gen);
  ASSERT_EQ(d.sizes(), (std::vector<int64_t>{20000, 5}));
  const double scale = outer(g).abs().max().item<double>();
  EXPECT_LT((d.to(torch::kDouble).mean(0) - g.mean.to(torch::kDouble)).abs().max().item<double>(),
            0.05 * std::sqrt(scale));
  EXPECT_LT((cov_of(d) - outer(g)).abs().max().item<double>(), 0.08 * scale);
}

TEST(LowRankGaussian, RefusesTooFewRowsAndNonFiniteValues) {
  EXPECT_EQ(code_of([] { LowRankGaussian::fit(torch::zeros({1, 3})); }), ebm::ExitCode::kBadData);
  auto x = torch::zeros({4, 3});
  x[2][1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(code_of([&] { LowRankGaussian::fit(x); }), ebm::ExitCode::kBadData);
}

// buffer.init = fit: fresh chains come from the data's Gaussian (none before
// fit_data); the same config's other inits ignore the data.
TEST(ReplayBuffer, FitInitDrawsFromTheDatasGaussian) {
  torch::manual_seed(14);
  auto data = (torch::rand({500, 1, 3, 3}) * 0.5 + 0.25);  // pixels in [0.25, 0.75]
  ebm::ReplayBuffer b(ebm::ReplayBufferOptions(0).init("fit"), {1, 3, 3});
  auto gen = ebm::make_generator(1, 0, torch::kCPU);
  EXPECT_THROW(b.init_samples(2, gen), c10::Error);
  b.fit_data(data);
  ASSERT_TRUE(b.fitted().defined());
  auto x = b.init_samples(8000, gen);
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{8000, 1, 3, 3}));
  // (each pixel: sd 0.144; the mean of 8000 draws has sd 0.0016)
  EXPECT_LT((x.mean(0) - data.mean(0)).abs().max().item<double>(), 0.01);
  EXPECT_NEAR(x.std(0).mean().item<double>(), data.std(0).mean().item<double>(), 0.01);
  ebm::ReplayBuffer u(ebm::ReplayBufferOptions(0).init("uniform"), {1, 3, 3});
  u.fit_data(data);
  EXPECT_FALSE(u.fitted().defined());
  EXPECT_EQ(code_of([] { ebm::ReplayBuffer(ebm::ReplayBufferOptions(0).init("fitted"), {2}); }),
            ebm::ExitCode::kBadConfig);
}

// buffer.init = mixed: each fresh chain from the data's Gaussian or, one in
// five, from uniform noise on [init_low, init_high]. The data sit in
// [0.45, 0.55], so a row of 16 pixels from the fit lies within 0.3 of 0.5
// (each pixel's sd is 0.029: a pixel beyond 0.3 is a 10-sd event) and one
// from noise on [-1, 1] has a pixel beyond 0.3 unless all 16 are inside
// (probability 0.3^16). The count of noise rows among 4000 is Binomial(4000,
// 1/5): sd 25.3, the tolerance of 120 is 4.7 sd (false alarm 3e-6).
TEST(ReplayBuffer, MixedInitDrawsOneInFiveFromNoise) {
  torch::manual_seed(16);
  auto data = torch::rand({400, 1, 4, 4}) * 0.1 + 0.45;
  ebm::ReplayBuffer b(ebm::ReplayBufferOptions(0).init("mixed").low(-1).high(1), {1, 4, 4});
  auto gen = ebm::make_generator(3, 0, torch::kCPU);
  EXPECT_THROW(b.init_samples(2, gen), c10::Error);  // (no fit yet)
  b.fit_data(data);
  ASSERT_TRUE(b.fitted().defined());
  auto x = b.init_samples(4000, gen);
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{4000, 1, 4, 4}));
  auto far = std::get<0>((x - 0.5).abs().flatten(1).max(1)) > 0.3;
  const int64_t noise = far.sum().item<int64_t>();
  EXPECT_NEAR(double(noise), 800.0, 120.0);
  auto u = x.index({far});
  EXPECT_GE(u.min().item<double>(), -1.0);
  EXPECT_LE(u.max().item<double>(), 1.0);
  EXPECT_NEAR(u.mean().item<double>(), 0.0, 0.03);  // (sd of the mean 0.0051)
  auto f = x.index({far.logical_not()});
  EXPECT_NEAR(f.mean().item<double>(), 0.5, 0.01);
  // (the uniform box, for the jump proposal, as under init = uniform)
  auto [lo, hi] = b.box();
  ASSERT_TRUE(lo.defined());
  EXPECT_EQ(lo.max().item<double>(), -1.0);
  EXPECT_EQ(hi.min().item<double>(), 1.0);
}

// buffer.init_noise sets the share from noise: 0 draws the fit alone, 1
// uniform noise alone, 0.5 about half (4000 draws: sd 32, tolerance 5 sd);
// outside [0, 1] it is a config error.
TEST(ReplayBuffer, MixedNoiseShareIsAnOption) {
  torch::manual_seed(17);
  auto data = torch::rand({400, 1, 4, 4}) * 0.1 + 0.45;
  auto gen = ebm::make_generator(4, 0, torch::kCPU);
  for (double share : {0.0, 0.5, 1.0}) {
    ebm::ReplayBuffer b(ebm::ReplayBufferOptions(0).init("mixed").mixed_noise(share).low(-1).high(1), {1, 4, 4});
    b.fit_data(data);
    auto x = b.init_samples(4000, gen);
    const auto far = (std::get<0>((x - 0.5).abs().flatten(1).max(1)) > 0.3).sum().item<int64_t>();
    EXPECT_NEAR(double(far), 4000 * share, share == 0.5 ? 160.0 : 0.0) << share;
  }
  EXPECT_EQ(code_of([] { ebm::ReplayBuffer(ebm::ReplayBufferOptions(0).init("mixed").mixed_noise(1.5), {1, 4, 4}); }),
            ebm::ExitCode::kBadConfig);
}

// model.pt keeps the fitted start; chain_start draws from it, and a model
// without one starts from noise over its pixel range.
TEST(ChainStart, ModelFileKeepsTheFittedStart) {
  const std::string dir = fresh_dir("chain_start");
  std::filesystem::create_directories(dir);
  ebm::Config ec(ebm::energy_schema());
  ec.set("energy.name=conv");
  torch::manual_seed(15);
  auto e = ebm::build_energy(ec, {1, 8, 8});
  auto data = torch::rand({300, 1, 8, 8}) * 0.4 - 0.2;  // in [-0.2, 0.2]
  auto g = LowRankGaussian::fit(data, 16);
  ebm::save_model(dir + "/fit.pt", *e, ec, {1, 8, 8}, {}, ebm::PixelMap(), nullptr, {}, &g);
  ebm::save_model(dir + "/plain.pt", *e, ec, {1, 8, 8}, {}, ebm::PixelMap());
  ebm::ModelInfo fit, plain;
  ebm::load_model(dir + "/fit.pt", &fit);
  ebm::load_model(dir + "/plain.pt", &plain);
  ASSERT_TRUE(fit.start.defined());
  EXPECT_TRUE(torch::equal(fit.start.mean, g.mean));
  EXPECT_TRUE(torch::equal(fit.start.basis, g.basis));
  EXPECT_FALSE(plain.start.defined());
  auto gen = ebm::make_generator(2, 0, torch::kCPU);
  auto a = ebm::chain_start(fit, 2000, gen), b = ebm::chain_start(plain, 2000, gen);
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{2000, 1, 8, 8}));
  EXPECT_LT(a.abs().mean().item<double>(), 0.2);   // near the data (mean |x| 0.1)
  EXPECT_GT(b.abs().mean().item<double>(), 0.4);   // uniform on [-1, 1] (mean |x| 0.5)
  EXPECT_LE(b.abs().max().item<double>(), 1.0);
  // A fit whose draws leave the pixel range (rows in [0.75, 1.15]: about
  // half of its draws' pixels above 1) is clamped into it, as the chains are.
  fit.start = LowRankGaussian::fit(torch::rand({300, 1, 8, 8}) * 0.4 + 0.75, 16);
  auto c = ebm::chain_start(fit, 200, gen);
  EXPECT_EQ(c.max().item<double>(), 1.0);
  EXPECT_GT(c.min().item<double>(), 0.3);
}

// A float-image model (no pixel map, no clamp) keeps its uniform start's
// box, buffer.init_low / init_high, and chain_start draws there (it drew
// N(0, 1) before, whatever the images' range).
TEST(ChainStart, FloatImageModelKeepsItsStartBox) {
  const std::string dir = fresh_dir("chain_start_box");
  std::filesystem::create_directories(dir);
  ebm::Config tc = ebm::make_train_config();
  tc.set("energy.name=conv");
  tc.set("buffer.init_low=0.2");
  tc.set("buffer.init_high=0.7");
  torch::manual_seed(18);
  auto e = ebm::build_energy(tc, {1, 8, 8});
  ebm::save_model(dir + "/box.pt", *e, tc, {1, 8, 8}, {}, std::nullopt);
  ebm::save_model(dir + "/px.pt", *e, tc, {1, 8, 8}, {}, ebm::PixelMap());
  ebm::ModelInfo box, px;
  ebm::load_model(dir + "/box.pt", &box);
  ebm::load_model(dir + "/px.pt", &px);
  ASSERT_TRUE(box.start_box.has_value());
  EXPECT_EQ(*box.start_box, std::make_pair(0.2, 0.7));
  EXPECT_FALSE(px.start_box.has_value());  // (pixels: the pixel range)
  auto gen = ebm::make_generator(5, 0, torch::kCPU);
  auto x = ebm::chain_start(box, 1000, gen);
  EXPECT_GE(x.min().item<double>(), 0.2);
  EXPECT_LE(x.max().item<double>(), 0.7);
  EXPECT_NEAR(x.mean().item<double>(), 0.45, 0.01);  // (sd of the mean 0.0018)
}

// buffer.init = auto (the default): mixed (the data's Gaussian, one chain in
// five from uniform noise) for images; uniform noise for vectors.
TEST(ReplayBuffer, AutoInitFitsImages) {
  const std::vector<std::vector<int64_t>> shapes{{3, 4, 4}, {1, 4, 4}, {2, 4, 4}, {48}, {2}};
  const std::vector<std::string> want{"mixed", "mixed", "mixed", "uniform", "uniform"};
  for (size_t i = 0; i < shapes.size(); ++i) {
    ebm::ReplayBuffer b(ebm::ReplayBufferOptions(0).init("auto"), shapes[i]);
    EXPECT_EQ(b.options().init(), want[i]) << c10::IntArrayRef(shapes[i]);
  }
  ebm::ReplayBuffer colour(ebm::ReplayBufferOptions(0).init("auto"), {3, 4, 4});
  colour.fit_data(torch::rand({50, 3, 4, 4}));
  EXPECT_TRUE(colour.fitted().defined());
}

// The config's auto: the mixed start for an image model's contrastive
// divergence, uniform noise for JEM's chains (its published start).
TEST(ReplayBuffer, AutoInitUnderJemIsUniform) {
  for (const std::string objective : {"cd", "jem"}) {
    ebm::Config c = ebm::make_train_config();
    c.load_string("[objective]\nname = \"" + objective + "\"\n", "test");
    EXPECT_EQ(ebm::build_buffer(c, {1, 8, 8})->options().init(), objective == "jem" ? "uniform" : "mixed");
    EXPECT_EQ(ebm::build_buffer(c, {5})->options().init(), "uniform");
    c.load_string("[buffer]\ninit = \"fit\"\n", "test");
    EXPECT_EQ(ebm::build_buffer(c, {1, 8, 8})->options().init(), "fit");
  }
}
