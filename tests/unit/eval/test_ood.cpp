// OOD detection: the metrics against closed forms, hand-computed ties and
// brute-force definitions; the scores on energies whose values are known; the
// data specs and the task end to end on a 2D Gaussian.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "common/errors.h"
#include "common/nets.h"
#include "common/tmp.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/eval/ood.h"
#include "ebm/eval/tasks.h"
#include "ebm/io/io.h"

using namespace ebm;
using test_helpers::ClassQuadratics;

namespace {
torch::Tensor vec(std::vector<double> v) { return torch::tensor(v, torch::kDouble); }

double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

// Brute-force definitions, one threshold or pair at a time.
double brute_auroc(const std::vector<double>& in, const std::vector<double>& out) {
  double u = 0;
  for (double a : in)
    for (double b : out) u += a > b ? 1.0 : a == b ? 0.5 : 0.0;
  return u / double(in.size() * out.size());
}
double brute_ap(const std::vector<double>& pos, const std::vector<double>& neg) {
  std::set<double, std::greater<double>> thresholds(pos.begin(), pos.end());
  thresholds.insert(neg.begin(), neg.end());
  double ap = 0, recall_before = 0;
  for (double t : thresholds) {
    const double tp = double(std::count_if(pos.begin(), pos.end(), [t](double s) { return s >= t; }));
    const double fp = double(std::count_if(neg.begin(), neg.end(), [t](double s) { return s >= t; }));
    const double recall = tp / double(pos.size());
    if (tp > 0) ap += (recall - recall_before) * tp / (tp + fp);
    recall_before = recall;
  }
  return ap;
}
// The highest threshold among in's scores with TPR >= tpr, then FPR there.
double brute_fpr(const std::vector<double>& in, const std::vector<double>& out, double tpr) {
  double best = -INFINITY;
  for (double t : in) {
    const double kept = double(std::count_if(in.begin(), in.end(), [t](double s) { return s >= t; }));
    if (kept >= tpr * double(in.size()) - 1e-9) best = std::max(best, t);
  }
  return double(std::count_if(out.begin(), out.end(), [best](double s) { return s >= best; })) /
         double(out.size());
}
std::vector<double> std_vec(const torch::Tensor& t) {
  auto d = t.to(torch::kDouble).contiguous();
  return {d.data_ptr<double>(), d.data_ptr<double>() + d.numel()};
}

ExitCode code_of(const std::function<void()>& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.code();
  }
  return ExitCode::kOk;
}
}  // namespace

// in = {3, 2, 2, 1, 1}, out = {2, 1, 0}, by hand:
// AUROC: pairs won 3 + 2 x 2.5 + 2 x 1.5 = 11 of 15.
// AUPR-in: thresholds 3, 2, 1 keep (TP, FP) = (1, 0), (3, 1), (5, 2):
//   1/5 * 1 + 2/5 * 3/4 + 2/5 * 5/7 = 11/14.
// AUPR-out (score -s): thresholds 0, -1, -2 keep (1, 0), (2, 2), (3, 4):
//   1/3 * 1 + 1/3 * 1/2 + 1/3 * 3/7 = 9/14.
// FPR95: k = ceil(0.95 * 5) = 5, t = 1, out >= 1: {2, 1} = 2/3.
TEST(OodMetrics, HandComputedCaseWithTies) {
  auto in = vec({3, 2, 2, 1, 1}), out = vec({2, 1, 0});
  auto m = ood_metrics(in, out);
  EXPECT_NEAR(m.auroc, 11.0 / 15, 1e-12);
  EXPECT_NEAR(m.aupr_in, 11.0 / 14, 1e-12);
  EXPECT_NEAR(m.aupr_out, 9.0 / 14, 1e-12);
  EXPECT_NEAR(m.fpr95, 2.0 / 3, 1e-12);
  EXPECT_DOUBLE_EQ(auroc(in, out), m.auroc);
  EXPECT_DOUBLE_EQ(average_precision(in, out), m.aupr_in);
  EXPECT_DOUBLE_EQ(average_precision(-out, -in), m.aupr_out);
  // Row order and dtype do not matter.
  auto mp = ood_metrics(vec({1, 2, 1, 3, 2}).to(torch::kFloat), vec({0, 2, 1}));
  EXPECT_DOUBLE_EQ(mp.auroc, m.auroc);
  EXPECT_DOUBLE_EQ(mp.aupr_in, m.aupr_in);
  EXPECT_DOUBLE_EQ(mp.aupr_out, m.aupr_out);
  EXPECT_DOUBLE_EQ(mp.fpr95, m.fpr95);
}

