// Restoration's masks, corruptions, scores and baselines against
// hand-computed values and stated statistics.
#include <gtest/gtest.h>

#include <cmath>

#include "common/errors.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/eval/restoration.h"

using namespace ebm;

TEST(Masks, NamedMasksCoverTheirPixels) {
  auto gen = make_generator(1, kStreamEval);
  const std::vector<int64_t> img{2, 6, 8};
  auto c = named_mask("center:4", img, 3, gen);
  ASSERT_EQ(c.sizes(), (c10::IntArrayRef{3, 2, 6, 8}));
  EXPECT_EQ(c.dtype(), torch::kBool);
  // rows 1..4, columns 2..5, every channel, every image
  EXPECT_EQ(c.sum().item<int64_t>(), 3 * 2 * 16);
  EXPECT_TRUE(c.index({torch::indexing::Slice(), torch::indexing::Slice(), torch::indexing::Slice(1, 5),
                       torch::indexing::Slice(2, 6)})
                  .all()
                  .item<bool>());
  auto l = named_mask("left-half", img, 1, gen), r = named_mask("right-half", img, 1, gen);
  EXPECT_TRUE(torch::equal(l | r, torch::ones_like(l)));
  EXPECT_FALSE((l & r).any().item<bool>());
  EXPECT_TRUE(l[0][0][0].narrow(0, 0, 4).all().item<bool>());
  auto t = named_mask("top-half", img, 1, gen), b = named_mask("bottom-half", img, 1, gen);
  EXPECT_TRUE(torch::equal(t | b, torch::ones_like(t)));
  EXPECT_TRUE(t[0][1].narrow(0, 0, 3).all().item<bool>());
  EXPECT_FALSE(t[0][1].narrow(0, 3, 3).any().item<bool>());
  // random:P: channels share a pixel's fate; about P of 2000 * 48 pixels
  // (binomial sd 0.0016 of the fraction: 0.3 +- 0.01 is 6 sd).
  auto m = named_mask("random:0.3", img, 2000, gen);
  EXPECT_TRUE(torch::equal(m.select(1, 0), m.select(1, 1)));
  EXPECT_NEAR(m.to(torch::kDouble).mean().item<double>(), 0.3, 0.01);
  auto d = named_mask("dims:0,2", {4}, 2, gen);
  EXPECT_TRUE(torch::equal(d, torch::tensor({true, false, true, false}).expand({2, 4})));
  // (random:P on vectors: each value on its own; 600 values at P = 0.3,
  // sd of the share 0.019)
  auto rv = named_mask("random:0.3", {6}, 100, gen);
  ASSERT_EQ(rv.sizes(), (c10::IntArrayRef{100, 6}));
  EXPECT_NEAR(rv.to(torch::kDouble).mean().item<double>(), 0.3, 0.08);
  EXPECT_FALSE(torch::equal(rv[0], rv[1]) && torch::equal(rv[1], rv[2]) && torch::equal(rv[2], rv[3]));
  EXPECT_TRUE(is_named_mask("center:3"));
  EXPECT_FALSE(is_named_mask("mask.png"));
  for (const char* bad : {"center:7", "center:0", "random:1.5", "middle", "dims:5", "dims:1,1"})
    EXPECT_EQ(test_helpers::code_of([&] { named_mask(bad, bad[0] == 'd' ? std::vector<int64_t>{4} : img, 1, gen); }),
              ExitCode::kUsage)
        << bad;
  EXPECT_EQ(test_helpers::code_of([&] { named_mask("left-half", {4}, 1, gen); }), ExitCode::kUsage);
}

