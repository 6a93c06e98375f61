// ESS and R-hat against processes whose answers are known. Tolerances are
// z * SE with z = 4.89 (two-sided normal quantile for a false-alarm rate of
// 1e-6 per assertion), plus a stated bias allowance where the estimator has one.
#include <gtest/gtest.h>

#include "common/errors.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/energy/energy.h"
#include "ebm/sampling/diagnostics.h"
#include "ebm/sampling/sampling.h"

using namespace ebm;

namespace {
constexpr double kZ = 4.89;

// reps independent AR(1) processes per chain, stationary start:
// x_0 ~ N(0, 1), x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t. Returns
// [chains, draws, reps]: each replication is one "dimension", so one call
// estimates reps independent ESS values.
torch::Tensor ar1(int64_t chains, int64_t draws, int64_t reps, double phi, at::Generator& gen) {
  const int64_t m = chains * reps;
  auto e = at::normal(0.0, 1.0, {draws, m}, gen, torch::kDouble).contiguous();
  auto* p = e.data_ptr<double>();
  const double s = std::sqrt(1 - phi * phi);
  for (int64_t t = 1; t < draws; ++t)
    for (int64_t i = 0; i < m; ++i) p[t * m + i] = phi * p[(t - 1) * m + i] + s * p[t * m + i];
  return e.view({draws, chains, reps}).permute({1, 0, 2}).contiguous();
}

using ebm::test_helpers::code_of;
}  // namespace

// The integrated autocorrelation time of AR(1) is tau = (1 + phi) / (1 - phi),
// so ESS = S (1 - phi) / (1 + phi) with S = chains * draws. Each of R = 400
// replications (4 chains x 4000 draws) gives one estimate; their mean must be
// within z * SD / sqrt(R) of the truth, plus a bias allowance of 2% of the
// truth: Geyer's truncation keeps the noise in the lags before the first
// negative pair (and the 1/n autocovariance shrinks the far lags), a bias of
// order 1/sqrt(S) that no closed form gives; with these seeds the mean
// relative errors are -1.1%, -0.1% and -0.8% for phi = 0, 0.5, 0.9 (ESS
// 15820 vs 16000, 5326 vs 5333, 836 vs 842), against per-estimate SDs of
// 2.3%, 4.1% and 9.9% (tolerances 2.6%, 3.0%, 4.4%).
TEST(Diagnostics, EssMatchesAr1AutocorrelationTime) {
  const int64_t chains = 4, draws = 4000, reps = 400;
  int64_t stream = 0;
  for (double phi : {0.0, 0.5, 0.9}) {
    auto gen = make_generator(21, kStreamTestData + 16 * ++stream);
    const double truth = chains * draws * (1 - phi) / (1 + phi);
    auto rel = ess(ar1(chains, draws, reps, phi, gen)) / truth - 1.0;  // [reps]
    ASSERT_TRUE(torch::isfinite(rel).all().item<bool>());
    const double mean = rel.mean().item<double>(), sd = rel.std().item<double>();
    EXPECT_NEAR(mean, 0.0, kZ * sd / std::sqrt(double(reps)) + 0.02)
        << "phi " << phi << ": mean ESS " << truth * (1 + mean) << " vs " << truth;
    // The rank-based bulk ESS of a Gaussian process estimates the same thing.
    auto gen2 = make_generator(22, kStreamTestData + 16 * stream);
    auto rel_bulk = ess_bulk(ar1(chains, draws, reps, phi, gen2)) / truth - 1.0;
    EXPECT_NEAR(rel_bulk.mean().item<double>(), 0.0,
                kZ * rel_bulk.std().item<double>() / std::sqrt(double(reps)) + 0.02)
        << "bulk, phi " << phi;
  }
}

