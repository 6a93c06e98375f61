// JEM with log p(x) by denoising score matching (objective.px = dsm; auto
// above kJemCdMaxDim dimensions): the marginal E(x) fits the noised density
// of a two-Gaussian mixture in 20 dimensions, validation scores the whole
// objective, a run resumes bit-exactly, and the choice and its errors; the
// Gaussian base (energy.base) such a run takes, and when auto takes it.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "common/errors.h"
#include "common/resume.h"
#include "common/tmp.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/energy/classifier_mlp.h"
#include "ebm/energy/registry.h"
#include "ebm/io/io.h"
#include "ebm/model/model.h"
#include "ebm/objectives/objective.h"
#include "ebm/objectives/registry.h"
#include "ebm/train/train.h"

using namespace ebm;
using test_helpers::code_of;
using test_helpers::fresh_dir;
namespace fs = std::filesystem;

namespace {
constexpr int64_t kDim = 20;
constexpr double kShift = 1.5, kSigma = 0.3;

// Class y in {0, 1} at mean (+-kShift, 0, ..., 0), unit covariance.
std::pair<torch::Tensor, torch::Tensor> two_gaussians(int64_t n, uint64_t seed) {
  auto gen = make_generator(seed, kStreamTestData);
  auto y = at::randint(0, 2, {n}, gen, torch::TensorOptions(torch::kLong));
  auto x = at::normal(0.0, 1.0, {n, kDim}, gen, torch::TensorOptions(torch::kDouble));
  x.select(1, 0).add_(kShift * (1 - 2 * y.to(torch::kDouble)));
  return {x, y};
}

// log of the mixture convolved with N(0, kSigma^2 I), up to a constant.
torch::Tensor noised_log_density(const torch::Tensor& x) {
  const double v = 1 + kSigma * kSigma;
  auto m = torch::zeros({2, kDim}, torch::kDouble);
  m[0][0] = kShift;
  m[1][0] = -kShift;
  auto d2 = (x.unsqueeze(1) - m.unsqueeze(0)).pow(2).sum(2);  // [N, 2]
  return torch::logsumexp(-d2 / (2 * v), 1);
}

Config jem_run(const std::string& root, int64_t steps, const std::string& extra = "") {
  fs::create_directories(root);
  auto [x, y] = two_gaussians(4000, 11);
  write_csv(root + "/x.csv", x);
  write_csv(root + "/y.csv", y.to(torch::kDouble).unsqueeze(1));
  Config c = make_train_config();
  c.load_string("seed = 2\n[data]\npath = \"" + root + "/x.csv\"\nlabels = \"" + root +
                    "/y.csv\"\ntest_fraction = 0.1\nval_fraction = 0.1\nstandardize = \"off\"\n"
                    "[energy]\nname = \"jem\"\nclasses = 2\nhidden = [64, 64]\n"
                    "[objective]\nname = \"jem\"\nsigma = " + std::to_string(kSigma) + "\nsigma_floor = \"none\"\n"
                    "[train]\nsteps = " + std::to_string(steps) + "\nbatch_size = 256\nlr = 1e-3\n"
                    "schedule = \"cosine\"\nlr_min = 1e-5\nlog_every = 100\ncheckpoint_every = 1000\n"
                    "keep_best = true\n[eval]\nsample_chains = 4\nsample_steps = 1\n" + extra,
                "test");
  return c;
}
}  // namespace