TEST(Masks, FromValuesBroadcastsOneAndChecksShapes) {
  auto one = torch::zeros({1, 1, 4, 4});
  one[0][0][1][2] = 3.0;
  auto m = mask_from_values(one, {1, 4, 4}, 5, "m.npy");
  ASSERT_EQ(m.size(0), 5);
  EXPECT_EQ(m.sum().item<int64_t>(), 5);
  EXPECT_TRUE(m[4][0][1][2].item<bool>());
  EXPECT_EQ(test_helpers::code_of([&] { mask_from_values(torch::zeros({1, 1, 3, 4}), {1, 4, 4}, 5, "m.npy"); }),
            ExitCode::kBadData);
  EXPECT_EQ(test_helpers::code_of([&] { mask_from_values(torch::zeros({3, 16}), {1, 4, 4}, 5, "m.npy"); }),
            ExitCode::kBadData);
  // (one plane saved as a 2-D array [H, W], even when H is the row count)
  auto flat_plane = torch::zeros({4, 4});
  flat_plane[1][2] = 1.0;
  const auto p2 = mask_from_values(flat_plane, {1, 4, 4}, 4, "m.npy");
  EXPECT_EQ(p2.sum().item<int64_t>(), 4);
  EXPECT_TRUE(p2[3][0][1][2].item<bool>());
  // Colour images [3, 4, 6]: one [H, W] plane (or [1, H, W], or H W flat
  // values) masks every channel; a transposed image of the same count is
  // refused, not reshaped.
  auto plane = torch::zeros({1, 4, 6});
  plane[0][2][5] = 1.0;
  for (const auto& v : {plane, plane.unsqueeze(1), plane.flatten(1)}) {
    auto c = mask_from_values(v, {3, 4, 6}, 2, "p.npy");
    ASSERT_EQ(c.sizes(), (c10::IntArrayRef{2, 3, 4, 6}));
    EXPECT_EQ(c.sum().item<int64_t>(), 6) << v.sizes();  // (2 rows x 3 channels)
    EXPECT_TRUE(c[1][2][2][5].item<bool>());
  }
  EXPECT_EQ(mask_from_values(torch::ones({2, 72}), {3, 4, 6}, 2, "flat.csv").sum().item<int64_t>(), 144);
  EXPECT_EQ(test_helpers::code_of([&] { mask_from_values(torch::zeros({1, 3, 6, 4}), {3, 4, 6}, 2, "t.npy"); }),
            ExitCode::kBadData);
  EXPECT_EQ(test_helpers::code_of([&] { mask_from_values(torch::zeros({1, 6, 4}), {3, 4, 6}, 2, "t.npy"); }),
            ExitCode::kBadData);
  // An array of the model's shape [C, H, W] is one mask, channel by channel,
  // for every image, also where --n is C (read as C rows of [H, W] it
  // masked all channels of the first image alone).
  auto red = torch::zeros({3, 4, 6});
  red[0].narrow(1, 0, 2).fill_(1.0);
  for (int64_t n : {3, 5}) {
    const auto r = mask_from_values(red, {3, 4, 6}, n, "red.npy");
    ASSERT_EQ(r.sizes(), (c10::IntArrayRef{n, 3, 4, 6}));
    EXPECT_EQ(r.sum().item<int64_t>(), n * 8) << n;
    EXPECT_TRUE(r[n - 1][0][3][1].item<bool>());
    EXPECT_FALSE(r[n - 1][1][3][1].item<bool>());
  }
  // Vectors of 8 values: a 1-D array of 8, which files give as 8 rows of one
  // value, is one mask for every row (it was refused: "got [8, 1]"), also
  // where there are 8 rows; rows of one value are still refused.
  auto dims = torch::tensor({1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0}).view({8, 1});
  for (int64_t n : {3, 8}) {
    const auto v = mask_from_values(dims, {8}, n, "one.npy");
    ASSERT_EQ(v.sizes(), (c10::IntArrayRef{n, 8}));
    EXPECT_EQ(v.sum().item<int64_t>(), 2 * n);
    EXPECT_TRUE(v[n - 1][3].item<bool>());
  }
  EXPECT_EQ(test_helpers::code_of([&] { mask_from_values(torch::zeros({3, 1}), {8}, 3, "t.npy"); }),
            ExitCode::kBadData);
}

