// Calibration: ECE, MCE, accuracy and NLL against a hand-computed example;
// the reliability diagram's shape.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "common/errors.h"
#include "common/tmp.h"
#include "ebm/core/error.h"
#include "ebm/core/rng.h"
#include "ebm/eval/calibration.h"
#include "ebm/io/io.h"

using namespace ebm;

// Five bins of width 0.2. Rows (confidence, right?): 0.9 right (bin 4),
// 0.75 wrong (bin 3), 0.55 right (bin 2), 0.65 wrong (bin 3).
// Gaps: bin 4 |1 - 0.9| = 0.1, bin 3 |0 - 0.7| = 0.7, bin 2 |1 - 0.55| = 0.45;
// ECE = 0.1/4 + 0.7 * 2/4 + 0.45/4 = 0.4875, MCE = 0.7.
TEST(Calibration, HandComputedEceAndMce) {
  auto p = torch::tensor({{0.9, 0.1}, {0.75, 0.25}, {0.45, 0.55}, {0.35, 0.65}}, torch::kDouble);
  auto y = torch::tensor({0, 1, 1, 0}, torch::kLong);
  auto c = calibration(p, y, 5);
  EXPECT_EQ(c.n, 4);
  EXPECT_NEAR(c.ece, 0.4875, 1e-12);
  EXPECT_NEAR(c.mce, 0.7, 1e-12);
  EXPECT_EQ(c.mce_rows, 2);  // (bin 3's two rows)
  EXPECT_DOUBLE_EQ(c.accuracy, 0.5);
  EXPECT_NEAR(c.nll, -(std::log(0.9) + std::log(0.25) + std::log(0.55) + std::log(0.35)) / 4, 1e-12);
  EXPECT_EQ(c.count, (std::vector<int64_t>{0, 0, 1, 2, 1}));
  EXPECT_NEAR(c.confidence[3], 0.7, 1e-12);
  EXPECT_DOUBLE_EQ(c.bin_accuracy[2], 1.0);
  EXPECT_EQ(c.json()["bins"], 5);
  // A perfectly calibrated set: confidence 0.75 everywhere, 3 of 4 right.
  auto q = torch::tensor({{0.75, 0.25}, {0.75, 0.25}, {0.75, 0.25}, {0.25, 0.75}}, torch::kDouble);
  auto yq = torch::tensor({0, 0, 0, 0}, torch::kLong);
  EXPECT_NEAR(calibration(q, yq, 15).ece, 0.0, 1e-12);
  // Labels outside the classes, mismatched counts.
  EXPECT_EQ(test_helpers::code_of([&] { calibration(p, y + 1, 5); }), ExitCode::kBadData);
  EXPECT_EQ(test_helpers::code_of([&] { calibration(p, y.narrow(0, 0, 3), 5); }), ExitCode::kBadData);
}

TEST(Calibration, ReliabilityDiagramIsAPng) {
  const std::string dir = test_helpers::fresh_dir("calibration");
  std::filesystem::create_directories(dir);
  auto p = torch::tensor({{0.9, 0.1}, {0.75, 0.25}, {0.45, 0.55}, {0.35, 0.65}}, torch::kDouble);
  auto c = calibration(p, torch::tensor({0, 1, 1, 0}, torch::kLong), 15);
  write_reliability_diagram(dir + "/r.png", c);
  auto img = read_png(dir + "/r.png");
  EXPECT_EQ(img.sizes(), (c10::IntArrayRef{1, 15 * 20 + 8, 15 * 20 + 8}));
  // The bin of confidence 0.9 (bin 13, accuracy 1) is a full-height dark bar.
  EXPECT_EQ(img[0][4][4 + 13 * 20 + 5].item<int>(), 40);
  std::filesystem::remove_all(dir);
}

// The classify / calibration baseline: on two Gaussian classes N(+-e1, I) in
// 3-D with equal priors its p(y = 1 | x) is the Bayes posterior
// sigmoid(2 x_1) (within 2% from 20,000 training rows) and its accuracy the
// Bayes accuracy Phi(1) = 0.8413 (20,000 test rows: one standard error
// 0.0026, tolerance 4.9 of them, false alarm 1e-6); an empty class gets 0.
TEST(GaussianClassifier, IsTheBayesClassifierOfSharedCovarianceClasses) {
  auto gen = make_generator(17, kStreamTestData);
  auto draw = [&](int64_t n, torch::Tensor* y) {
    *y = (at::rand({n}, gen, torch::TensorOptions(torch::kDouble)) < 0.5).to(torch::kLong);
    auto x = at::normal(0.0, 1.0, {n, 3}, gen, torch::TensorOptions(torch::kDouble));
    x.select(1, 0).add_(y->to(torch::kDouble) * 2 - 1);
    return x;
  };
  torch::Tensor ytr, yte;
  auto xtr = draw(20000, &ytr), xte = draw(20000, &yte);
  auto p = gaussian_classifier_probabilities(xtr, ytr, xte, 3);  // (class 2 has no rows)
  ASSERT_EQ(p.sizes(), (c10::IntArrayRef{20000, 3}));
  EXPECT_EQ(p.select(1, 2).abs().max().item<double>(), 0.0);
  const double acc = (p.argmax(1) == yte).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(acc, 0.5 * std::erfc(-1.0 / std::sqrt(2.0)), 4.9 * 0.0026);
  auto probe = torch::tensor({{0.0, 0.0, 0.0}, {0.5, 1.0, -1.0}, {-1.0, 0.0, 2.0}}, torch::kDouble);
  auto q = gaussian_classifier_probabilities(xtr, ytr, probe, 3).select(1, 1);
  auto bayes = torch::sigmoid(2.0 * probe.select(1, 0));
  EXPECT_LT((q - bayes).abs().max().item<double>(), 0.02) << q << bayes;
}

// Temperature scaling on a classifier whose logits are the truth's times k:
// labels drawn from softmax(z), the model says softmax(k z), so T = k is
// exactly the truth and the fitted T (maximum likelihood on 20,000 rows) is
// within a few percent of it; cross-fitted scaling removes the
// miscalibration, and the scale never moves the argmax. Measured: T 2.966
// and 0.494, the folds' within 1.5%, ECE 0.25 and 0.17 -> 0.006.
TEST(TemperatureScaling, RecoversTheFactorOfOverAndUnderConfidentLogits) {
  auto gen = make_generator(7, kStreamTestData);
  const int64_t n = 20000, k = 5;
  auto z = at::normal(0.0, 1.5, {n, k}, gen, torch::TensorOptions(torch::kDouble));
  auto truth = torch::softmax(z, 1);
  auto y = at::multinomial(truth, 1, true, gen).squeeze(1);
  for (double factor : {3.0, 0.5}) {
    auto q = torch::softmax(factor * z, 1);
    EXPECT_TRUE(torch::allclose(temperature_scale(q, factor), truth, 1e-10, 1e-12)) << factor;
    const double t = fit_temperature(q, y);
    EXPECT_NEAR(t / factor, 1.0, 0.05) << factor;
    std::pair<double, double> temps;
    auto raw = calibration(q, y, 15), scaled = cross_fitted_temperature(q, y, 15, &temps);
    EXPECT_NEAR(temps.first / factor, 1.0, 0.07) << factor;
    EXPECT_NEAR(temps.second / factor, 1.0, 0.07) << factor;
    EXPECT_GT(raw.ece, 0.08) << factor;
    EXPECT_LT(scaled.ece, 0.02) << factor;
    EXPECT_LT(scaled.nll, raw.nll) << factor;
    EXPECT_EQ(scaled.accuracy, raw.accuracy) << factor;
  }
}
