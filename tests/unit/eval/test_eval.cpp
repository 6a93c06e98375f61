// nll2d against analytic targets with known log Z and entropy.
#include <gtest/gtest.h>

#include "ebm/core/rng.h"
#include "ebm/core/error.h"
#include "ebm/data/data.h"
#include "ebm/data/unbalanced.h"
#include "ebm/energy/conv.h"
#include "ebm/eval/cell_shares.h"
#include "ebm/eval/eval.h"
#include "ebm/eval/images.h"
#include "ebm/io/io.h"
#include "ebm/train/train.h"
#include "common/nets.h"
#include "common/mixture.h"
#include "common/tmp.h"

#include <filesystem>
#include <fstream>

using namespace ebm;

TEST(Nll2d, RecoversLogZOfAnalyticTargets) {
  auto gen = make_generator(21, kStreamEval);
  for (const std::string name : {"gaussian", "banana", "mixture", "double_well"}) {
    auto t = make_target(name, 2);
    auto test = t->sample(20000, gen);
    auto r = nll2d(*t, test);
    EXPECT_TRUE(r.converged) << name;
    // Midpoint rule on a smooth integrand: converged to the requested 1e-3.
    EXPECT_NEAR(r.log_z, t->log_z(), 2e-3) << name;
    EXPECT_LT(r.log_z_error, 1e-3) << name;
  }
}

// For the Gaussian, the mean NLL of exact samples estimates the entropy
// 1/2 log det(2 pi e Sigma); tolerance z = 4.89 (false alarm 1e-6) times the
// reported standard error, plus the quadrature tolerance.
TEST(Nll2d, MeanNllOfExactSamplesIsTheEntropy) {
  auto gen = make_generator(22, kStreamEval);
  auto t = make_target("gaussian", 2);
  auto test = t->sample(50000, gen);
  auto r = nll2d(*t, test);
  const double entropy =
      0.5 * std::log(std::pow(2 * M_PI * M_E, 2) * torch::det(t->covariance()).item<double>());
  EXPECT_NEAR(r.mean_nll, entropy, 4.89 * r.nll_se + 2e-3);
  // One stray test row far away neither moves log Z nor stops convergence
  // (the grid's box leaves the farthest 0.2% of rows out); it gets its NLL.
  auto far = torch::cat({test.narrow(0, 0, 2000), torch::full({1, 2}, 2000.0, test.options())});
  auto f = nll2d(*t, far);
  EXPECT_TRUE(f.converged);
  EXPECT_NEAR(f.log_z, t->log_z(), 2e-3);
}

namespace {
using test_helpers::MixtureEnergy;
}  // namespace

// The unbalanced sets' exact density: it integrates to 1 (log Z = 0 by
// quadrature) and its mean NLL over samples is the stated entropy (z = 4.89,
// false alarm 1e-6, plus the quadrature tolerance).
TEST(Unbalanced, ExactDensityIntegratesToOneAndGivesTheEntropy) {
  for (int64_t v : {0, 3}) {
    const std::string name = "unbalanced" + std::to_string(v);
    MixtureEnergy e(unbalanced_mixture(v));
    auto gen = make_generator(30 + v, kStreamTestData);
    auto x = toy2d(name, 20000, gen).to(torch::kDouble);
    auto r = nll2d(e, x);
    EXPECT_TRUE(r.converged) << name;
    EXPECT_NEAR(r.log_z, 0.0, 2e-3) << name;
    EXPECT_NEAR(r.mean_nll, toy2d_entropy(name), 4.89 * r.nll_se + 2e-3) << name;
  }
}

// The mode-mass check passes the exact density and flags the same mixture
// with equal weights (the shapes right, the masses wrong).
TEST(ModeMasses, PassesTheTruthAndFlagsWrongWeights) {
  const auto& truth = unbalanced_mixture(0);
  auto gen = make_generator(40, kStreamTestData);
  auto x = toy2d("unbalanced0", 10000, gen).to(torch::kDouble);
  MixtureEnergy exact(truth);
  auto kgen = make_generator(41, kStreamEval);
  auto good = mode_masses(exact, x, 8, 4.0, 0.02, kgen);
  EXPECT_TRUE(good.ok) << good.table();
  EXPECT_NEAR(good.model_mass.sum().item<double>(), 1.0, 2e-3);
  EXPECT_LT(good.kl, 0.01) << good.table();
  Mixture2d equal = truth;
  for (auto& g : equal.parts) g.weight = 1.0 / double(equal.parts.size());
  MixtureEnergy wrong(equal);
  kgen = make_generator(41, kStreamEval);
  auto bad = mode_masses(wrong, x, 8, 4.0, 0.02, kgen);
  EXPECT_FALSE(bad.ok) << bad.table();
  EXPECT_GE(bad.flagged.sum().item<int64_t>(), 2);
  EXPECT_GT(bad.kl, 0.05);
  // (the same cells both times: k-means from the same stream)
  EXPECT_TRUE(torch::equal(good.centers, bad.centers));
  auto j = mode_masses_json(bad);
  EXPECT_EQ(j["cells"].size(), 8u);
  EXPECT_FALSE(j["ok"].get<bool>());
}