TEST(Corrupt, GaussianAndSaltInPixelUnits) {
  auto gen = make_generator(2, kStreamEval);
  PixelMap map{-1.0, 1.0, false};
  auto x = torch::zeros({200, 1, 10, 10});  // mid-grey: clipping is rare at std 0.1
  double sd = 0;
  auto g = corrupt(x, "gaussian:0.1", map, gen, &sd);
  EXPECT_DOUBLE_EQ(sd, 0.2);  // (0.1 of the range [-1, 1])
  // 20000 draws: the sample sd is within 2% of 0.2 but with probability ~1e-9.
  EXPECT_NEAR(g.std().item<double>(), 0.2, 0.004);
  EXPECT_LE(g.abs().max().item<double>(), 1.0);
  auto s = corrupt(x, "salt:0.25", map, gen, &sd);
  EXPECT_EQ(sd, 0.0);
  auto changed = (s != x);
  // 20000 pixels, a quarter hit (sd 0.003); hits are black or white.
  EXPECT_NEAR(changed.to(torch::kDouble).mean().item<double>(), 0.25, 0.015);
  EXPECT_TRUE((s.masked_select(changed).abs() == 1).all().item<bool>());
  for (const char* bad : {"speckle:1", "gaussian:-1", "salt:2", "gaussian"})
    EXPECT_EQ(test_helpers::code_of([&] { corrupt(x, bad, map, gen); }), ExitCode::kUsage) << bad;
}

TEST(Score, MseAndPsnrInZeroOneUnitsOverTheMask) {
  PixelMap map{-1.0, 1.0, false};
  auto truth = torch::zeros({2, 1, 2, 2});
  auto x = truth.clone();
  x[0][0][0][0] = 1.0;   // 0.5 in [0, 1] units: squared 0.25
  x[1][0][1][1] = -0.2;  // 0.1: squared 0.01
  auto all = restoration_score(x, truth, map);
  EXPECT_EQ(all.n, 2);
  EXPECT_NEAR(all.mse, 0.5 * (0.25 / 4 + 0.01 / 4), 1e-7);
  EXPECT_NEAR(all.psnr, 0.5 * (10 * std::log10(4 / 0.25) + 10 * std::log10(4 / 0.01)), 1e-4);
  auto where = torch::zeros({2, 1, 2, 2}, torch::kBool);
  where[0][0][0][0] = true;  // image 1 has no scored pixel: skipped
  auto one = restoration_score(x, truth, map, where);
  EXPECT_EQ(one.n, 1);
  EXPECT_NEAR(one.mse, 0.25, 1e-7);
  // (masks of unequal size: the MSE pools every scored pixel, 1 + 3 here,
  // (0.25 + 0.01) / 4, not the mean of the images' 0.25 and 0.01 / 3)
  where[1].fill_(true);
  where[1][0][0][0] = false;
  auto pooled = restoration_score(x, truth, map, where);
  EXPECT_EQ(pooled.n, 2);
  EXPECT_NEAR(pooled.mse, (0.25 + 0.01) / 4, 1e-7);
}

TEST(Baselines, MeanNearestAndBlur) {
  auto x = torch::tensor({1.0f, 2.0f, 9.0f, 9.0f}).view({1, 4});
  auto mask = torch::tensor({false, false, true, true}).view({1, 4});
  auto mean = torch::tensor({0.0f, 0.0f, 5.0f, 6.0f});
  EXPECT_TRUE(torch::equal(mean_fill(x, mask, mean), torch::tensor({1.0f, 2.0f, 5.0f, 6.0f}).view({1, 4})));
  // The reference row nearest on the known values (1, 2) is the second one.
  auto ref = torch::tensor({{0.0f, 0.0f, 7.0f, 7.0f}, {1.0f, 2.5f, 3.0f, 4.0f}, {5.0f, 5.0f, 1.0f, 1.0f}});
  EXPECT_TRUE(torch::equal(nearest_fill(x, mask, ref), torch::tensor({1.0f, 2.0f, 3.0f, 4.0f}).view({1, 4})));
  // With nothing known there is no nearest row: the reference mean.
  auto two = torch::cat({x, x});
  auto masks = torch::cat({mask, torch::ones_like(mask)});
  auto filled = nearest_fill(two, masks, ref);
  EXPECT_TRUE(torch::equal(filled[0], torch::tensor({1.0f, 2.0f, 3.0f, 4.0f})));
  EXPECT_TRUE(torch::allclose(filled[1], torch::tensor({2.0f, 2.5f, 11.0f / 3.0f, 4.0f})));
  // Blur keeps a constant image, preserves the mean of an impulse far from
  // the border, and spreads it with the stated sigma.
  auto flat = torch::full({1, 2, 9, 9}, 0.3f);
  EXPECT_TRUE(torch::allclose(gaussian_blur(flat, 1.0), flat, 1e-6, 1e-6));
  auto impulse = torch::zeros({1, 1, 21, 21});
  impulse[0][0][10][10] = 1.0;
  auto b = gaussian_blur(impulse, 1.5);
  EXPECT_NEAR(b.sum().item<double>(), 1.0, 1e-5);
  auto row = b[0][0][10];
  auto pos = torch::arange(21, torch::kFloat) - 10;
  const double var = (row * pos.square()).sum().item<double>() / row.sum().item<double>();
  EXPECT_NEAR(var, 1.5 * 1.5, 0.02);
  EXPECT_EQ(test_helpers::code_of([&] { gaussian_blur(flat, 0.0); }), ExitCode::kUsage);
}