// 20 dimensions: auto picks score matching. On fresh rows the learned -E(x)
// follows log p_sigma(x) (correlation; the rows' log-densities spread over
// ~3 nats) and p(y | x) is near the Bayes classifier (accuracy Phi(1.5) =
// 0.933 on the clean rows). Measured with seeds 2-6: correlation
// 0.981-0.988, accuracy 0.911-0.920 (2,000 rows: sd 0.006); the cross
// entropy alone (px_weight = 0) gives correlation -0.14. The bounds leave
// room for other seeds and BLAS kernels.
TEST(JemScoreMatching, MarginalFitsTheNoisedDensityIn20Dimensions) {
  const std::string root = fresh_dir("jem_dsm_fit");
  Trainer t(jem_run(root, 2000), root + "/run");
  auto* jem = dynamic_cast<Jem*>(t.parts().objective.get());
  ASSERT_TRUE(jem && jem->px_by_score_matching());
  EXPECT_EQ(jem->px_chains(), nullptr);
  t.run(false);
  auto [x, y] = two_gaussians(2000, 99);
  torch::NoGradGuard no_grad;
  t.energy().eval();
  auto xf = x.to(torch::kFloat);
  auto e = t.energy().energy(xf).to(torch::kDouble);
  auto truth = noised_log_density(x);
  auto a = -e - (-e).mean(), b = truth - truth.mean();
  const double corr = (a * b).sum().item<double>() / std::sqrt((a * a).sum().item<double>() * (b * b).sum().item<double>());
  EXPECT_GT(corr, 0.95);
  const double acc =
      (t.energy().class_energies(xf).argmin(1) == y).to(torch::kDouble).mean().item<double>();
  EXPECT_GT(acc, 0.89);
  // validation scored the whole objective, and keep_best chose by it
  std::ifstream in(root + "/run/metrics.jsonl");
  std::string line;
  int validations = 0;
  bool kept = false;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("val_px")) {
      ++validations;
      EXPECT_NEAR(j["val_objective"].get<double>(), j["val_nll"].get<double>() + j["val_px"].get<double>(), 1e-9);
    }
    // (step 0 may win: the class base is this mixture's own family)
    if (j.value("event", "") == "keep_best") kept = j.contains("val_objective") && j["step"].get<int64_t>() >= 0;
  }
  EXPECT_EQ(validations, 20);
  EXPECT_TRUE(kept);
  EXPECT_NE(t.best_criterion().find("objective"), std::string::npos);
  // auto took the class base, and model.pt keeps it: the same energies
  std::ifstream toml(root + "/run/config.toml");
  const std::string text((std::istreambuf_iterator<char>(toml)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("base = \"classes\""), std::string::npos);
  auto loaded = load_model(root + "/run/model.pt");
  loaded->eval();
  EXPECT_TRUE(torch::allclose(loaded->energy(xf), t.energy().energy(xf), 1e-5, 1e-5));
  fs::remove_all(root);
}

// With its network's last layer zero, a classifier MLP with the Gaussian base
// is exactly 1/2 (x - m)^T C^-1 (x - m) for every class, m and C the fitted
// rows' mean and covariance (plus its ridge); with any weights its p(y | x) is the network's
// without the base.
TEST(GaussianBase, IsTheFittedMahalanobisDistanceAndLeavesPOfYGivenXAlone) {
  torch::manual_seed(3);
  const int64_t d = 6, n = 3000;
  auto a = torch::randn({d, d}, torch::kDouble);
  a[2] *= 1e-2;  // (a low-variance direction)
  auto rows = (torch::randn({n, d}, torch::kDouble).mm(a) + 3.0).to(torch::kFloat);
  auto opts = ClassifierMLPOptions(d, {16}, 3).base("gaussian");
  ClassifierMLP with(opts), without(ClassifierMLPOptions(d, {16}, 3));
  {
    torch::NoGradGuard ng;
    for (const auto& p : without->named_parameters()) with->named_parameters()[p.key()].copy_(p.value());
  }
  const double ridge = with->fit_base(rows);
  auto x = rows.narrow(0, 0, 50) + 0.5 * torch::randn({50, d});
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::allclose(torch::softmax(-with->class_energies(x), 1), torch::softmax(-without->class_energies(x), 1),
                              1e-4, 1e-5));
  with->named_parameters()["fc1.weight"].zero_();
  with->named_parameters()["fc1.bias"].zero_();
  auto r = rows.to(torch::kDouble);
  auto m = r.mean(0), xc = r - m;
  auto cov = xc.t().mm(xc) / double(n - 1);
  // (the ridge fit_base returns: a multiple of each column's variance, at least 1e-4)
  auto prec = torch::inverse(cov + ridge * torch::diag(cov.diagonal()));
  auto dx = x.to(torch::kDouble) - m;
  auto want = 0.5 * (dx.mm(prec) * dx).sum(1);
  auto got = with->class_energies(x).to(torch::kDouble);
  for (int64_t k = 0; k < 3; ++k) EXPECT_TRUE(torch::allclose(got.select(1, k), want, 2e-3, 1e-3)) << k;
  EXPECT_EQ(code_of([&] { without->fit_base(rows); }), ExitCode::kBadConfig);
}