TEST(KMeans, FindsSeparatedClusters) {
  auto gen = make_generator(42, kStreamTestData);
  auto a = at::normal(0.0, 0.1, {500, 2}, gen, torch::TensorOptions().dtype(torch::kDouble));
  auto b = at::normal(0.0, 0.1, {300, 2}, gen, torch::TensorOptions().dtype(torch::kDouble)) + 5;
  auto c = kmeans(torch::cat({a, b}), 2, gen);
  auto lo = std::get<0>(c.sum(1).sort()).contiguous();
  EXPECT_NEAR(lo[0].item<double>(), 0.0, 0.05);
  EXPECT_NEAR(lo[1].item<double>(), 10.0, 0.05);
  EXPECT_THROW(kmeans(a.narrow(0, 0, 3), 4, gen), Error);
}

// ----- Runs: units and mode masses ------------------------------------------
namespace fs = std::filesystem;
namespace {
using test_helpers::fresh_dir;
constexpr int64_t kModeCheckSteps = 3000;

// The shipped PCD recipe (configs/toy2d-pcd.toml) at a short budget.
Config recipe(int64_t steps) {
  Config c = make_train_config();
  c.load_file(std::string(EBM_SOURCE_DIR) + "/configs/toy2d-pcd.toml");
  c.set("train.steps=" + std::to_string(steps));
  c.set("train.log_every=100");
  c.set("train.checkpoint_every=100000");
  return c;
}
}  // namespace

// A user's CSV in other units (x 100, + 1000) trains the same model in the
// standardised space, and its NLL in the user's units is the original's plus
// the log-Jacobian 2 log 100: NLL - entropy is unchanged. (The points are
// multiples of 2^-10, so 100 x + 1000 is exact in float32 and both runs see
// the same standardised bits.)
TEST(Trainer, OtherUnitsGiveTheSameNllMinusEntropy) {
  const std::string d = fresh_dir("units");
  fs::create_directories(d);
  auto gen = make_generator(60, kStreamData);
  auto x = (toy2d("unbalanced0", 4000, gen) * 1024).round() / 1024;
  write_npy(d + "/a.npy", x);
  write_npy(d + "/b.npy", x * 100 + 1000);
  std::vector<double> nll;
  std::vector<torch::Tensor> tests;
  for (const std::string f : {"a", "b"}) {
    Config c = recipe(300);
    c.set("data.path=" + d + "/" + f + ".npy");
    c.validate();
    Trainer t(c, d + "/run_" + f);
    t.run(false);
    t.energy().eval();
    auto r = nll2d(*t.user_energy(), t.data().test.x);
    nll.push_back(r.mean_nll);
    tests.push_back(t.data().test.x);
  }
  EXPECT_TRUE(torch::equal(tests[1], tests[0] * 100 + 1000));
  EXPECT_NEAR(nll[1] - nll[0], 2 * std::log(100.0), 2e-3);
  fs::remove_all(d);
}

// The mode-mass check flags a model of the previous default recipe (Langevin
// chains only, raw units, the fixed [-4, 4] init box) on an unbalanced set,
// and passes one of the shipped recipe, at the same short budget.
TEST(Trainer, ModeCheckFlagsThePreviousRecipeAndPassesTheNew) {
  const std::string d = fresh_dir("modes");
  auto check = [&](Config c, const std::string& tag) {
    c.set("data.name=unbalanced0");
    c.set("data.n=20000");
    c.validate();
    Trainer t(c, d + "/" + tag);
    t.run(false);
    t.energy().eval();
    auto gen = make_generator(61, kStreamEval);
    return mode_masses(*t.user_energy(), t.data().test.x, 8, 4.0, 0.02, gen);
  };
  Config old = recipe(kModeCheckSteps);
  for (const std::string s : {"sampler.name=langevin", "sampler.exact_noise=true", "sampler.steps=20",
                              "objective.jumps=0", "data.standardize=off", "buffer.init=uniform"})
    old.set(s);
  auto bad = check(old, "old");
  auto good = check(recipe(kModeCheckSteps), "new");
  EXPECT_FALSE(bad.ok) << bad.table();
  EXPECT_TRUE(good.ok) << good.table();
  fs::remove_all(d);
}