// The 95% threshold inside a tie group: 18 in rows at 5 and 2 at 1 (n = 20,
// k = 19): above 1 only 90% are kept, so t = 1 (keeping 100%), and out rows
// at 1, 2 and 5 are false positives. At 90% (k = 18) t = 5.
TEST(OodMetrics, Fpr95ThresholdInsideATieGroup) {
  std::vector<double> in(18, 5.0);
  in.push_back(1.0);
  in.push_back(1.0);
  auto out = vec({1.0, 0.5, 5.0, 2.0});
  EXPECT_DOUBLE_EQ(ood_metrics(vec(in), out).fpr95, 0.75);
  EXPECT_DOUBLE_EQ(fpr_at_tpr(vec(in), out, 0.95), 0.75);
  EXPECT_DOUBLE_EQ(fpr_at_tpr(vec(in), out, 0.90), 0.25);
  EXPECT_DOUBLE_EQ(fpr_at_tpr(vec(in), out, 1.0), 0.75);
  EXPECT_EQ(code_of([&] { fpr_at_tpr(vec(in), out, 0.0); }), ExitCode::kUsage);
}

TEST(OodMetrics, TiedIdenticalAndSeparatedSets) {
  // All tied: every threshold keeps everything.
  auto t = ood_metrics(torch::full({5}, 0.3, torch::kDouble), torch::full({7}, 0.3, torch::kDouble));
  EXPECT_DOUBLE_EQ(t.auroc, 0.5);
  EXPECT_DOUBLE_EQ(t.aupr_in, 5.0 / 12);
  EXPECT_DOUBLE_EQ(t.aupr_out, 7.0 / 12);
  EXPECT_DOUBLE_EQ(t.fpr95, 1.0);
  // Identical sets (each value once in each).
  auto gen = make_generator(80, kStreamTestData);
  auto x = at::normal(0.0, 1.0, {101}, gen, torch::TensorOptions(torch::kDouble));
  EXPECT_DOUBLE_EQ(auroc(x, x), 0.5);
  // Perfect separation, and reversed.
  auto hi = torch::arange(10, 20, torch::kDouble), lo = torch::arange(0, 10, torch::kDouble);
  auto p = ood_metrics(hi, lo);
  EXPECT_DOUBLE_EQ(p.auroc, 1.0);
  EXPECT_DOUBLE_EQ(p.aupr_in, 1.0);
  EXPECT_DOUBLE_EQ(p.aupr_out, 1.0);
  EXPECT_DOUBLE_EQ(p.fpr95, 0.0);
  auto r = ood_metrics(lo, hi);
  EXPECT_DOUBLE_EQ(r.auroc, 0.0);
  EXPECT_DOUBLE_EQ(r.fpr95, 1.0);
  // One row: no DeLong standard error.
  EXPECT_TRUE(std::isnan(ood_metrics(vec({1.0}), lo).auroc_se));
}

// Many ties (integer scores 0..4), unequal sizes, shuffled: the metrics equal
// their brute-force definitions exactly (up to rounding) and do not move
// when the rows are permuted.
TEST(OodMetrics, MatchBruteForceDefinitionsAndIgnoreRowOrder) {
  auto gen = make_generator(81, kStreamTestData);
  for (int rep = 0; rep < 5; ++rep) {
    auto in = at::randint(0, 5, {37}, gen, torch::TensorOptions(torch::kDouble)) + 1;
    auto out = at::randint(0, 5, {23}, gen, torch::TensorOptions(torch::kDouble));
    auto m = ood_metrics(in, out);
    const auto a = std_vec(in), b = std_vec(out);
    std::vector<double> na(a.size()), nb(b.size());
    std::transform(a.begin(), a.end(), na.begin(), [](double s) { return -s; });
    std::transform(b.begin(), b.end(), nb.begin(), [](double s) { return -s; });
    EXPECT_NEAR(m.auroc, brute_auroc(a, b), 1e-12);
    EXPECT_NEAR(m.aupr_in, brute_ap(a, b), 1e-12);
    EXPECT_NEAR(m.aupr_out, brute_ap(nb, na), 1e-12);
    EXPECT_NEAR(m.fpr95, brute_fpr(a, b, 0.95), 1e-12);
    auto pi = torch::randperm(37, gen, torch::kLong), po = torch::randperm(23, gen, torch::kLong);
    auto s = ood_metrics(in.index_select(0, pi), out.index_select(0, po));
    EXPECT_DOUBLE_EQ(s.auroc, m.auroc);
    EXPECT_DOUBLE_EQ(s.auroc_se, m.auroc_se);
    EXPECT_DOUBLE_EQ(s.aupr_in, m.aupr_in);
    EXPECT_DOUBLE_EQ(s.aupr_out, m.aupr_out);
    EXPECT_DOUBLE_EQ(s.fpr95, m.fpr95);
  }
}