// auto: the base where log p(x) is trained by denoising score matching on a
// class-conditional MLP over vectors; none elsewhere; a base asked of other
// energies is a config error.
TEST(GaussianBase, AutoTakesItWhereDenoisingTrainsAConditionalMlp) {
  auto resolved = [](const std::string& toml, const std::vector<int64_t>& shape) {
    Config c = make_train_config();
    c.load_string(toml, "test");
    resolve_energy_base(c, shape);
    return c.get_string("energy.base");
  };
  const std::string jem = "[energy]\nname = \"jem\"\nclasses = 2\n[objective]\nname = \"jem\"\n";
  EXPECT_EQ(resolved(jem, {kJemCdMaxDim + 1}), "classes");
  EXPECT_EQ(resolved("[data]\ntasks = 2\n" + jem, {kJemCdMaxDim + 1}), "gaussian");  // (class-incremental)
  {
    Config c = make_train_config();
    c.load_string("[energy]\nname = \"jem\"\nclasses = 2\nprior_std = 4.0\n[objective]\nname = \"jem\"\n", "test");
    resolve_energy_base(c, {64});
    EXPECT_EQ(c.get_float("energy.prior_std"), 0.0);  // (the base bounds E)
    Config cd = make_train_config();
    cd.load_string("[energy]\nname = \"jem\"\nclasses = 2\nprior_std = 4.0\n[objective]\nname = \"jem\"\npx = \"cd\"\n",
                   "test");
    resolve_energy_base(cd, {64});
    EXPECT_EQ(cd.get_float("energy.prior_std"), 4.0);  // (no base: the recipe's)
  }
  EXPECT_EQ(resolved(jem, {2}), "none");         // (auto: chains)
  EXPECT_EQ(resolved(jem, {1, 8, 8}), "none");   // (images: a conv net)
  EXPECT_EQ(resolved(jem, {2048}), "none");      // (over 1,024 values)
  EXPECT_EQ(resolved(jem + "px = \"cd\"\n", {64}), "none");
  EXPECT_EQ(resolved(jem + "px = \"dsm\"\n", {2}), "classes");
  EXPECT_EQ(resolved(jem + "pxy_weight = 0.5\n", {64}), "none");
  EXPECT_EQ(resolved("[energy]\nname = \"jem\"\nnet = \"conv\"\nclasses = 2\n[objective]\nname = \"jem\"\n", {64}),
            "none");
  EXPECT_EQ(resolved("[energy]\nname = \"mlp\"\nconditional = true\nclasses = 2\n[objective]\nname = \"dsm\"\n", {8}),
            "classes");
  EXPECT_EQ(resolved("[energy]\nname = \"mlp\"\n[objective]\nname = \"dsm\"\n", {8}), "none");
  EXPECT_EQ(resolved("[energy]\nname = \"mlp\"\nconditional = true\nclasses = 2\n[objective]\nname = \"ce\"\n", {8}),
            "none");
  EXPECT_EQ(resolved("[energy]\nname = \"jem\"\nclasses = 2\nbase = \"none\"\n[objective]\nname = \"jem\"\n", {64}),
            "none");
  auto build = [](const std::string& toml, const std::vector<int64_t>& shape) {
    Config c = make_train_config();
    c.load_string(toml, "test");
    return build_energy(c, shape);
  };
  EXPECT_EQ(code_of([&] { build("[energy]\nname = \"mlp\"\nbase = \"gaussian\"\n", {8}); }), ExitCode::kBadConfig);
  EXPECT_EQ(code_of([&] { build("[energy]\nname = \"jem\"\nnet = \"conv\"\nclasses = 2\nbase = \"gaussian\"\n", {1, 8, 8}); }),
            ExitCode::kBadConfig);
  EXPECT_EQ(code_of([&] { build("[energy]\nname = \"jem\"\nclasses = 2\nbase = \"gauss\"\n", {8}); }),
            ExitCode::kBadConfig);
  EXPECT_NO_THROW(build("[energy]\nname = \"jem\"\nclasses = 2\nbase = \"gaussian\"\n", {8}));
  EXPECT_NO_THROW(build("[energy]\nname = \"jem\"\nclasses = 2\nbase = \"classes\"\n", {8}));
  EXPECT_EQ(code_of([&] { build("[energy]\nname = \"mlp\"\nbase = \"classes\"\n", {8}); }), ExitCode::kBadConfig);
}