// An antithetic chain (x_t = -0.9 x_{t-1} + noise) has ESS > S; Stan caps it
// at S log10(S).
TEST(Diagnostics, AntitheticEssIsCapped) {
  auto gen = make_generator(23, kStreamTestData);
  auto x = ar1(4, 1000, 3, -0.9, gen);
  const double s = 4000;
  auto e = ess(x);
  EXPECT_TRUE((e > s).all().item<bool>()) << e;
  EXPECT_TRUE((e <= s * std::log10(s) * (1 + 1e-12)).all().item<bool>()) << e;
}

// i.i.d. N(0, 1) chains: split R-hat over m = 8 halves of n = 500 draws is
// sqrt((n-1)/n + F/n) with F ~ F(7, 3992) ~ chi2_7 / 7 (rank-normalised draws
// are asymptotically normal scores, bulk and tail alike). R-hat >= 1.01 needs
// F >= 1 + 0.0201 n = 11.05, i.e. chi2_7 >= 77: probability ~1e-13 per value,
// < 1e-10 for the 2 x 50 values here.
TEST(Diagnostics, RhatNearOneForIidChains) {
  auto gen = make_generator(24, kStreamTestData);
  auto x = at::normal(0.0, 1.0, {4, 1000, 50}, gen, torch::kDouble);
  auto r = rhat(x);
  EXPECT_LT(r.max().item<double>(), 1.01) << r;
  EXPECT_GE(r.min().item<double>(), 0.99);
  EXPECT_TRUE((rhat_bulk(x) <= r).all().item<bool>());
  EXPECT_TRUE((rhat_tail(x) <= r).all().item<bool>());
}

// Half the chains in N(-5, 1), half in N(5, 1): each stuck in its mode.
TEST(Diagnostics, RhatFlagsChainsInSeparateModes) {
  auto gen = make_generator(25, kStreamTestData);
  auto x = at::normal(0.0, 1.0, {4, 1000, 1}, gen, torch::kDouble);
  x.narrow(0, 0, 2).sub_(5.0);
  x.narrow(0, 2, 2).add_(5.0);
  EXPECT_GT(rhat(x).item<double>(), 1.1);
  // Within-mode draws are i.i.d., so the only defect is the split between modes.
  EXPECT_GT(rhat_bulk(x).item<double>(), 1.5);
}

// Random-walk MH with small steps on the library's mixture target: modes at
// (-2, 0), (2, 0), (0, 2.5) with sds 0.5, 0.7, 0.6. Two chains start in the
// first mode and two in the second; crossing 8 sds in 1000 steps of 0.3 does
// not happen, so R-hat of x1 must flag it. Exercises DrawRecorder too.
TEST(Diagnostics, RhatFlagsRandomWalkStuckInMixtureModes) {
  auto target = make_target("mixture", 2);
  RandomWalkMH mh(RandomWalkMHOptions(0.3));
  auto gen = make_generator(26, kStreamSample);
  auto x0 = torch::tensor({-2.0, 0.0, -2.0, 0.0, 2.0, 0.0, 2.0, 0.0}, torch::kDouble).view({4, 2});
  ChainState st(x0);
  DrawRecorder rec(4, 2, 500, /*thin=*/2);
  for (int i = 0; i < 1000; ++i) {
    mh.step(*target, st, gen);
    rec.record(st.x);
  }
  ASSERT_EQ(rec.size(), 500);
  auto r = rhat(rec.draws());
  EXPECT_GT(r[0].item<double>(), 1.1) << r;
}

// One of four chains shifted by two standard deviations. Predicted bulk R-hat
// ~ sqrt(1 + var(chain means)) = sqrt(1 + 4 * 3/16 * 8/7) ~ 1.37 before the
// rank transform compresses it.
TEST(Diagnostics, RhatFlagsOneShiftedChain) {
  auto gen = make_generator(27, kStreamTestData);
  auto x = at::normal(0.0, 1.0, {4, 1000, 1}, gen, torch::kDouble);
  x[3].add_(2.0);
  EXPECT_GT(rhat_bulk(x).item<double>(), 1.1);
  EXPECT_GT(rhat(x).item<double>(), 1.1);
}