// ----- Image evaluation: Frechet distance, class probabilities, samples -------
namespace {
// n rows [n, F] (float64) whose sample mean is exactly mu and whose sample
// covariance (denominator n - 1) is exactly L L^T, up to rounding: centred
// Gaussian columns orthonormalised (so orthogonal to the ones vector too).
torch::Tensor with_moments(const torch::Tensor& mu, const torch::Tensor& l, int64_t n, at::Generator& gen) {
  auto z = at::normal(0.0, 1.0, {n, mu.size(0)}, gen, torch::TensorOptions().dtype(torch::kDouble));
  auto q = std::get<0>(torch::linalg_qr(z - z.mean(0)));  // [n, F]
  return mu + std::sqrt(double(n - 1)) * q.mm(l.t());
}

std::pair<torch::Tensor, torch::Tensor> sample_moments(const torch::Tensor& x) {
  auto mu = x.mean(0);
  auto c = x - mu;
  return {mu, c.t().mm(c) / double(x.size(0) - 1)};
}
}  // namespace

// FID's Gaussian baseline: draws whose mean and covariance are the rows'
// sample moments, each entry within 5 standard errors of 20,000 draws (about
// 1e-5 false alarms over the 27 entries), and, with fewer rows than
// dimensions, draws in the span of the centred rows (the covariance's rank).
TEST(GaussianDraws, MatchTheRowsMomentsWithoutTheCovarianceMatrix) {
  auto gen = make_generator(71, kStreamTestData);
  auto rows = (at::normal(0.0, 1.0, {50, 6}, gen, torch::TensorOptions().dtype(torch::kDouble)) +
               at::normal(0.0, 1.0, {50, 1}, gen, torch::TensorOptions().dtype(torch::kDouble)) * 2 + 7)
                  .reshape({50, 1, 2, 3});
  const int64_t n = 20000;
  auto x = gaussian_draws(rows, n, gen);
  ASSERT_EQ(x.sizes(), torch::IntArrayRef({n, 1, 2, 3}));
  auto [mu, s] = sample_moments(rows.flatten(1));
  auto [mx, sx] = sample_moments(x.flatten(1));
  for (int64_t i = 0; i < 6; ++i) {
    const double sii = s[i][i].item<double>();
    EXPECT_LT(std::abs(mx[i].item<double>() - mu[i].item<double>()), 5 * std::sqrt(sii / n)) << i;
    for (int64_t j = 0; j <= i; ++j) {
      const double sij = s[i][j].item<double>(), se = std::sqrt((sii * s[j][j].item<double>() + sij * sij) / n);
      EXPECT_LT(std::abs(sx[i][j].item<double>() - sij), 5 * se) << i << ", " << j;
    }
  }
  auto few = at::normal(0.0, 1.0, {4, 3, 8, 8}, gen, torch::TensorOptions().dtype(torch::kDouble));
  auto c = few.flatten(1) - few.flatten(1).mean(0);
  auto d = gaussian_draws(few, 10, gen).flatten(1) - few.flatten(1).mean(0);
  auto q = std::get<0>(torch::linalg_qr(c.t()));            // [192, 4]: spans the centred rows
  auto off = d - d.mm(q).mm(q.t());
  EXPECT_LT(off.abs().max().item<double>(), 1e-9 * d.abs().max().item<double>());
  EXPECT_GT(d.abs().max().item<double>(), 0.1);
}