// energy.base = "classes": after fit_base the model is linear discriminant
// analysis' (its last layer zeroed): E(x, y) = 1/2 (x - m_y)^T S^-1 (x - m_y)
// - log pi_y with m_y the class means, S the pooled within-class covariance
// (plus the ridge fit_base returns, a multiple of each column's variance)
// and pi_y = (n_y + 1) / (n + K), computed here in closed
// form in float64; p(y | x) is then LDA's posterior. Rows with labels outside
// the classes count as unlabelled; too few labelled rows give one Gaussian.
TEST(GaussianBase, ClassesIsLinearDiscriminantAnalysis) {
  torch::manual_seed(5);
  const int64_t d = 5, k = 3, n = 4000;
  auto a = torch::randn({d, d}, torch::kDouble);
  auto y = torch::multinomial(torch::tensor({0.6, 0.3, 0.1}, torch::kDouble), n, true);
  auto centres = 2.0 * torch::randn({k, d}, torch::kDouble);
  auto rows = (torch::randn({n, d}, torch::kDouble).mm(a) + centres.index_select(0, y) + 10.0).to(torch::kFloat);
  auto labels = y.clone();
  labels.narrow(0, 0, 100).fill_(7);  // (outside the classes: unlabelled)
  ClassifierMLP m(ClassifierMLPOptions(d, {16}, k).base("classes"));
  const double ridge = m->fit_base(rows, labels);
  EXPECT_GE(ridge, 1e-4);
  // the closed form over the labelled rows
  auto r = rows.to(torch::kDouble).narrow(0, 100, n - 100);
  auto yl = y.narrow(0, 100, n - 100);
  std::vector<torch::Tensor> means;
  auto within = torch::zeros({d, d}, torch::kDouble);
  auto logp = torch::zeros({k}, torch::kDouble);
  for (int64_t c = 0; c < k; ++c) {
    auto rc = r.index({yl == c});
    means.push_back(rc.mean(0));
    auto xc = rc - means.back();
    within += xc.t().mm(xc);
    logp[c] = std::log((rc.size(0) + 1.0) / double(n - 100 + k));
  }
  auto cov = within / double(n - 100 - k);
  auto prec = torch::inverse(cov + ridge * torch::diag(cov.diagonal()));
  auto x = rows.narrow(0, 0, 64) + torch::randn({64, d});
  torch::NoGradGuard ng;
  auto got = m->class_energies(x).to(torch::kDouble);
  for (int64_t c = 0; c < k; ++c) {
    auto dx = x.to(torch::kDouble) - means[c];
    auto want = 0.5 * (dx.mm(prec) * dx).sum(1) - logp[c];
    EXPECT_TRUE(torch::allclose(got.select(1, c), want, 2e-3, 2e-3)) << c;
  }
  // (the marginal: the mixture's -log sum_y pi_y exp(-quadratic))
  EXPECT_TRUE(torch::allclose(m->energy(x).to(torch::kDouble), -torch::logsumexp(-got, 1), 1e-4, 1e-4));
  // (a batch too large for the [B, K, D] form takes the expanded one: the same energies)
  auto big = torch::cat({x, x.repeat({20000, 1})});
  EXPECT_TRUE(torch::allclose(m->class_energies(big).narrow(0, 0, 64).to(torch::kDouble), got, 1e-3, 1e-3));
  // equal_shares (balanced batches): pi_y = 1 / K, the same Gaussians
  ClassifierMLP equal(ClassifierMLPOptions(d, {16}, k).base("classes"));
  equal->fit_base(rows, labels, /*equal_shares=*/true);
  auto got_eq = equal->class_energies(x).to(torch::kDouble);
  for (int64_t c = 0; c < k; ++c)
    EXPECT_TRUE(torch::allclose(got_eq.select(1, c), got.select(1, c) + logp[c] + std::log(double(k)), 2e-3, 2e-3))
        << c;
  // too few labelled rows: one Gaussian, equal shares
  ClassifierMLP one(ClassifierMLPOptions(d, {16}, k).base("classes"));
  one->fit_base(rows, torch::full({n}, int64_t(-1), torch::kLong));
  auto e1 = one->class_energies(x);
  EXPECT_TRUE(torch::allclose(e1.select(1, 0), e1.select(1, 2), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(torch::softmax(-e1, 1), torch::full({64, k}, 1.0 / k), 1e-5, 1e-5));
}

// Fewer labelled rows than dimensions (80 rows of 100 values, 4 classes of
// identity covariance): a fixed ridge of 1e-4 left the pooled covariance
// singular and LDA's posterior at 0.42 on a probe's such features (Bayes
// 0.996). The ridge the rows choose shrinks it hard, and the base classifies
// within 3 points of the nearest class mean (means from the same rows), the
// right rule here; 2,000 test rows, so 3 points is over 5 standard errors.
TEST(GaussianBase, FewerRowsThanDimensionsStillClassify) {
  torch::manual_seed(6);
  const int64_t d = 100, k = 4, n = 80, m = 2000;
  auto centres = 0.35 * torch::randn({k, d}, torch::kDouble);
  auto y = torch::arange(n, torch::kLong).remainder(k), yt = torch::arange(m, torch::kLong).remainder(k);
  auto rows = (torch::randn({n, d}, torch::kDouble) + centres.index_select(0, y)).to(torch::kFloat);
  auto test = (torch::randn({m, d}, torch::kDouble) + centres.index_select(0, yt)).to(torch::kFloat);
  ClassifierMLP model(ClassifierMLPOptions(d, {16}, k).base("classes"));
  EXPECT_GT(model->fit_base(rows, y), 0.1);
  torch::NoGradGuard ng;
  const double acc = (model->class_energies(test).argmin(1) == yt).to(torch::kDouble).mean().item<double>();
  auto means = torch::zeros({k, d}, torch::kFloat).index_add_(0, y, rows) / double(n / k);
  const double nearest = (torch::cdist(test, means).argmin(1) == yt).to(torch::kDouble).mean().item<double>();
  EXPECT_GT(acc, nearest - 0.03) << acc << " against " << nearest;
  EXPECT_GT(acc, 0.5);
}

TEST(JemScoreMatching, ResumeIsBitExact) {
  const std::string root = fresh_dir("jem_dsm_resume");
  Config c = jem_run(root, 6, "");
  c.set_value("train.log_every", int64_t(1));
  c.set_value("train.checkpoint_every", int64_t(3));
  c.set_value("objective.warmup", int64_t(4));
  test_helpers::run_and_resume(c, root, 3, [](Trainer& full, Trainer& b) {
    auto pa = full.energy().parameters(), pb = b.energy().parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << i;
  });
  fs::remove_all(root);
}

TEST(JemScoreMatching, AutoPicksByDimensionAndDsmRefusesImagesAndChains) {
  Config c = make_train_config();
  c.load_string("[energy]\nname = \"jem\"\nclasses = 2\n[objective]\nname = \"jem\"\n", "test");
  auto is_dsm = [&](const std::vector<int64_t>& shape) {
    auto o = build_objective(c, shape, torch::kCPU);
    auto* jem = dynamic_cast<Jem*>(o.get());
    EXPECT_NE(jem, nullptr);
    return jem != nullptr && jem->px_by_score_matching();
  };
  EXPECT_FALSE(is_dsm({2}));
  EXPECT_FALSE(is_dsm({kJemCdMaxDim}));
  EXPECT_TRUE(is_dsm({kJemCdMaxDim + 1}));
  EXPECT_FALSE(is_dsm({1, 8, 8}));
  c.set_value("objective.pxy_weight", 0.5);  // log p(x | y) needs chains: auto keeps them
  EXPECT_FALSE(is_dsm({128}));
  c.set_value("objective.pxy_weight", 0.0);
  c.set_value("objective.px", std::string("cd"));
  EXPECT_FALSE(is_dsm({128}));
  c.set_value("objective.px", std::string("dsm"));
  EXPECT_TRUE(is_dsm({2}));
  EXPECT_EQ(code_of([&] { build_objective(c, {1, 8, 8}, torch::kCPU); }), ExitCode::kBadConfig);
  c.set_value("objective.pxy_weight", 0.5);
  EXPECT_EQ(code_of([&] { build_objective(c, {4}, torch::kCPU); }), ExitCode::kBadConfig);
  c.set_value("objective.pxy_weight", 0.0);
  c.set_value("objective.px", std::string("sm"));
  EXPECT_EQ(code_of([&] { build_objective(c, {4}, torch::kCPU); }), ExitCode::kBadConfig);
  c.set_value("objective.px", std::string("dsm"));
  c.set_value("objective.sigma_floor", std::string("nn"));
  EXPECT_EQ(code_of([&] { build_objective(c, {4}, torch::kCPU); }), ExitCode::kBadConfig);
}