// The posterior mode of a Gaussian prior N(mu, Sigma) under noise of std
// sigma_j per coordinate is (Sigma^-1 + D^-1)^-1 (Sigma^-1 mu + D^-1 y),
// D = diag(sigma^2); the descent must reach it for stds 30 times apart. On a
// mixture (no closed form) the result is a stationary point of the posterior
// energy that is no higher than at the observation.
TEST(PosteriorMode, ReachesTheGaussianPosteriorsModeAndAStationaryPointElsewhere) {
  auto mu = torch::tensor({1.0, -2.0, 0.5}, torch::kDouble);
  auto cov = torch::tensor({{1.0, 0.6, 0.2}, {0.6, 2.0, -0.5}, {0.2, -0.5, 0.5}}, torch::kDouble);
  auto prior = std::make_shared<GaussianEnergyImpl>(mu, cov);
  auto gen = make_generator(3, kStreamTestData);
  auto y = at::normal(0.0, 2.0, {50, 3}, gen, torch::TensorOptions(torch::kDouble));
  auto sigma = torch::tensor({0.1, 1.0, 3.0}, torch::kDouble);
  auto got = posterior_mode(*prior, y, sigma, 300);
  auto p = torch::linalg_inv(cov), dinv = torch::diag(1.0 / sigma.square());
  auto want = torch::linalg_solve(p + dinv, (p.mv(mu).unsqueeze(1) + dinv.mm(y.t())), true).t();
  EXPECT_LT((got - want).abs().max().item<double>(), 1e-6);
  // one std for every coordinate, float32 rows (whose energies resolve the
  // posterior energy to about 1e-6: the mode to about 1e-3, against a
  // posterior std of 0.4)
  auto got1 = posterior_mode(*prior, y.to(torch::kFloat), torch::tensor(0.5), 300);
  auto d1 = torch::eye(3, torch::kDouble) / 0.25;
  auto want1 = torch::linalg_solve(p + d1, (p.mv(mu).unsqueeze(1) + d1.mm(y.t())), true).t();
  EXPECT_LT((got1.to(torch::kDouble) - want1).abs().max().item<double>(), 2e-3);
  // zero steps: the observation
  EXPECT_TRUE(torch::equal(posterior_mode(*prior, y, sigma, 0), y));

  auto mix = make_target("mixture");
  auto ym = at::normal(0.0, 3.0, {40, 2}, gen, torch::TensorOptions(torch::kDouble));
  const double s = 0.7;
  auto xm = posterior_mode(*mix, ym, torch::tensor(s), 500);
  auto [e, g] = mix->energy_and_grad(xm);
  auto [e0, g0] = mix->energy_and_grad(ym);
  auto post_grad = g + (xm - ym) / (s * s);
  EXPECT_LT(post_grad.abs().max().item<double>(), 1e-5);
  auto post = e + (xm - ym).square().sum(1) / (2 * s * s);
  EXPECT_TRUE((post <= e0 + 1e-12).all().item<bool>());
}