// A set against itself (or its rows reordered): 0 up to rounding of the scale tr S.
TEST(FrechetDistance, IdenticalSetsAreAtDistanceZero) {
  auto gen = make_generator(70, kStreamTestData);
  auto a = at::normal(0.0, 3.0, {400, 8}, gen, torch::TensorOptions().dtype(torch::kDouble)) + 5;
  const double scale = sample_moments(a).second.trace().item<double>();  // ~ 72
  EXPECT_LT(std::abs(frechet_distance(a, a)), 1e-8 * scale);
  EXPECT_LT(std::abs(frechet_distance(a, a.flip({0}))), 1e-8 * scale);
  EXPECT_LT(std::abs(frechet_distance(a.to(torch::kFloat), a.to(torch::kFloat))), 1e-8 * scale);
}

// Diagonal covariances: |mu_a - mu_b|^2 + sum_j (s_a + s_b - 2 sqrt(s_a s_b)),
// from the sets' sample moments (exactly diagonal by construction), to 1e-6
// relative; the distance is symmetric, shift invariant and scales as k^2.
TEST(FrechetDistance, DiagonalCovariancesMatchTheClosedForm) {
  auto gen = make_generator(71, kStreamTestData);
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto a = with_moments(torch::tensor({0.0, 1.0, -2.0, 0.5}, opts),
                        torch::diag(torch::tensor({0.5, 1.0, 2.0, 4.0}, opts)), 300, gen);
  auto b = with_moments(torch::tensor({1.0, 1.0, 0.0, 0.0}, opts),
                        torch::diag(torch::tensor({3.0, 0.2, 1.0, 4.0}, opts)), 500, gen);
  auto [ma, sa] = sample_moments(a);
  auto [mb, sb] = sample_moments(b);
  ASSERT_LT((sa - torch::diag(sa.diag())).abs().max().item<double>(), 1e-10);
  ASSERT_LT((sb - torch::diag(sb.diag())).abs().max().item<double>(), 1e-10);
  auto va = sa.diag(), vb = sb.diag();
  const double want = ((ma - mb).pow(2).sum() + (va + vb - 2 * (va * vb).sqrt()).sum()).item<double>();
  // (by construction: means 1 + 0 + 4 + 0.25, standard deviations
  // (0.5 - 3)^2 + (1 - 0.2)^2 + (2 - 1)^2 + 0: 13.14)
  EXPECT_NEAR(want, 13.14, 1e-9);
  EXPECT_NEAR(frechet_distance(a, b), want, 1e-6 * want);
  EXPECT_NEAR(frechet_distance(b, a), want, 1e-6 * want);
  EXPECT_NEAR(frechet_distance(a + 7, b + 7), want, 1e-6 * want);
  EXPECT_NEAR(frechet_distance(3 * a, 3 * b), 9 * want, 1e-6 * 9 * want);
}

// Correlated 2 x 2 covariances: tr (S_a^1/2 S_b S_a^1/2)^1/2 = sqrt(tr(S_a S_b)
// + 2 sqrt(det S_a det S_b)) (the sum of the square roots of a 2 x 2 PSD
// matrix's eigenvalues), from the sample moments in plain arithmetic.
TEST(FrechetDistance, CorrelatedTwoByTwoMatchesTheClosedForm) {
  auto gen = make_generator(72, kStreamTestData);
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  for (int trial = 0; trial < 3; ++trial) {
    // (plain Gaussian samples: whatever their sample moments, the formula holds)
    auto la = torch::tensor({{1.0, 0.0}, {0.8, 0.6}}, opts) * (1 + trial);
    auto lb = torch::tensor({{0.5, 0.0}, {-1.2, 0.3}}, opts);
    auto a = at::normal(0.0, 1.0, {200, 2}, gen, opts).mm(la.t()) + torch::tensor({1.0, -1.0}, opts);
    auto b = at::normal(0.0, 1.0, {300, 2}, gen, opts).mm(lb.t());
    auto [ma, sa] = sample_moments(a);
    auto [mb, sb] = sample_moments(b);
    auto at2 = [](const torch::Tensor& m, int i, int j) { return m[i][j].item<double>(); };
    const double a00 = at2(sa, 0, 0), a01 = at2(sa, 0, 1), a11 = at2(sa, 1, 1);
    const double b00 = at2(sb, 0, 0), b01 = at2(sb, 0, 1), b11 = at2(sb, 1, 1);
    const double tr_ab = a00 * b00 + 2 * a01 * b01 + a11 * b11;
    const double det_a = a00 * a11 - a01 * a01, det_b = b00 * b11 - b01 * b01;
    const double dm0 = ma[0].item<double>() - mb[0].item<double>(), dm1 = ma[1].item<double>() - mb[1].item<double>();
    const double want =
        dm0 * dm0 + dm1 * dm1 + a00 + a11 + b00 + b11 - 2 * std::sqrt(tr_ab + 2 * std::sqrt(det_a * det_b));
    EXPECT_NEAR(frechet_distance(a, b), want, 1e-6 * want) << trial;
  }
}