// Equal means, different scales: the bulk R-hat cannot see it (the bound is
// the i.i.d. one above), the folded tail R-hat does.
TEST(Diagnostics, TailRhatFlagsDifferentScales) {
  auto gen = make_generator(28, kStreamTestData);
  auto x = at::normal(0.0, 1.0, {4, 1000, 1}, gen, torch::kDouble);
  x.narrow(0, 2, 2).mul_(3.0);
  EXPECT_LT(rhat_bulk(x).item<double>(), 1.01);
  EXPECT_GT(rhat_tail(x).item<double>(), 1.1);
  EXPECT_GT(rhat(x).item<double>(), 1.1);
}

TEST(Diagnostics, RankNormalizationAveragesTies) {
  // One chain of 4 draws: 3, 1, 2, 2 -> ranks 4, 1, 2.5, 2.5.
  auto x = torch::tensor({3.0, 1.0, 2.0, 2.0}, torch::kDouble).view({1, 4, 1});
  auto z = rank_normalize(x).flatten();
  auto ranks = torch::tensor({4.0, 1.0, 2.5, 2.5}, torch::kDouble);
  auto expected = torch::special::ndtri((ranks - 0.375) / 4.25);
  EXPECT_TRUE(torch::allclose(z, expected, 0, 1e-15)) << z;
}

// Heavy ties (draws rounded to integers) and a constant dimension: no crash,
// NaN exactly where the variance is zero, finite values elsewhere.
TEST(Diagnostics, TiesAndConstantDimension) {
  auto gen = make_generator(29, kStreamTestData);
  auto x = at::normal(0.0, 2.0, {4, 200, 3}, gen, torch::kDouble).round();
  x.select(2, 1).fill_(0.25);
  for (const auto& v : {ess(x), ess_bulk(x), ess_tail(x), rhat(x)}) {
    EXPECT_TRUE(std::isnan(v[1].item<double>())) << v;
    EXPECT_TRUE(std::isfinite(v[0].item<double>()) && std::isfinite(v[2].item<double>())) << v;
  }
  EXPECT_LT(rhat(x).nan_to_num(0).max().item<double>(), 1.1);
  auto rows = summarize(x, 10);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_DOUBLE_EQ(rows[1].mean, 0.25);
  EXPECT_DOUBLE_EQ(rows[1].sd, 0.0);
  EXPECT_TRUE(std::isnan(rows[1].rhat) && std::isnan(rows[1].ess_bulk));
  // Chains each constant at a different value: infinitely bad mixing.
  auto c = torch::arange(4, torch::kDouble).view({4, 1, 1}).expand({4, 10, 1});
  EXPECT_TRUE(std::isinf(rhat(c).item<double>()));
}

TEST(Diagnostics, SummaryMatchesParts) {
  auto gen = make_generator(30, kStreamTestData);
  auto x = ar1(4, 500, 12, 0.5, gen).to(torch::kFloat) + 3.0f;
  auto rows = summarize(x, 10);
  ASSERT_EQ(rows.size(), 10u);
  auto e = ess(x), eb = ess_bulk(x), et = ess_tail(x), r = rhat(x);
  auto xd = x.to(torch::kDouble).flatten(0, 1);
  for (int64_t j = 0; j < 10; ++j) {
    EXPECT_NEAR(rows[j].mean, xd.select(1, j).mean().item<double>(), 1e-12);
    EXPECT_NEAR(rows[j].sd, xd.select(1, j).std().item<double>(), 1e-12);
    EXPECT_NEAR(rows[j].mcse, rows[j].sd / std::sqrt(e[j].item<double>()), 1e-12);
    EXPECT_NEAR(rows[j].ess_bulk, eb[j].item<double>(), 1e-9);
    EXPECT_NEAR(rows[j].ess_tail, et[j].item<double>(), 1e-9);
    EXPECT_NEAR(rows[j].rhat, r[j].item<double>(), 1e-12);
  }
  EXPECT_EQ(summarize(x, 0).size(), 12u);
}