// A 20-d prior whose covariance's eigenvalues span 1e4 (every column's
// variance 1): diagonally preconditioned descent needs on the order of 1e4
// iterations; the limited-memory BFGS of posterior_mode reaches the
// closed-form mode in 100 (a probe's 20 correlated columns stopped at 1.31x
// the posterior mean's MSE after 200 steps of the diagonal descent).
TEST(PosteriorMode, ReachesTheModeOfAnIllConditionedPriorInFewSteps) {
  const int64_t d = 20;
  auto gen = make_generator(6, kStreamTestData);
  auto q = std::get<0>(torch::linalg_qr(at::normal(0.0, 1.0, {d, d}, gen, torch::TensorOptions(torch::kDouble))));
  auto lam = torch::logspace(-4, 0, d, 10, torch::kDouble);
  auto cov = q.mm(torch::diag(lam)).mm(q.t());
  auto sd = cov.diagonal().sqrt();
  cov = cov / sd.outer(sd);
  auto mu = torch::zeros({d}, torch::kDouble);
  auto prior = std::make_shared<GaussianEnergyImpl>(mu, cov);
  auto y = at::normal(0.0, 1.0, {30, d}, gen, torch::TensorOptions(torch::kDouble));
  const double s = 0.1;
  auto p = torch::linalg_inv(cov), dinv = torch::eye(d, torch::kDouble) / (s * s);
  auto want = torch::linalg_solve(p + dinv, dinv.mm(y.t()), true).t();
  auto got = posterior_mode(*prior, y, torch::tensor(s), 100, torch::tensor(1.0, torch::kDouble));
  EXPECT_LT((got - want).abs().max().item<double>(), 1e-6);
  // (the conditional mode of half the columns given the others: the
  // Gaussian conditional mean, the same descent without an observation term)
  auto free = torch::zeros({1, d}, torch::kBool);
  free.narrow(1, 0, d / 2).fill_(true);
  auto known = y.clone();
  auto mode = conditional_mode(*prior, known, free, known, 100, torch::tensor(1.0, torch::kDouble));
  auto sf = cov.slice(0, 0, d / 2).slice(1, d / 2, d), sk = cov.slice(0, d / 2, d).slice(1, d / 2, d);
  auto cond = torch::linalg_solve(sk, known.narrow(1, d / 2, d / 2).t(), true).t().mm(sf.t());
  EXPECT_LT((mode.narrow(1, 0, d / 2) - cond).abs().max().item<double>(), 1e-4);  // (sds >= 0.01)
  EXPECT_TRUE(torch::equal(mode.narrow(1, d / 2, d / 2), known.narrow(1, d / 2, d / 2)));
}

// A standardised model's columns (data sd 2 in its units) under one noise std
// in the user's units whose columns' scales span 0.005 to 50: the noise's
// stds in the model's units span 1e4. With the prior's variance in the
// preconditioner, 200 steps reach the closed-form posterior mode.
TEST(PosteriorMode, ReachesTheModeWhenNoiseStdsSpanManyScales) {
  const int64_t d = 8;
  auto gen = make_generator(4, kStreamTestData);
  auto a = at::normal(0.0, 1.0, {d, d}, gen, torch::TensorOptions(torch::kDouble));
  auto cov = a.mm(a.t()) + 0.5 * torch::eye(d, torch::kDouble);
  auto sd = cov.diagonal().sqrt();
  cov = 4.0 * cov / sd.outer(sd);  // (every column's sd 2, correlated)
  auto mu = torch::zeros({d}, torch::kDouble);
  auto prior = std::make_shared<GaussianEnergyImpl>(mu, cov);
  auto scale = torch::tensor({0.005, 0.05, 0.5, 5.0, 50.0, 2.5, 0.25, 25.0}, torch::kDouble);
  auto sigma = 20.0 / scale / 2.0;  // (noise 20 in units where column j's sd is 2 scale_j)
  auto truth = at::normal(0.0, 1.0, {64, d}, gen, torch::TensorOptions(torch::kDouble)).mm(torch::linalg_cholesky(cov).t());
  auto y = truth + sigma * at::normal(0.0, 1.0, {64, d}, gen, torch::TensorOptions(torch::kDouble));
  auto p = torch::linalg_inv(cov), dinv = torch::diag(1.0 / sigma.square());
  auto want = torch::linalg_solve(p + dinv, (p.mv(mu).unsqueeze(1) + dinv.mm(y.t())), true).t();
  auto got = posterior_mode(*prior, y, sigma, 200, torch::tensor(4.0, torch::kDouble));
  // (posterior sds here are 0.4 .. 2: 1e-3 is far below them)
  EXPECT_LT((got - want).abs().max().item<double>(), 1e-3);
  EXPECT_THROW(posterior_mode(*prior, y, sigma, 1, torch::tensor({1.0, 2.0})), c10::Error);
}