// Wider correlated sets: the trace term as the sum of the square roots of
// the eigenvalues of S_a S_b (similar to S_a^1/2 S_b S_a^1/2), computed by a
// general eigensolver.
TEST(FrechetDistance, CorrelatedSetsMatchTheEigenvaluesOfTheProduct) {
  auto gen = make_generator(73, kStreamTestData);
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto mix_a = at::normal(0.0, 1.0, {6, 6}, gen, opts), mix_b = at::normal(0.0, 0.5, {6, 6}, gen, opts);
  auto a = at::normal(0.0, 1.0, {500, 6}, gen, opts).mm(mix_a);
  auto b = at::normal(0.0, 1.0, {400, 6}, gen, opts).mm(mix_b) + 0.3;
  auto [ma, sa] = sample_moments(a);
  auto [mb, sb] = sample_moments(b);
  auto ev = torch::linalg_eigvals(sa.mm(sb));  // complex, real and positive up to rounding
  ASSERT_LT(torch::imag(ev).abs().max().item<double>(), 1e-8);
  const double tr_sqrt = torch::real(ev).clamp_min(0).sqrt().sum().item<double>();
  const double want = ((ma - mb).pow(2).sum() + sa.trace() + sb.trace()).item<double>() - 2 * tr_sqrt;
  EXPECT_GT(want, 0.0);
  EXPECT_NEAR(frechet_distance(a, b), want, 1e-6 * want);
  // Sets of another width, a single row, or a non-matrix are refused.
  EXPECT_THROW(frechet_distance(a, b.narrow(1, 0, 5)), c10::Error);
  EXPECT_THROW(frechet_distance(a.narrow(0, 0, 1), b), c10::Error);
  EXPECT_THROW(frechet_distance(a.flatten(), b), c10::Error);
}