TEST(Diagnostics, BadShapesAreUsageErrors) {
  std::string msg;
  EXPECT_EQ(code_of([] { ess(torch::zeros({4, 3, 2})); }, &msg), ExitCode::kUsage);
  EXPECT_NE(msg.find("at least 4 draws per chain, got 3"), std::string::npos) << msg;
  EXPECT_EQ(code_of([] { rhat(torch::zeros({4, 100})); }, &msg), ExitCode::kUsage);
  EXPECT_NE(msg.find("[chains, draws, D]"), std::string::npos) << msg;
  EXPECT_EQ(code_of([] { summarize(torch::zeros({0, 10, 2}), 10); }), ExitCode::kUsage);
}

TEST(DrawRecorder, ThinsAndRejectsOverflow) {
  DrawRecorder rec(2, 3, 2, /*thin=*/2);
  for (int i = 1; i <= 4; ++i) rec.record(torch::full({2, 3}, double(i)));
  ASSERT_EQ(rec.size(), 2);
  EXPECT_TRUE(torch::equal(rec.draws().select(1, 0), torch::full({2, 3}, 2.0, torch::kDouble)));
  EXPECT_TRUE(torch::equal(rec.draws().select(1, 1), torch::full({2, 3}, 4.0, torch::kDouble)));
  rec.record(torch::zeros({2, 3}));  // an odd call is not kept: no overflow yet
  EXPECT_EQ(code_of([&] { rec.record(torch::zeros({2, 3})); }), ExitCode::kUsage);
  EXPECT_EQ(code_of([&] { rec.record(torch::zeros({3, 3})); }), ExitCode::kUsage);
  // Image-shaped states are flattened.
  DrawRecorder img(2, 4, 1);
  img.record(torch::ones({2, 1, 2, 2}));
  EXPECT_EQ(img.draws().sizes(), (std::vector<int64_t>{2, 1, 4}));
}

// The streamed split R-hat against the classic split R-hat computed from
// the kept draws by hand: an odd number of draws (the middle one dropped),
// values near 1e6 (the shift), chains merged from two recorders.
TEST(SplitMoments, MatchesSplitRhatOfKeptDraws) {
  auto gen = make_generator(24, kStreamTestData);
  const int64_t chains = 6, n = 201, d = 3, m = n / 2;
  auto x = at::normal(0.0, 1.0, {chains, n, d}, gen, torch::kDouble) + 1e6;
  x.select(2, 2).narrow(0, 0, 2).add_(3.0);  // (two chains off in dimension 2: R-hat about 1.8)
  SplitMoments a(4, d, n), b(2, d, n);
  for (int64_t t = 0; t < n; ++t) {
    a.record(x.narrow(0, 0, 4).select(1, t));
    b.record(x.narrow(0, 4, 2).select(1, t));
  }
  const auto r = split_rhat(torch::cat({a.halves(), b.halves()}), m);
  auto halves = torch::cat({x.narrow(1, 0, m), x.narrow(1, n - m, m)}, 0);  // [2 chains, m, d]
  const auto w = halves.var(1).mean(0), bn = halves.mean(1).var(0);
  const auto want = torch::sqrt(((m - 1.0) / m * w + bn) / w);
  EXPECT_TRUE(torch::allclose(r, want, 1e-9, 1e-9)) << r << want;
  EXPECT_LT(r[0].item<double>(), 1.1);
  EXPECT_GT(r[2].item<double>(), 1.1);
  EXPECT_EQ(code_of([&] { a.record(torch::zeros({4, d})); }), ExitCode::kUsage);  // full
  SplitMoments short_run(2, d, 10);
  short_run.record(torch::zeros({2, d}));
  EXPECT_EQ(code_of([&] { short_run.halves(); }), ExitCode::kUsage);  // 1 of 10 draws
  // Chains that never moved: within-half variance 0, R-hat not finite.
  SplitMoments still(2, 1, 4);
  for (int t = 0; t < 4; ++t) still.record(torch::tensor({{1.0}, {2.0}}, torch::kDouble));
  EXPECT_FALSE(std::isfinite(split_rhat(still.halves(), 2)[0].item<double>()));
}