// Scores N(d, 1) (in) against N(0, 1) (out): AUROC = P(X > Y) = Phi(d / sqrt 2).
// Tolerance z = 4.89 (false alarm 1e-6) times the exact standard error of
// the Mann-Whitney estimate (Hanley & McNeil 1982, eq. 2):
//   Var = [A(1 - A) + (m - 1)(Q1 - A^2) + (n - 1)(Q2 - A^2)] / (m n),
// Q1 = P(X1 > Y, X2 > Y) = int phi(y) Phi(d + y)^2 dy = Q2 here (by symmetry),
// by Simpson's rule instead of their exponential approximation. The DeLong
// standard error reported beside the AUROC estimates the same quantity from
// the data; from 4000 placements per set its relative error is of order
// 1 / sqrt(2 * 4000) ~ 1%, so 15% checks the formula, not its precision.
TEST(OodMetrics, GaussianAurocMatchesTheClosedForm) {
  auto gen = make_generator(82, kStreamTestData);
  const int64_t m = 4000, n = 4000;
  for (double d : {0.0, 0.5, 1.0, 2.0}) {
    auto in = at::normal(d, 1.0, {m}, gen, torch::TensorOptions(torch::kDouble));
    auto out = at::normal(0.0, 1.0, {n}, gen, torch::TensorOptions(torch::kDouble));
    const double a = normal_cdf(d / std::sqrt(2.0));
    const int steps = 8000;
    const double lo = -12, h = 24.0 / steps;
    double q = 0;
    for (int i = 0; i <= steps; ++i) {
      const double y = lo + i * h, w = (i == 0 || i == steps) ? 1 : (i % 2 ? 4 : 2);
      q += w * std::exp(-0.5 * y * y) / std::sqrt(2 * M_PI) * std::pow(normal_cdf(d + y), 2);
    }
    q *= h / 3;
    const double se = std::sqrt((a * (1 - a) + (m - 1) * (q - a * a) + (n - 1) * (q - a * a)) / double(m * n));
    auto r = ood_metrics(in, out);
    EXPECT_NEAR(r.auroc, a, 4.89 * se) << "d = " << d;
    EXPECT_NEAR(r.auroc_se / se, 1.0, 0.15) << "d = " << d << ": DeLong " << r.auroc_se << ", exact " << se;
  }
}

TEST(OodMetrics, NonFiniteOrEmptyScoresNameTheSet) {
  std::string msg;
  EXPECT_EQ(code_of([&] { ood_metrics(vec({1, 2}), vec({0, NAN, 1}), "fashion_mnist", "mnist"); }, &msg),
            ExitCode::kBadData);
  EXPECT_NE(msg.find("mnist: 1 of 3 scores are not finite"), std::string::npos) << msg;
  EXPECT_NE(msg.find("at index 1"), std::string::npos) << msg;
  EXPECT_EQ(code_of([&] { ood_metrics(vec({NAN, 1}), vec({0}), "fashion_mnist", "mnist"); }, &msg),
            ExitCode::kBadData);
  EXPECT_NE(msg.find("fashion_mnist:"), std::string::npos) << msg;
  // Infinite scores rank beyond every finite one: an out row at -inf (an
  // energy of +inf) is the surest out-of-distribution row, not an error.
  auto r = ood_metrics(vec({1, 2, INFINITY}), vec({-INFINITY, 0, 1.5}), "in", "out");
  EXPECT_DOUBLE_EQ(r.auroc, 8.0 / 9.0);  // (in 1 beats 2 of the 3 out rows; 2 and inf beat all 3)
  EXPECT_DOUBLE_EQ(r.fpr95, 1.0 / 3.0);  // (keeping all 3 in rows keeps the out row at 1.5)
  EXPECT_EQ(code_of([&] { ood_metrics(vec({1}), torch::zeros({0}, torch::kDouble), "a", "b"); }, &msg),
            ExitCode::kBadData);
  EXPECT_NE(msg.find("b: no rows"), std::string::npos) << msg;
}

namespace {
// E(x) = 1/2 sum_j a_j x_j^2 on [1, 2, 2] events: dE/dx = a x, so the
// gradient norm is |a x| (input gradient by the default autograd path).
class Quadratic : public EnergyImpl {
 public:
  Quadratic() { a_ = register_parameter("a", torch::tensor({1.0f, 2.0f, 3.0f, 4.0f})); }
  torch::Tensor energy(const torch::Tensor& x) override {
    return 0.5 * (a_ * x.flatten(1).pow(2)).sum(1);
  }
  std::vector<int64_t> event_shape() const override { return {1, 2, 2}; }
  torch::Tensor a_;
};

}  // namespace