// Class probabilities are softmax(-E(x, y)), whatever the batch size; the
// features are the energy's penultimate ones.
TEST(ImageEval, ClassProbabilitiesAndFeatures) {
  auto init = make_generator(74, kStreamInit);
  ConvEnergy net(
      ConvEnergyOptions({1, 8, 8}).channels({4}).kernels({3}).strides({2}).paddings({1}).hidden({12}).classes(3));
  reset_parameters(*net, init);
  auto x = at::rand({10, 1, 8, 8}, init) * 2 - 1;
  auto p = class_probabilities(*net, x, 4);  // (batches of 4, 4, 2)
  ASSERT_EQ(p.sizes(), (c10::IntArrayRef{10, 3}));
  EXPECT_FALSE(p.requires_grad());
  EXPECT_TRUE(torch::allclose(p.sum(1), torch::ones({10}), 0, 1e-6));
  EXPECT_TRUE((p >= 0).all().item<bool>());
  torch::Tensor want, feats;
  {
    torch::NoGradGuard ng;
    want = torch::softmax(-net->class_energies(x), 1);
    feats = net->features(x);
  }
  EXPECT_TRUE(torch::allclose(p, want, 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(class_probabilities(*net, x), p, 1e-6, 1e-7));
  auto f = batch_features(*net, x, 3);
  EXPECT_EQ(f.sizes(), (c10::IntArrayRef{10, 12}));
  EXPECT_TRUE(torch::allclose(f, feats, 1e-6, 1e-7));
  ConvEnergy plain(ConvEnergyOptions({1, 8, 8}).channels({4}).kernels({3}).strides({2}).paddings({1}));
  EXPECT_THROW(class_probabilities(*plain, x), c10::Error);
  EXPECT_EQ(batch_features(*plain, x).sizes(), (c10::IntArrayRef{10, 64}));
  EXPECT_THROW(batch_features(*make_target("gaussian", 2), torch::zeros({3, 2})), c10::Error);
}


// A conditional model's chain i is drawn at label i mod K: noiseless Langevin
// steps of 1/2 on E(x, y) bring chain i to m_(i mod K), with the sampler from
// the spec or from the model's training config; without steps, the chains
// are the init (uniform over the pixel range).
TEST(ImageEval, DrawModelSamplesFollowTheirLabels) {
  auto means = torch::tensor({{-0.5, 0.5, 0.0, 0.25}, {0.9, 0.9, -0.9, -0.9}, {0.0, 0.1, 0.2, 0.3}});
  test_helpers::ClassQuadratics energy(means, {1, 2, 2});
  ModelInfo info;
  info.event_shape = {1, 2, 2};
  info.pixels = PixelMap{-1.0, 1.0, false};
  auto gen = make_generator(75, kStreamEval);
  auto want = means.index_select(0, torch::arange(7).remainder(3)).view({7, 1, 2, 2});
  auto x = draw_model_samples(energy, info, 7, 40, "langevin:step=0.5,noise=0", gen);
  ASSERT_EQ(x.sizes(), (c10::IntArrayRef{7, 1, 2, 2}));
  EXPECT_TRUE(torch::allclose(x, want, 0, 1e-5)) << (x - want).abs().max().item<double>();
  info.sampler_toml = "[sampler]\nname = \"langevin\"\nstep_size = 0.5\nnoise = 0.0\n";
  auto y = draw_model_samples(energy, info, 7, 40, "", gen);
  EXPECT_TRUE(torch::allclose(y, want, 0, 1e-5)) << (y - want).abs().max().item<double>();
  info.pixels = PixelMap{2.0, 3.0, false};
  auto z = draw_model_samples(energy, info, 50, 0, "", gen);
  EXPECT_GE(z.min().item<double>(), 2.0);
  EXPECT_LE(z.max().item<double>(), 3.0);
  // The same stream, the same samples.
  auto g1 = make_generator(76, kStreamEval), g2 = make_generator(76, kStreamEval);
  EXPECT_TRUE(torch::equal(draw_model_samples(energy, info, 5, 3, "ula:step=0.01", g1),
                           draw_model_samples(energy, info, 5, 3, "ula:step=0.01", g2)));
}

// Labels in the training classes' shares: the run's training split rebuilt
// from model.pt's [data] table and seed, counted, and n labels allotted by
// largest remainders, class by class; given labels take the place of
// i mod K. A file that cannot rebuild its data gives none, and says why.
TEST(ImageEval, LabelsInTheTrainingClassesShares) {
  const std::string dir = test_helpers::fresh_dir("class_shares");
  std::filesystem::create_directories(dir);
  auto gen = make_generator(77, kStreamTestData);
  const int64_t rows = 1000;
  write_csv(dir + "/x.csv", at::randn({rows, 2}, gen, torch::kDouble));
  std::ofstream y(dir + "/y.csv");
  for (int64_t i = 0; i < rows; ++i) y << (i % 10 < 7 ? 0 : i % 10 < 9 ? 1 : 2) << "\n";
  y.close();
  ModelInfo info;
  info.event_shape = {2};
  info.data_toml = "[data]\npath = \"" + dir + "/x.csv\"\nlabels = \"" + dir + "/y.csv\"\n";
  info.seed = 3;
  std::string why;
  const auto split = model_data_split(info, "m", &why);
  ASSERT_TRUE(split.has_value()) << why;
  const auto share = torch::bincount(split->train.y, {}, 3).to(torch::kDouble) / double(split->train.size());
  const auto labels = labels_in_class_shares(info, 3, 20, &why);
  ASSERT_TRUE(labels.defined()) << why;
  const auto count = torch::bincount(labels, {}, 3).to(torch::kDouble);
  EXPECT_EQ(count.sum().item<double>(), 20);
  EXPECT_LE((count - 20 * share).abs().max().item<double>(), 1.0) << count << share;
  EXPECT_TRUE(torch::equal(labels, std::get<0>(labels.sort())));  // (class by class)
  // Chains at given labels go to their classes' means.
  auto means = torch::tensor({{-0.5, 0.5, 0.0, 0.25}, {0.9, 0.9, -0.9, -0.9}, {0.0, 0.1, 0.2, 0.3}});
  test_helpers::ClassQuadratics energy(means, {1, 2, 2});
  ModelInfo img;
  img.event_shape = {1, 2, 2};
  img.pixels = PixelMap{-1.0, 1.0, false};
  const auto at = torch::tensor({2, 2, 0, 1}, torch::kLong);
  auto x = draw_model_samples(energy, img, 4, 40, "langevin:step=0.5,noise=0", gen, at);
  EXPECT_TRUE(torch::allclose(x, means.index_select(0, at).view({4, 1, 2, 2}), 0, 1e-5));
  // (no [data] table: no shares, and why)
  EXPECT_FALSE(labels_in_class_shares(img, 3, 20, &why).defined());
  EXPECT_NE(why.find("does not say what it was trained on"), std::string::npos) << why;
  std::filesystem::remove_all(dir);
}

// Cell shares in any dimension and any units: draws from the data's own
// distribution pass (per cell the difference is beyond 4 standard errors
// with probability 6e-5, so 8 cells false-alarm under 1e-3 a call), and so
// do draws with every mode within a factor 1.4 of its weight; draws from the
// largest mode alone are flagged. In 5-D, columns in 1e4 and 1e-3 units.
TEST(CellShares, PassesTheDataAndModestErrorsAndFlagsADroppedMode) {
  auto gen = make_generator(31, kStreamEval);
  // weights 0.7 / 0.2 / 0.1 by default: the cut points of one uniform
  auto mixture = [&](int64_t n, double cut1, double cut2) {
    const auto opts = torch::TensorOptions(torch::kDouble);
    auto means = torch::tensor({{0.0, 0.0, 0.0, 0.0, 0.0}, {6.0, 3.0, 0.0, 0.0, 0.0}, {-4.0, 5.0, 2.0, 0.0, 0.0}}, opts);
    auto u = at::rand({n}, gen, opts);
    auto k = (u > cut1).to(torch::kLong) + (u > cut2).to(torch::kLong);
    auto x = means.index_select(0, k) + at::normal(0.0, 1.0, {n, 5}, gen, opts);
    return x * torch::tensor({1e4, 1e-3, 1.0, 1.0, 1.0}, opts) + torch::tensor({5e5, 0.0, 0.0, 0.0, 0.0}, opts);
  };
  const auto data = mixture(20000, 0.7, 0.9);
  const auto same = cell_shares(mixture(4000, 0.7, 0.9), data, 8, 4.0, 0.02, 2.0, gen);
  ASSERT_TRUE(same.centers.defined());
  EXPECT_EQ(same.centers.size(0), 8);
  EXPECT_EQ(same.flagged_count(), 0) << same.worst();
  EXPECT_NEAR(same.data_fraction.sum().item<double>(), 1.0, 1e-12);
  const auto modest = cell_shares(mixture(4000, 0.55, 0.83), data, 8, 4.0, 0.02, 2.0, gen);  // 0.55 / 0.28 / 0.17
  EXPECT_EQ(modest.flagged_count(), 0) << modest.worst();
  const auto collapsed = cell_shares(mixture(4000, 1.0, 1.0), data, 8, 4.0, 0.02, 2.0, gen);
  EXPECT_GE(collapsed.flagged_count(), 2);
  EXPECT_NE(collapsed.worst().find("0.000 of the draws"), std::string::npos) << collapsed.worst();
  // Ten draws of the data's own distribution: too few to flag a cell of
  // 10% that none of them hit (the pooled standard error is 0.095 there).
  const auto ten = cell_shares(mixture(10, 0.7, 0.9), data, 8, 4.0, 0.02, 2.0, gen);
  EXPECT_EQ(ten.flagged_count(), 0) << ten.worst();
  // Too few rows for two cells: none.
  EXPECT_FALSE(cell_shares(mixture(10, 0.7, 0.9), data.narrow(0, 0, 15), 8, 4.0, 0.02, 2.0, gen).centers.defined());
}

// Class probabilities never come back NaN: a row whose class energies
// overflow (a value of 1e30 squared in float32) is refused as bad data,
// naming the input and the row.
TEST(ClassProbabilities, RefuseRowsWhoseClassEnergiesOverflow) {
  test_helpers::ClassQuadratics energy(torch::tensor({{0.0f, 0.0f}, {1.0f, 1.0f}}));
  const auto fine = class_probabilities(energy, torch::tensor({{0.1f, 0.2f}, {0.9f, 1.0f}}), 256, "probe.npy");
  EXPECT_TRUE(torch::allclose(fine.sum(1), torch::ones({2})));
  try {
    class_probabilities(energy, torch::tensor({{0.1f, 0.2f}, {1e30f, 0.0f}}), 256, "probe.npy");
    ADD_FAILURE() << "a row of 1e30 gave probabilities";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadData);
    EXPECT_NE(std::string(e.what()).find("probe.npy: row 1"), std::string::npos) << e.what();
  }
}