TEST(OodScores, EnergyAndGradientNormOfAQuadratic) {
  Quadratic q;
  auto gen = make_generator(83, kStreamTestData);
  auto x = at::normal(0.0, 1.0, {10, 1, 2, 2}, gen, torch::TensorOptions(torch::kFloat));
  auto s = ood_scores(q, x, {"grad_norm", "energy"}, 3);  // (batches 3, 3, 3, 1)
  ASSERT_EQ(s.sizes(), (c10::IntArrayRef{10, 2}));
  EXPECT_EQ(s.scalar_type(), torch::kDouble);
  EXPECT_FALSE(s.requires_grad());
  auto xd = x.to(torch::kDouble).flatten(1);
  auto a = torch::tensor({1.0, 2.0, 3.0, 4.0}, torch::kDouble);
  auto want_e = -0.5 * (a * xd.pow(2)).sum(1), want_g = -(a * xd).norm(2, 1);
  EXPECT_TRUE(torch::allclose(s.select(1, 1), want_e, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(s.select(1, 0), want_g, 1e-5, 1e-6));
  EXPECT_FALSE(q.a_.grad().defined()) << "scoring accumulated a parameter gradient";
  EXPECT_TRUE(torch::equal(ood_scores(q, x, {"energy"}, 256).select(1, 0), s.select(1, 1)));
}

TEST(OodScores, ClassScoresOfAConditionalEnergy) {
  auto means = torch::tensor({{-0.5, 0.5, 0.0, 0.25}, {0.9, 0.9, -0.9, -0.9}, {0.0, 0.1, 0.2, 0.3}});
  ClassQuadratics e(means, {1, 2, 2});
  auto gen = make_generator(84, kStreamTestData);
  auto x = at::rand({7, 1, 2, 2}, gen) * 2 - 1;
  auto s = ood_scores(e, x, {"max_logit", "logsumexp", "energy", "grad_norm", "max_softmax"}, 2);
  ASSERT_EQ(s.sizes(), (c10::IntArrayRef{7, 5}));
  auto xd = x.to(torch::kDouble).flatten(1);
  for (int64_t i = 0; i < 7; ++i) {
    double best = -INFINITY, sum = 0;
    for (int64_t k = 0; k < 3; ++k) {
      const double ek = 0.5 * (xd[i] - means[k].to(torch::kDouble)).pow(2).sum().item<double>();
      best = std::max(best, -ek);
      sum += std::exp(-ek);
    }
    EXPECT_NEAR(s[i][0].item<double>(), best, 1e-6);
    EXPECT_NEAR(s[i][1].item<double>(), std::log(sum), 1e-6);
    EXPECT_NEAR(s[i][2].item<double>(), std::log(sum), 1e-6);  // E(x) is the marginal
    EXPECT_LE(s[i][3].item<double>(), 0.0);
    EXPECT_NEAR(s[i][4].item<double>(), std::exp(best) / sum, 1e-6);  // max_y p(y | x)
  }
}

TEST(OodScores, NamesAreCheckedAgainstTheEnergy) {
  Quadratic q;
  ClassQuadratics c(torch::zeros({2, 4}), {1, 2, 2});
  EXPECT_EQ(resolve_ood_scores(q, {}), (std::vector<std::string>{"energy", "grad_norm"}));
  EXPECT_EQ(resolve_ood_scores(c, {}), (std::vector<std::string>{"energy", "grad_norm", "max_logit", "logsumexp", "max_softmax"}));
  EXPECT_EQ(resolve_ood_scores(c, {"logsumexp", "energy", "logsumexp"}),
            (std::vector<std::string>{"logsumexp", "energy"}));
  std::string msg;
  EXPECT_EQ(code_of([&] { resolve_ood_scores(q, {"max_softmax"}); }, &msg), ExitCode::kUsage);
  EXPECT_NE(msg.find("not class-conditional"), std::string::npos) << msg;
  EXPECT_EQ(code_of([&] { resolve_ood_scores(c, {"likelihood"}); }, &msg), ExitCode::kUsage);
  EXPECT_NE(msg.find("--score likelihood: unknown score"), std::string::npos) << msg;
}

TEST(OodData, FlipsUniformAndShapes) {
  const auto dir = test_helpers::fresh_dir("ood_data");
  std::filesystem::create_directories(dir);
  ModelInfo info;
  info.event_shape = {1, 2, 2};
  info.pixels = PixelMap{-1.0, 1.0, false};
  auto gen = make_generator(85, kStreamTestData);
  auto x = at::rand({6, 1, 2, 2}, gen) * 2 - 1;
  write_npy(dir + "/x.npy", x);  // (float: already in the model's range)
  auto read = ood_data(dir + "/x.npy", info, torch::Tensor(), gen);
  EXPECT_TRUE(torch::equal(read, x));
  // vflip: rows of each image reversed (upside down); hflip: columns.
  auto v = ood_data("vflip:" + dir + "/x.npy", info, read, gen);
  auto h = ood_data("hflip:" + dir + "/x.npy", info, read, gen);
  EXPECT_TRUE(torch::equal(v.select(2, 0), x.select(2, 1)));
  EXPECT_TRUE(torch::equal(v.select(2, 1), x.select(2, 0)));
  EXPECT_TRUE(torch::equal(h.select(3, 0), x.select(3, 1)));
  EXPECT_TRUE(torch::equal(ood_data("vflip:vflip:" + dir + "/x.npy", info, read, gen), x));
  // uniform over the pixel range, as many rows as in.
  auto u = ood_data("uniform", info, read, gen);
  EXPECT_EQ(u.sizes(), x.sizes());
  EXPECT_GE(u.min().item<double>(), -1.0);
  EXPECT_LE(u.max().item<double>(), 1.0);
  // A vector model: uniform over in's per-coordinate box; no flips.
  ModelInfo vinfo;
  vinfo.event_shape = {2};
  auto in = torch::tensor({{0.0f, 10.0f}, {1.0f, 12.0f}, {0.5f, 11.0f}});
  auto uv = ood_data("uniform", vinfo, in, gen);
  EXPECT_EQ(uv.sizes(), in.sizes());
  EXPECT_TRUE((uv.select(1, 0) >= 0).all().item<bool>() && (uv.select(1, 0) <= 1).all().item<bool>());
  EXPECT_TRUE((uv.select(1, 1) >= 10).all().item<bool>() && (uv.select(1, 1) <= 12).all().item<bool>());
  // Float images (no pixel map): every pixel uniform over the images' whole
  // range, [0.2, 0.7] here, even where in's pixels are constant (a border
  // column at 0.2, a corner at 0.7).
  ModelInfo finfo;
  finfo.event_shape = {1, 2, 2};
  auto fin = (at::rand({400, 1, 2, 2}, gen) * 0.5 + 0.2).contiguous();
  fin.select(3, 0).fill_(0.2f);
  fin.view({400, -1}).select(1, 3).fill_(0.7f);
  auto uf = ood_data("uniform", finfo, fin, gen);
  EXPECT_EQ(uf.sizes(), fin.sizes());
  EXPECT_GE(uf.min().item<double>(), 0.2 - 1e-6);
  EXPECT_LE(uf.max().item<double>(), 0.7 + 1e-6);
  // (the border column spreads over the range: the sd of its 800 draws is
  // that of U(0.2, 0.7), 0.144, with a standard error of 0.0023, so within
  // 0.02, about 9 SE; a per-pixel box gave 0)
  EXPECT_NEAR(uf.select(3, 0).std().item<double>(), 0.5 / std::sqrt(12.0), 0.02);
  // fit:SPEC: RGB PNGs of 4x6 made the grey [1, 2, 3] of a pixel model.
  // Left half pure red (luminance 0.299 x 255), right half white; area
  // averaging halves each side, so the left column is red's grey and the
  // rest white, through the model's map onto [-1, 1].
  std::filesystem::create_directories(dir + "/rgb");
  auto img = torch::full({4, 6, 3}, 255, torch::kUInt8);
  img.narrow(1, 0, 2).select(2, 1).fill_(0);
  img.narrow(1, 0, 2).select(2, 2).fill_(0);
  for (const char* f : {"/rgb/a.png", "/rgb/b.png"}) write_png(dir + f, img);
  ModelInfo ginfo;
  ginfo.event_shape = {1, 2, 3};
  ginfo.pixels = PixelMap{-1.0, 1.0, false};
  auto fit = ood_data("fit:" + dir + "/rgb", ginfo, torch::Tensor(), gen);
  ASSERT_EQ(fit.sizes(), (std::vector<int64_t>{2, 1, 2, 3}));
  // (a folder's images are made the model's pixels one by one as they are
  // read, so they need not share a size: red's grey rounded to a pixel, 76)
  const double red = std::round(0.299 * 255) / 255 * 2 - 1;
  for (int64_t i = 0; i < 2; ++i) {
    EXPECT_NEAR(fit[0][0][i][0].item<double>(), red, 1e-5);
    EXPECT_NEAR(fit[1][0][i][1].item<double>(), 1.0, 1e-5);
    EXPECT_NEAR(fit[1][0][i][2].item<double>(), 1.0, 1e-5);
  }
  // ... and the grey [1, 2, 2] float images above, enlarged for an RGB
  // [3, 4, 4] model: three equal channels, a constant image stays constant.
  ModelInfo cinfo;
  cinfo.event_shape = {3, 4, 4};
  write_npy(dir + "/flat.npy", torch::full({3, 1, 2, 2}, 0.25));
  auto up = ood_data("fit:" + dir + "/flat.npy", cinfo, torch::Tensor(), gen);
  ASSERT_EQ(up.sizes(), (std::vector<int64_t>{3, 3, 4, 4}));
  EXPECT_NEAR((up - 0.25).abs().max().item<double>(), 0.0, 1e-6);
  std::string msg;
  EXPECT_EQ(code_of([&] { ood_data("fit:" + dir + "/rgb", vinfo, in, gen); }, &msg), ExitCode::kUsage);
  EXPECT_NE(msg.find("needs an image model"), std::string::npos) << msg;
  EXPECT_EQ(code_of([&] { ood_data(dir + "/rgb", ginfo, in, gen); }, &msg), ExitCode::kBadData);  // (not fitted)
  EXPECT_EQ(code_of([&] { ood_data("hflip:" + dir + "/x.npy", vinfo, in, gen); }, &msg), ExitCode::kUsage);
  EXPECT_EQ(code_of([&] { ood_data("uniform", vinfo, torch::Tensor(), gen); }, &msg), ExitCode::kUsage);
  // Rows that are not the model's events: kBadData naming the file.
  write_npy(dir + "/three.npy", torch::zeros({4, 3}));
  EXPECT_EQ(code_of([&] { ood_data(dir + "/three.npy", info, read, gen); }, &msg), ExitCode::kBadData);
  EXPECT_NE(msg.find("three.npy"), std::string::npos) << msg;
  EXPECT_EQ(code_of([&] { ood_data(dir + "/absent.npy", info, read, gen); }, &msg), ExitCode::kMissingInput);
  std::filesystem::remove_all(dir);
}

// The task on N(0, I) in 2D: its own samples against the same shifted by 4
// along x1 (well separated: checked only for AUROC > 0.95) and uniform noise
// over their box; --n caps every set; same seed, same report.
TEST(OodTask, ReportsEverySetAndScoreThroughTheRegistry) {
  const auto dir = test_helpers::fresh_dir("ood_task");
  std::filesystem::create_directories(dir);
  auto target = make_target("gaussian:dim=2,rho=0");
  auto gen = make_generator(86, kStreamTestData);
  auto x = target->sample(600, gen).to(torch::kFloat);
  write_npy(dir + "/in.npy", x);
  write_npy(dir + "/shifted.npy", x + torch::tensor({4.0f, 0.0f}));
  ModelInfo info;
  info.event_shape = {2};
  auto run = [&] {
    Config cfg(eval_task_schema());
    cfg.set_value("task.name", std::string("ood"));
    cfg.set_value("task.in_data", dir + "/in.npy");
    cfg.set_value("task.out_data", dir + "/shifted.npy\nuniform");
    cfg.set_value("task.n", int64_t(400));
    cfg.set_value("task.seed", int64_t(3));
    cfg.validate();
    return eval_task_registry().make(cfg, *target, info);
  };
  auto r = run();
  EXPECT_EQ(r.json["task"], "ood");
  EXPECT_EQ(r.json["n_in"], 400);
  ASSERT_EQ(r.json["sets"].size(), 2u);
  EXPECT_EQ(r.json["sets"][0]["name"], dir + "/shifted.npy");
  EXPECT_EQ(r.json["sets"][0]["n"], 400);
  EXPECT_EQ(r.json["sets"][1]["name"], "uniform");
  EXPECT_EQ(r.json["sets"][1]["n"], 400);
  for (const auto& s : r.json["sets"]) {
    ASSERT_EQ(s["scores"].size(), 2u);  // energy, grad_norm (unconditional)
    for (const char* k : {"auroc", "auroc_se", "aupr_in", "aupr_out", "fpr95"})
      EXPECT_TRUE(s["scores"]["energy"].contains(k)) << k;
  }
  EXPECT_GT(r.json["sets"][0]["scores"]["energy"]["auroc"].get<double>(), 0.95);
  EXPECT_GT(r.json["sets"][0]["scores"]["grad_norm"]["auroc"].get<double>(), 0.95);
  EXPECT_NE(r.text.find("shifted.npy"), std::string::npos);
  EXPECT_NE(r.text.find("grad_norm"), std::string::npos);
  EXPECT_EQ(run().json, r.json);
  // AUPR's chance levels in the JSON: n_in / (n_in + n) and n / (n_in + n).
  EXPECT_DOUBLE_EQ(r.json["sets"][0]["aupr_in_chance"].get<double>(), 0.5);
  // A set's --n rows do not depend on the sets before it: shifted.npy after
  // another copy of itself (read from a second file) scores as it did first.
  std::filesystem::copy_file(dir + "/shifted.npy", dir + "/shifted2.npy");
  Config two(eval_task_schema());
  two.set_value("task.name", std::string("ood"));
  two.set_value("task.in_data", dir + "/in.npy");
  two.set_value("task.out_data", dir + "/shifted2.npy\nuniform\n" + dir + "/shifted.npy");
  two.set_value("task.n", int64_t(400));
  two.set_value("task.seed", int64_t(3));
  two.validate();
  const auto r2 = eval_task_registry().make(two, *target, info);
  EXPECT_EQ(r2.json["sets"][2]["scores"], r.json["sets"][0]["scores"]);
  EXPECT_EQ(r2.json["sets"][0]["scores"], r.json["sets"][0]["scores"]);
  // No in-data: a usage error.
  Config bare(eval_task_schema());
  bare.set_value("task.name", std::string("ood"));
  bare.set_value("task.out_data", std::string("uniform"));
  EXPECT_EQ(code_of([&] { eval_task_registry().make(bare, *target, info); }), ExitCode::kUsage);
  std::filesystem::remove_all(dir);
}

// The Gaussian baseline: its fit recovers a known mean and covariance, its
// score is -1/2 the Mahalanobis distance, and max_rows keeps evenly spaced
// rows. 40,000 draws: the mean's error is under 4.9 standard errors (false
// alarm 1e-6 per coordinate); the score's relative error is dominated by the
// covariance's sampling error (~1%) and the ridge (chosen by the rows), hence 5%.
TEST(GaussianFit, RecoversAKnownGaussianAndItsMahalanobisScore) {
  auto gen = make_generator(91, kStreamTestData);
  auto chol = torch::tensor({{2.0, 0.0, 0.0}, {1.0, 0.5, 0.0}, {-0.5, 0.3, 1.0}}, torch::kDouble);
  auto mu = torch::tensor({10.0, -3.0, 0.5}, torch::kDouble);
  auto x = at::normal(0.0, 1.0, {40000, 3}, gen, torch::TensorOptions(torch::kDouble)).mm(chol.t()) + mu;
  auto fit = GaussianFit::fit(x);
  auto sd = chol.pow(2).sum(1).sqrt();
  EXPECT_LT(((fit.mean - mu).abs() / (sd / 200.0)).max().item<double>(), 4.9);
  auto probe = torch::tensor({{10.0, -3.0, 0.5}, {12.0, -1.0, 0.0}, {8.0, -4.0, 3.0}}, torch::kDouble);
  auto want = -0.5 * torch::linalg_solve_triangular(chol, (probe - mu).t(), false).pow(2).sum(0);
  auto got = fit.score(probe);
  EXPECT_NEAR(got[0].item<double>(), 0.0, 0.01);
  for (int i = 1; i < 3; ++i) EXPECT_NEAR(got[i].item<double>() / want[i].item<double>(), 1.0, 0.05) << i;
  auto rows = torch::arange(100, torch::kDouble).unsqueeze(1).repeat({1, 2});
  rows.select(1, 1).mul_(-1);
  EXPECT_NEAR(GaussianFit::fit(rows, 10).mean[0].item<double>(), 45.0, 1e-12);  // (rows 0, 10, ..., 90)
}

// Correlated features whose spectrum falls from sd 1 to 1e-3, rotated so no
// column is special: rows shifted 6 sd along the finest direction are far
// out for the true density. A fixed ridge of 1e-3 of each column's variance
// ranked them at AUROC 0.51 on a probe's 64-d such features; the ridge the
// rows choose keeps the direction (here > 0.95 of pairs ranked right; the
// true density's AUROC is about 0.99).
TEST(GaussianFit, KeepsFineDirectionsThatTheRowsDetermine) {
  auto gen = make_generator(93, kStreamTestData);
  const int64_t d = 16, n = 5000;
  const auto opts = torch::TensorOptions(torch::kDouble);
  auto sd = torch::logspace(0, -3, d, 10, torch::kDouble);
  auto q = std::get<0>(torch::linalg_qr(at::normal(0.0, 1.0, {d, d}, gen, opts)));
  auto draw = [&](int64_t m) { return (at::normal(0.0, 1.0, {m, d}, gen, opts) * sd).mm(q.t()); };
  const auto fit = GaussianFit::fit(draw(n));
  auto in = fit.score(draw(500));
  auto out = fit.score(draw(500) + 6e-3 * q.select(1, d - 1));
  const double auroc = (in.unsqueeze(1) > out.unsqueeze(0)).to(torch::kDouble).mean().item<double>();
  EXPECT_GT(auroc, 0.95);
}

// Vector rows: the ridge is each column's own, so the fit is the same in any
// units (columns in 1e4 and 1e-4 with an offset of 1e6 score as in their
// own, to rounding); a ridge of the mean variance swamped the small column
// (its scores ~1e8 times too small there). A constant column takes the
// finest column's ridge: a row off it is far out. Images keep one ridge.
TEST(GaussianFit, VectorFitsAreTheSameInAnyUnits) {
  auto gen = make_generator(92, kStreamTestData);
  auto chol = torch::tensor({{1.0, 0.0, 0.0}, {0.6, 0.8, 0.0}, {0.0, 0.0, 0.0}}, torch::kDouble);
  auto x = at::normal(0.0, 1.0, {5000, 3}, gen, torch::TensorOptions(torch::kDouble)).mm(chol.t());
  x.select(1, 2).fill_(42.0);  // (a constant column)
  const auto scale = torch::tensor({1e4, 1e-4, 1.0}, torch::kDouble), shift = torch::tensor({1e6, 0.0, 0.0}, torch::kDouble);
  const auto plain = GaussianFit::fit(x), odd = GaussianFit::fit(x * scale + shift);
  auto probe = torch::tensor({{0.0, 0.0, 42.0}, {1.0, -1.0, 42.0}, {-2.0, 0.5, 42.0}}, torch::kDouble);
  const auto a = plain.score(probe), b = odd.score(probe * scale + shift);
  EXPECT_TRUE(torch::allclose(a, b, 1e-6, 1e-9)) << a << b;
  EXPECT_NEAR(a[1].item<double>(), -2.5, 0.2);  // (1, -1) across a correlation of 0.6: -1/2 z^2 = -2.5
  auto off = probe.clone();
  off.select(1, 2).fill_(42.5);
  EXPECT_LT((plain.score(off) - a).max().item<double>(), -100.0);
  // (images: one ridge for every pixel)
  auto img = torch::zeros({50, 1, 2, 2}, torch::kDouble);
  img.select(3, 0).normal_(0.0, 1.0, gen);
  const auto gi = GaussianFit::fit(img);
  const auto d = gi.chol.mm(gi.chol.t()).diagonal();
  EXPECT_NEAR(d[1].item<double>(), d[3].item<double>(), 1e-12);
  EXPECT_GT(d[1].item<double>(), 1e-4);
}

// End to end: with training rows given, every set also gets the baseline's
// metrics; on a standard normal target the fitted Gaussian ranks rows as the
// target's own energy does, so their AUROCs agree. "none" turns it off.
TEST(OodTask, GaussianBaselineBesideTheScores) {
  const auto dir = test_helpers::fresh_dir("ood_baseline");
  std::filesystem::create_directories(dir);
  auto target = make_target("gaussian:dim=2,rho=0");
  auto gen = make_generator(87, kStreamTestData);
  write_npy(dir + "/train.npy", target->sample(5000, gen).to(torch::kFloat));
  auto x = target->sample(600, gen).to(torch::kFloat);
  write_npy(dir + "/in.npy", x);
  write_npy(dir + "/shifted.npy", x.index({torch::indexing::Slice(0, 300)}) + torch::tensor({2.0f, 0.0f}));
  ModelInfo info;
  info.event_shape = {2};
  auto run = [&](const std::string& reference) {
    Config cfg(eval_task_schema());
    cfg.set_value("task.name", std::string("ood"));
    cfg.set_value("task.in_data", dir + "/in.npy");
    cfg.set_value("task.out_data", dir + "/shifted.npy");
    cfg.set_value("task.score", std::string("energy"));
    cfg.set_value("task.reference", reference);
    cfg.validate();
    return eval_task_registry().make(cfg, *target, info);
  };
  auto r = run(dir + "/train.npy");
  EXPECT_EQ(r.json["baseline"]["kind"], "gaussian");
  const auto& set = r.json["sets"][0];
  ASSERT_TRUE(set.contains("baseline"));
  const double energy = set["scores"]["energy"]["auroc"].get<double>(), base = set["baseline"]["auroc"].get<double>();
  EXPECT_GT(energy, 0.6);
  EXPECT_NEAR(base, energy, 0.01);
  EXPECT_NE(r.text.find("gaussian*"), std::string::npos);
  // A baseline of fewer rows than values per row (here 1 of 2) is warned of.
  write_npy(dir + "/one.npy", x.index({torch::indexing::Slice(0, 1)}).repeat({2, 1}) +
                                  torch::tensor({{0.0f, 0.0f}, {1.0f, 0.0f}}));
  EXPECT_EQ(run(dir + "/train.npy").json.count("warnings"), 0u);
  const auto thin = run(dir + "/one.npy");
  ASSERT_TRUE(thin.json.contains("warnings"));
  EXPECT_NE(thin.json["warnings"].dump().find("fitted to 2 rows of 2 values"), std::string::npos)
      << thin.json["warnings"].dump();
  auto off = run("none");
  EXPECT_FALSE(off.json["sets"][0].contains("baseline"));
  EXPECT_TRUE(off.json["baseline"].contains("none"));
  EXPECT_NE(off.text.find("no Gaussian baseline"), std::string::npos);
  // A reference the user named that cannot serve is their error (as
  // inpaint's --reference is); it used to leave the report without a
  // baseline, exit 0.
  std::string msg;
  EXPECT_EQ(test_helpers::code_of([&] { run(dir + "/no_such.npy"); }, &msg), ExitCode::kMissingInput);
  EXPECT_NE(msg.find("no_such.npy"), std::string::npos) << msg;
  std::filesystem::remove_all(dir);
}

// A score of one value on every row of the in set and one out set is named
// for that set, not only when it is so for every set (constant images of
// value 0 in and out beside ones of 128 printed 0.5000 +- 0 without a word).
TEST(OodResult, ConstantScoresWarnPerSet) {
  OodResult r;
  r.in = "in";
  r.n_in = 100;
  r.scores = {"energy"};
  for (const auto& [name, flat] : std::vector<std::pair<std::string, bool>>{{"zeros", true}, {"grey", false}}) {
    OodSetResult s;
    s.name = name;
    s.n = 100;
    s.constant = {flat};
    r.sets.push_back(s);
  }
  const auto w = r.warnings();
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("one value on every row of in and zeros"), std::string::npos) << w[0];
  r.sets[1].constant = {true};
  EXPECT_NE(r.warnings().at(0).find("one value on every row: it carries no information"), std::string::npos);
}
